//! Event → Kafka record: the topic (a template), the key (a field, falling back to `uid`) and the headers
//! (`uid`, `event`, `server_id`). The value is the event's bytes exactly and is not built here.
//!
//! The key field and `server_id` are read in one pass over the event's top-level members, skipping the rest
//! unparsed: this runs for every event.

use std::borrow::Cow;
use std::fmt;

use auditrail_core::Event;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::template::Template;

/// Kafka's longest topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// What a record is made of besides the value.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordParts {
    /// The key's bytes.
    pub key: String,
    /// `server_id`, when the event has one as a string.
    pub server_id: Option<String>,
}

/// The key field's value (string values decoded, others as their JSON text) and `server_id`, in one pass.
pub fn parts(event: &Event, key_field: &str) -> RecordParts {
    let direct = match key_field {
        "uid" => Some(event.uid().into_owned()),
        "event" => Some(event.kind().into_owned()),
        _ => None,
    };
    let (key, server_id) = scan(event.raw(), key_field);
    RecordParts {
        key: direct.or(key).unwrap_or_else(|| event.uid().into_owned()),
        server_id,
    }
}

/// Reads the values of `key_field` and `server_id` from the top-level object in `raw`.
fn scan(raw: &[u8], key_field: &str) -> (Option<String>, Option<String>) {
    let mut de = serde_json::Deserializer::from_slice(raw);
    Deserializer::deserialize_map(&mut de, Pick { key_field }).unwrap_or_default()
}

/// Which of the two wanted names a member's name is: bit 0 the key field, bit 1 `server_id`. Compared
/// where it lies in the input, without allocating.
struct NameIs<'k> {
    key_field: &'k str,
}

impl<'de> DeserializeSeed<'de> for NameIs<'_> {
    type Value = u8;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u8, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameIs<'_> {
    type Value = u8;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u8, E> {
        Ok(u8::from(v == self.key_field) | (u8::from(v == "server_id") << 1))
    }
}

struct Pick<'k> {
    key_field: &'k str,
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = (Option<String>, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut key, mut server) = (None, None);
        while let Some(which) = map.next_key_seed(NameIs {
            key_field: self.key_field,
        })? {
            let wanted_key = key.is_none() && which & 1 != 0;
            let wanted_server = server.is_none() && which & 2 != 0;
            if wanted_key || wanted_server {
                let v: &'de RawValue = map.next_value()?;
                let text = as_text(v.get());
                if wanted_server && v.get().starts_with('"') {
                    server.clone_from(&text);
                }
                if wanted_key {
                    key = text;
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((key, server))
    }
}

/// A string value decoded, `null` as none, anything else as its JSON text.
fn as_text(json: &str) -> Option<String> {
    if json.starts_with('"') {
        serde_json::from_str::<Cow<'_, str>>(json)
            .ok()
            .map(Cow::into_owned)
    } else if json == "null" {
        None
    } else {
        Some(json.to_string())
    }
}

/// The topic template, with a constant when it has no placeholder.
pub struct Topic {
    template: Template,
    fixed: Option<String>,
}

impl Topic {
    /// Parses `text` (checked by the config's validation).
    pub fn parse(text: &str) -> Result<Topic, String> {
        let template = Template::parse(text)?;
        let fixed = (template.is_static()).then(|| template.literal_text());
        if let Some(f) = &fixed {
            check(f)?;
        }
        Ok(Topic { template, fixed })
    }

    /// The fixed topic, if the template has no placeholder.
    pub fn fixed(&self) -> Option<&str> {
        self.fixed.as_deref()
    }

    /// The topic of `event`, or why it has none (too long, empty).
    pub fn render(&mut self, event: &Event) -> Result<String, String> {
        if let Some(f) = &self.fixed {
            return Ok(f.clone());
        }
        let t = self.template.render(event, |v| match v {
            Some(v) if !v.is_empty() => {
                if v.chars().all(allowed) {
                    v
                } else {
                    Cow::Owned(
                        v.chars()
                            .map(|c| if allowed(c) { c } else { '_' })
                            .collect(),
                    )
                }
            }
            _ => Cow::Borrowed("_"),
        });
        check(&t)?;
        Ok(t)
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Kafka's rules for a topic name.
fn check(t: &str) -> Result<(), String> {
    if t.is_empty() || t == "." || t == ".." {
        return Err(format!("{t:?} is not a topic name"));
    }
    if t.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "the topic name is {} bytes long; Kafka allows at most {MAX_TOPIC_LEN}",
            t.len()
        ));
    }
    if let Some(c) = t.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "{t:?}: {c:?} is not allowed in a topic name (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(s: &str) -> Event {
        Event::parse(Bytes::from(s.to_string()), 1 << 20).unwrap()
    }

    #[test]
    fn key_is_the_field_falling_back_to_uid() {
        let e = ev(
            r#"{"event":"session.start","uid":"u1","time":"2017-02-03T06:54:05Z","sid":"s\u00e9","server_id":"srv","n":{"sid":"inner"}}"#,
        );
        assert_eq!(
            parts(&e, "sid"),
            RecordParts {
                key: "sé".into(),
                server_id: Some("srv".into())
            }
        );
        let e = ev(
            r#"{"event":"user.login","uid":"u2","time":"2017-02-03T06:54:05Z","n":{"sid":"inner"}}"#,
        );
        assert_eq!(
            parts(&e, "sid"),
            RecordParts {
                key: "u2".into(),
                server_id: None
            }
        );
        let e =
            ev(r#"{"event":"x","uid":"u3","time":"2017-02-03T06:54:05Z","port":3022,"sid":null}"#);
        assert_eq!(parts(&e, "port").key, "3022");
        assert_eq!(parts(&e, "sid").key, "u3");
        assert_eq!(parts(&e, "uid").key, "u3");
    }

    #[test]
    fn topics_render_to_valid_names() {
        let mut t = Topic::parse("audit.{event}").unwrap();
        assert!(t.fixed().is_none());
        let e = ev(r#"{"event":"session start/x","uid":"u","time":"2017-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e).unwrap(), "audit.session_start_x");
        let mut t = Topic::parse("audit.{cluster_name}").unwrap();
        assert_eq!(t.render(&e).unwrap(), "audit._");
        let mut t = Topic::parse("audit").unwrap();
        assert_eq!(t.fixed(), Some("audit"));
        assert_eq!(t.render(&e).unwrap(), "audit");
        assert!(Topic::parse("a b").is_err());
        let long = format!(
            r#"{{"event":"{}","uid":"u","time":"2017-02-03T06:54:05Z"}}"#,
            "x".repeat(300)
        );
        let mut t = Topic::parse("audit.{event}").unwrap();
        assert!(t.render(&ev(&long)).unwrap_err().contains("at most 249"));
    }
}
