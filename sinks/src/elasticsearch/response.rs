//! Reading a `_bulk` response: one result per document, in request order, each classified as delivered, to
//! retry, or refused for good.
//!
//! | item | class | outcome |
//! | --- | --- | --- |
//! | 200, 201 | `created` | delivered |
//! | 409 on `create` | `duplicate` | delivered: a document with this `_id` (the event's `uid`) is already there |
//! | 429, or `es_rejected_execution_exception` / `circuit_breaking_exception` | `rejected_execution` | retried |
//! | 5xx (unavailable shards, node gone…) | `server_error` | retried |
//! | `mapper_parsing_exception`, `document_parsing_exception`, `strict_dynamic_mapping_exception`, `illegal_argument_exception`… (400) | `mapping_error` | dead-letter |
//! | `invalid_index_name_exception`, `index_not_found_exception`, `index_closed_exception` | `index_error` | dead-letter |
//! | 409 on `index`, any other 4xx | `client_error` | dead-letter |
//!
//! The request asks for `filter_path`, so the response holds just `errors` and, per item, `status`, `error`
//! and `_id`.

use serde::Deserialize;
use serde_json::Value;

/// The `filter_path` the sink asks for: only what classification reads.
pub const FILTER_PATH: &str = "errors,items.*.status,items.*.error,items.*._id";

/// What became of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemClass {
    /// Indexed now (200/201).
    Created,
    /// Already there (409 on create): the same event was indexed by an earlier attempt.
    Duplicate,
    /// Transient: send this document again.
    Retry(RetryCause),
    /// Permanent: the document goes to the dead-letter file.
    Reject {
        /// Which kind of refusal.
        cause: RejectCause,
        /// The server's error type and reason, for the dead-letter record.
        message: String,
    },
}

/// Why a document is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryCause {
    /// 429 / `es_rejected_execution_exception`: the cluster's write queue is full.
    RejectedExecution,
    /// 5xx: a shard or node was not available.
    ServerError,
}

/// Why a document is refused for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCause {
    /// The document does not fit the index mapping (or cannot be parsed).
    Mapping,
    /// The index cannot be written (invalid name, missing with auto-create off, closed).
    Index,
    /// Any other 4xx.
    Client,
}

impl ItemClass {
    /// The `result` label of `auditrail_sink_bulk_items_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ItemClass::Created => "created",
            ItemClass::Duplicate => "duplicate",
            ItemClass::Retry(RetryCause::RejectedExecution) => "rejected_execution",
            ItemClass::Retry(RetryCause::ServerError) => "server_error",
            ItemClass::Reject { cause, .. } => cause.reason(),
        }
    }

    /// Every label, to register the counters at zero.
    pub const LABELS: [&'static str; 7] = [
        "created",
        "duplicate",
        "rejected_execution",
        "server_error",
        "mapping_error",
        "index_error",
        "client_error",
    ];
}

impl RejectCause {
    /// The dead-letter reason and metric label.
    pub fn reason(self) -> &'static str {
        match self {
            RejectCause::Mapping => "mapping_error",
            RejectCause::Index => "index_error",
            RejectCause::Client => "client_error",
        }
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<Value>,
}

/// A body that is not a bulk response, or does not match the request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not the JSON of a bulk response.
    #[error("not a bulk response: {0}")]
    Malformed(String),
    /// A different number of items than documents sent.
    #[error("the response has {got} items for {sent} documents")]
    ItemCount {
        /// Items in the response.
        got: usize,
        /// Documents sent.
        sent: usize,
    },
}

/// Classifies the items of a bulk response to `sent` documents. Item `i` is document `i`.
pub fn classify(body: &[u8], sent: usize) -> Result<Vec<ItemClass>, ResponseError> {
    let r: BulkResponse =
        serde_json::from_slice(body).map_err(|e| ResponseError::Malformed(e.to_string()))?;
    if !r.errors && r.items.is_empty() {
        // filter_path may drop `items` entirely when nothing failed and statuses were not kept.
        return Ok(vec![ItemClass::Created; sent]);
    }
    if r.items.len() != sent {
        return Err(ResponseError::ItemCount {
            got: r.items.len(),
            sent,
        });
    }
    r.items
        .iter()
        .map(|item| {
            let (action, result) =
                item.as_object()
                    .and_then(|o| o.iter().next())
                    .ok_or_else(|| {
                        ResponseError::Malformed(format!("item is not an object: {item}"))
                    })?;
            let status = result
                .get("status")
                .and_then(Value::as_u64)
                .ok_or_else(|| ResponseError::Malformed(format!("item without status: {item}")))?;
            Ok(classify_item(
                status as u16,
                result.get("error"),
                action == "create",
            ))
        })
        .collect()
}

/// Classifies one item from its status, its `error` object and whether it was a `create`.
pub fn classify_item(status: u16, error: Option<&Value>, is_create: bool) -> ItemClass {
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match status {
        200..=299 => ItemClass::Created,
        409 if is_create => ItemClass::Duplicate,
        429 => ItemClass::Retry(RetryCause::RejectedExecution),
        _ if matches!(
            kind,
            "es_rejected_execution_exception"
                | "rejected_execution_exception"
                | "circuit_breaking_exception"
        ) =>
        {
            ItemClass::Retry(RetryCause::RejectedExecution)
        }
        500..=599 => ItemClass::Retry(RetryCause::ServerError),
        _ => {
            let cause = match kind {
                "invalid_index_name_exception"
                | "index_not_found_exception"
                | "index_closed_exception"
                | "cluster_block_exception" => RejectCause::Index,
                "mapper_parsing_exception"
                | "document_parsing_exception"
                | "strict_dynamic_mapping_exception"
                | "illegal_argument_exception"
                | "mapper_exception"
                | "parse_exception"
                | "json_parse_exception"
                | "document_source_missing_exception" => RejectCause::Mapping,
                _ if status == 400 && kind.contains("pars") => RejectCause::Mapping,
                _ => RejectCause::Client,
            };
            ItemClass::Reject {
                cause,
                message: error_message(status, error),
            }
        }
    }
}

/// `status type: reason (caused by: type: reason)` from an error object (or string).
pub fn error_message(status: u16, error: Option<&Value>) -> String {
    fn describe(e: &Value) -> String {
        match e {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                let t = o.get("type").and_then(Value::as_str).unwrap_or("error");
                let r = o.get("reason").and_then(Value::as_str).unwrap_or("");
                let mut s = if r.is_empty() {
                    t.to_string()
                } else {
                    format!("{t}: {r}")
                };
                if let Some(c) = o.get("caused_by") {
                    s.push_str(&format!(" (caused by {})", describe(c)));
                }
                s
            }
            other => other.to_string(),
        }
    }
    match error {
        Some(e) => format!("{status} {}", describe(e)),
        None => format!("status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn one(status: u16, error: Value, create: bool) -> ItemClass {
        classify_item(status, Some(&error).filter(|e| !e.is_null()), create)
    }

    #[test]
    fn every_class() {
        assert_eq!(one(201, Value::Null, true), ItemClass::Created);
        assert_eq!(one(200, Value::Null, false), ItemClass::Created);
        let conflict = json!({"type":"version_conflict_engine_exception","reason":"[x]: version conflict, document already exists"});
        assert_eq!(one(409, conflict.clone(), true), ItemClass::Duplicate);
        assert!(matches!(
            one(409, conflict, false),
            ItemClass::Reject {
                cause: RejectCause::Client,
                ..
            }
        ));
        assert_eq!(
            one(429, json!({"type":"es_rejected_execution_exception"}), true),
            ItemClass::Retry(RetryCause::RejectedExecution)
        );
        // Some versions report a full write queue with another status.
        assert_eq!(
            one(503, json!({"type":"es_rejected_execution_exception"}), true),
            ItemClass::Retry(RetryCause::RejectedExecution)
        );
        assert_eq!(
            one(503, json!({"type":"unavailable_shards_exception"}), true),
            ItemClass::Retry(RetryCause::ServerError)
        );
        assert_eq!(
            one(500, json!({"type":"node_not_connected_exception"}), true),
            ItemClass::Retry(RetryCause::ServerError)
        );
        let mapping = one(
            400,
            json!({"type":"mapper_parsing_exception","reason":"failed to parse field [detail] of type [text]","caused_by":{"type":"illegal_state_exception","reason":"Can't get text on a START_OBJECT"}}),
            true,
        );
        assert_eq!(
            mapping,
            ItemClass::Reject {
                cause: RejectCause::Mapping,
                message: "400 mapper_parsing_exception: failed to parse field [detail] of type [text] (caused by illegal_state_exception: Can't get text on a START_OBJECT)".into()
            }
        );
        assert_eq!(mapping.label(), "mapping_error");
        for t in [
            "document_parsing_exception",
            "strict_dynamic_mapping_exception",
            "illegal_argument_exception",
        ] {
            assert!(matches!(
                one(400, json!({ "type": t }), true),
                ItemClass::Reject {
                    cause: RejectCause::Mapping,
                    ..
                }
            ));
        }
        for t in ["invalid_index_name_exception", "index_not_found_exception"] {
            assert!(matches!(
                one(404, json!({ "type": t }), true),
                ItemClass::Reject {
                    cause: RejectCause::Index,
                    ..
                }
            ));
        }
        let forbidden = one(
            403,
            json!({"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized"}),
            true,
        );
        assert!(matches!(
            forbidden,
            ItemClass::Reject {
                cause: RejectCause::Client,
                ..
            }
        ));
        assert_eq!(forbidden.label(), "client_error");
        let labels: Vec<_> = [
            ItemClass::Created,
            ItemClass::Duplicate,
            ItemClass::Retry(RetryCause::RejectedExecution),
            ItemClass::Retry(RetryCause::ServerError),
            ItemClass::Reject {
                cause: RejectCause::Mapping,
                message: String::new(),
            },
            ItemClass::Reject {
                cause: RejectCause::Index,
                message: String::new(),
            },
            ItemClass::Reject {
                cause: RejectCause::Client,
                message: String::new(),
            },
        ]
        .iter()
        .map(ItemClass::label)
        .collect();
        assert_eq!(labels, ItemClass::LABELS);
    }

    #[test]
    fn a_real_mixed_response() {
        // As osmem-server answers a bulk of three creates (filter_path applied).
        let body = br#"{"errors":true,"items":[{"create":{"_id":"1","status":201}},{"create":{"_id":"2","error":{"caused_by":{"reason":"Can't get text on a START_OBJECT at 1:23","type":"illegal_state_exception"},"reason":"failed to parse field [detail] of type [text] in document with id '2'. Preview of field's value: '{k=obj}'","type":"mapper_parsing_exception"},"status":400}},{"create":{"_id":"3","error":{"type":"version_conflict_engine_exception","reason":"[3]: version conflict"},"status":409}}]}"#;
        let c = classify(body, 3).unwrap();
        assert_eq!(c[0], ItemClass::Created);
        assert!(
            matches!(&c[1], ItemClass::Reject { cause: RejectCause::Mapping, message } if message.contains("failed to parse field [detail]"))
        );
        assert_eq!(c[2], ItemClass::Duplicate);
    }

    #[test]
    fn responses_that_do_not_fit() {
        assert_eq!(
            classify(br#"{"errors":false}"#, 2).unwrap(),
            vec![ItemClass::Created; 2]
        );
        assert_eq!(
            classify(br#"{"errors":true,"items":[{"create":{"status":201}}]}"#, 2),
            Err(ResponseError::ItemCount { got: 1, sent: 2 })
        );
        assert!(matches!(
            classify(b"<html>bad gateway</html>", 1),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            classify(br#"{"errors":true,"items":[{"create":{}}]}"#, 1),
            Err(ResponseError::Malformed(_))
        ));
        assert!(matches!(
            classify(br#"{"errors":true,"items":[5]}"#, 1),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn messages() {
        assert_eq!(
            error_message(400, Some(&json!("plain text"))),
            "400 plain text"
        );
        assert_eq!(error_message(500, None), "status 500");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), n in 0usize..5) {
            let _ = classify(&body, n);
        }

        #[test]
        fn generated_responses_classify_item_by_item(
            items in prop::collection::vec((prop_oneof![Just(200u16), Just(201), Just(400), Just(404), Just(409), Just(429), Just(500), Just(503)],
                                            prop_oneof![Just("mapper_parsing_exception"), Just("es_rejected_execution_exception"), Just("version_conflict_engine_exception"), Just("x")]), 1..30)
        ) {
            let body = json!({
                "errors": true,
                "items": items.iter().map(|(s, t)| if *s < 300 {
                    json!({"create": {"_id": "i", "status": s}})
                } else {
                    json!({"create": {"_id": "i", "status": s, "error": {"type": t, "reason": "r"}}})
                }).collect::<Vec<_>>(),
            });
            let classes = classify(body.to_string().as_bytes(), items.len()).unwrap();
            prop_assert_eq!(classes.len(), items.len());
            for ((status, kind), class) in items.iter().zip(&classes) {
                let expected_retry = *status == 429 || *status >= 500 || (*status >= 300 && *kind == "es_rejected_execution_exception" && *status != 409);
                prop_assert_eq!(matches!(class, ItemClass::Retry(_)), expected_retry, "{} {}", status, kind);
                prop_assert_eq!(matches!(class, ItemClass::Created | ItemClass::Duplicate), *status < 300 || *status == 409);
            }
        }
    }
}
