//! `manage_template = true`: the composable index template auditrail installs at start, so that the fields
//! people search and aggregate on are typed right from the first document of each new index.
//!
//! The template maps `time` / `@timestamp` as `date` and `uid`, `event`, `code`, `user`, `login`, `sid`,
//! `server_id`, `cluster_name` and every `addr.*` field as `keyword` (with `schema = "ecs"`: the ECS fields,
//! and the same Teleport fields under `teleport.audit`, where `addr` is stored but not indexed, see
//! [`ecs_properties`]); everything else is mapped dynamically. Its `_meta`
//! holds a fingerprint of the body: a template of the same name that carries exactly this fingerprint is ours
//! and up to date; any other is left alone with a warning (someone changed it on purpose, or another
//! auditrail version wrote it).

use std::sync::Arc;
use std::time::Duration;

use auditrail_core::retry::Backoff;
use serde_json::{json, Value};

use super::config::{ElasticsearchSinkConfig, Mode, Schema};
use super::pool::Pool;
use super::service::RequestError;

/// What happened to the template at start.
#[derive(Debug, PartialEq, Eq)]
pub enum TemplateOutcome {
    /// It did not exist and was installed.
    Installed,
    /// Ours, identical: nothing to do.
    AlreadyInstalled,
    /// A template of that name with another body exists and was left alone.
    LeftAlone,
}

fn keyword() -> Value {
    json!({ "type": "keyword", "ignore_above": 1024 })
}

fn date() -> Value {
    json!({ "type": "date", "format": "strict_date_optional_time_nanos||strict_date_optional_time||epoch_millis" })
}

/// The Teleport fields with fixed types.
fn teleport_properties(with_timestamp: bool) -> Value {
    let mut p = json!({
        "time": date(),
        "uid": keyword(),
        "event": keyword(),
        "code": keyword(),
        "user": keyword(),
        "login": keyword(),
        "sid": keyword(),
        "server_id": keyword(),
        "cluster_name": keyword(),
        "addr": { "type": "object", "dynamic": true, "properties": { "local": keyword(), "remote": keyword() } },
    });
    if with_timestamp {
        p["@timestamp"] = date();
    }
    p
}

/// The ECS fields the ECS encoding writes. Under `teleport.audit`, `addr` is kept but not indexed: Teleport's
/// `port` events hold both a plain `addr` and `addr.local` / `addr.remote`, which the cluster expands into an
/// `addr` object, so the document would conflict with itself; the addresses are searchable as `source.*` and
/// `destination.*` instead.
fn ecs_properties() -> Value {
    let mut teleport_audit = teleport_properties(false);
    teleport_audit["addr"] = json!({ "type": "object", "enabled": false });
    let endpoint = || json!({ "properties": { "address": keyword(), "ip": { "type": "ip" }, "port": { "type": "long" } } });
    json!({
        "@timestamp": date(),
        "ecs": { "properties": { "version": keyword() } },
        "event": { "properties": {
            "action": keyword(), "code": keyword(), "id": keyword(), "kind": keyword(),
            "category": keyword(), "type": keyword(), "outcome": keyword() } },
        "user": { "properties": { "name": keyword() } },
        "related": { "properties": { "user": keyword(), "ip": { "type": "ip" } } },
        "host": { "properties": { "id": keyword(), "hostname": keyword(), "name": keyword() } },
        "source": endpoint(),
        "destination": endpoint(),
        "orchestrator": { "properties": { "cluster": { "properties": { "name": keyword() } } } },
        "network": { "properties": { "protocol": keyword() } },
        "process": { "properties": {
            "name": keyword(), "executable": keyword(), "args": keyword(), "command_line": keyword(),
            "pid": { "type": "long" }, "exit_code": { "type": "long" },
            "parent": { "properties": { "pid": { "type": "long" } } } } },
        "file": { "properties": { "path": keyword() } },
        "teleport": { "properties": { "audit": { "type": "object", "dynamic": true, "properties": teleport_audit } } },
    })
}

/// The template body for `config` (without `_meta`), and the fingerprint that goes into `_meta`.
pub fn body(config: &ElasticsearchSinkConfig, pattern: &str) -> Value {
    let properties = match config.encoding.schema {
        Schema::Teleport => teleport_properties(true),
        Schema::Ecs => ecs_properties(),
    };
    let mut mappings = json!({ "dynamic": true, "properties": properties });
    if config.encoding.schema == Schema::Teleport {
        mappings["dynamic_templates"] = json!([
            { "addr_as_keyword": { "path_match": "addr.*", "mapping": keyword() } }
        ]);
    }
    let mut body = json!({
        "index_patterns": [pattern],
        "priority": 200,
        "template": { "mappings": mappings },
    });
    if config.mode == Mode::DataStream {
        body["data_stream"] = json!({});
    }
    let fingerprint = fingerprint(&body);
    body["_meta"] = json!({ "managed_by": "auditrail", "fingerprint": fingerprint });
    body
}

/// FNV-1a (64 bit) of the compact JSON text, as hex: stable across runs and versions of this crate's
/// dependencies, since serde_json writes object keys in sorted order here.
fn fingerprint(v: &Value) -> String {
    let text = v.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Installs the template unless one of that name exists, through whichever node is in service. Transient
/// failures (a node or the cluster down) are retried, on the next node at once when there is one, else with
/// backoff; a refusal (4xx) is returned.
pub async fn install(
    pool: &Arc<Pool>,
    sink: &str,
    name: &str,
    body: &Value,
    mut backoff: Backoff,
) -> Result<TemplateOutcome, RequestError> {
    let path = format!("_index_template/{name}");
    loop {
        let (node, service) = pool.node().await;
        let attempt = async {
            match service.get_json(&path).await? {
                Some(existing) => {
                    let theirs = existing
                        .get("index_templates")
                        .and_then(|t| t.get(0))
                        .and_then(|t| t.get("index_template"));
                    let same = theirs.and_then(|t| t.get("_meta")) == body.get("_meta")
                        && theirs.and_then(|t| t.get("index_patterns"))
                            == body.get("index_patterns");
                    Ok(if same {
                        TemplateOutcome::AlreadyInstalled
                    } else {
                        TemplateOutcome::LeftAlone
                    })
                }
                None => {
                    service.put_json(&path, body).await?;
                    Ok(TemplateOutcome::Installed)
                }
            }
        };
        match attempt.await {
            Err(RequestError::Transient(why)) => {
                if pool.node_failed(node, &why) && pool.any_up() {
                    tracing::warn!(sink, template = name, endpoint = %service.base(), error = %why, "cannot check the index template on this node; trying the next one");
                    continue;
                }
                let wait = backoff.next_delay(None);
                tracing::warn!(sink, template = name, error = %why, retry_in = ?wait, "cannot reach the cluster to check the index template; retrying before sending events");
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
            Ok(outcome) => {
                pool.succeeded();
                return Ok(outcome);
            }
            Err(e) => {
                pool.attempt_failed(&format!("{}: index template: {e}", service.base()));
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> ElasticsearchSinkConfig {
        toml::from_str(&format!("endpoint = \"http://h\"\n{extra}")).unwrap()
    }

    #[test]
    fn teleport_template() {
        let b = body(&config(""), "auditrail-*");
        assert_eq!(b["index_patterns"], json!(["auditrail-*"]));
        let p = &b["template"]["mappings"]["properties"];
        assert_eq!(p["time"]["type"], "date");
        assert_eq!(p["@timestamp"]["type"], "date");
        for k in ["uid", "event", "user", "login", "sid", "server_id"] {
            assert_eq!(p[k]["type"], "keyword", "{k}");
        }
        assert_eq!(p["addr"]["properties"]["remote"]["type"], "keyword");
        assert_eq!(
            b["template"]["mappings"]["dynamic_templates"][0]["addr_as_keyword"]["path_match"],
            "addr.*"
        );
        assert_eq!(b["template"]["mappings"]["dynamic"], true);
        assert_eq!(b["_meta"]["managed_by"], "auditrail");
        assert_eq!(b["_meta"]["fingerprint"].as_str().unwrap().len(), 16);
        assert!(b.get("data_stream").is_none());
    }

    #[test]
    fn ecs_and_data_stream_templates() {
        let b = body(
            &config("mode = \"data_stream\"\nencoding = { schema = \"ecs\" }"),
            "logs-teleport.audit-*",
        );
        assert_eq!(b["data_stream"], json!({}));
        let p = &b["template"]["mappings"]["properties"];
        assert_eq!(p["event"]["properties"]["action"]["type"], "keyword");
        assert_eq!(p["source"]["properties"]["ip"]["type"], "ip");
        assert_eq!(p["host"]["properties"]["id"]["type"], "keyword");
        assert_eq!(
            p["teleport"]["properties"]["audit"]["properties"]["uid"]["type"],
            "keyword"
        );
        assert_eq!(
            p["teleport"]["properties"]["audit"]["properties"]["addr"],
            json!({ "type": "object", "enabled": false })
        );
    }

    #[test]
    fn fingerprints_follow_the_body() {
        let a = body(&config(""), "auditrail-*");
        assert_eq!(a, body(&config(""), "auditrail-*"));
        assert_ne!(
            a["_meta"]["fingerprint"],
            body(&config(""), "other-*")["_meta"]["fingerprint"]
        );
    }
}
