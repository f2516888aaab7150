//! Path templates of the file sink: strftime on the event's time plus `{field}` placeholders.
//!
//! Rendering is on the hot path, so a template without placeholders renders to a constant, and a strftime part
//! is formatted once per second of event time rather than once per event.

use std::borrow::Cow;
use std::path::PathBuf;

use auditrail_core::Event;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// Text, possibly with strftime sequences.
    Text { text: String, strftime: bool },
    /// `{name}`: a top-level field.
    Field(String),
}

/// A parsed path template.
#[derive(Clone, Debug)]
pub struct PathTemplate {
    parts: Vec<Part>,
    /// Last second rendered and what each strftime part gave for it.
    cache: Option<(i64, Vec<String>)>,
}

impl PathTemplate {
    /// Parses `template`; the error says what is wrong.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        if template.is_empty() {
            return Err("the path template is empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(open) => {
                    if open > 0 {
                        parts.push(text_part(&rest[..open])?);
                    }
                    let close = rest[open..].find('}').ok_or_else(|| {
                        format!("`{{` at byte {} has no closing `}}` (a field placeholder looks like {{event}})", template.len() - rest.len() + open)
                    })? + open;
                    let name = &rest[open + 1..close];
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    {
                        return Err(format!("`{{{name}}}` is not a field placeholder: expected a field name such as {{event}} or {{user}}"));
                    }
                    parts.push(Part::Field(name.to_string()));
                    rest = &rest[close + 1..];
                }
                None => {
                    parts.push(text_part(rest)?);
                    rest = "";
                }
            }
        }
        Ok(PathTemplate { parts, cache: None })
    }

    /// Whether every event renders to the same path.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| {
            matches!(
                p,
                Part::Text {
                    strftime: false,
                    ..
                }
            )
        })
    }

    /// The path for `event`.
    pub fn render(&mut self, event: &Event) -> PathBuf {
        let secs = event.timestamp_nanos().div_euclid(1_000_000_000);
        if self
            .parts
            .iter()
            .any(|p| matches!(p, Part::Text { strftime: true, .. }))
            && self.cache.as_ref().is_none_or(|(s, _)| *s != secs)
        {
            let when: DateTime<Utc> = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let rendered = self
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text {
                        text,
                        strftime: true,
                    } => Some(when.format(text).to_string()),
                    _ => None,
                })
                .collect();
            self.cache = Some((secs, rendered));
        }
        let mut out = String::new();
        let mut formatted = self.cache.as_ref().map(|(_, v)| v.iter());
        for p in &self.parts {
            match p {
                Part::Text {
                    text,
                    strftime: false,
                } => out.push_str(text),
                Part::Text { strftime: true, .. } => {
                    out.push_str(formatted.as_mut().and_then(|i| i.next()).map_or("", |s| s));
                }
                Part::Field(name) => out.push_str(&sanitize(event.field(name))),
            }
        }
        PathBuf::from(out)
    }
}

fn text_part(text: &str) -> Result<Part, String> {
    let strftime = text.contains('%');
    if strftime && StrftimeItems::new(text).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{text}` has an invalid strftime sequence: expected e.g. %Y, %m, %d, %H (write %% for a literal %)"
        ));
    }
    Ok(Part::Text {
        text: text.to_string(),
        strftime,
    })
}

/// A field value as a single path component.
fn sanitize(value: Option<Cow<'_, str>>) -> Cow<'_, str> {
    match value {
        None => Cow::Borrowed("_"),
        Some(v) if v.is_empty() || v == "." || v == ".." => Cow::Borrowed("_"),
        Some(v) if v.contains(['/', '\0']) => Cow::Owned(v.replace(['/', '\0'], "_")),
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::copy_from_slice(json.as_bytes()), 4096).unwrap()
    }

    #[test]
    fn renders_time_and_fields() {
        let mut t = PathTemplate::parse("/x/%Y-%m-%d/{event}-{user}.ndjson").unwrap();
        assert!(!t.is_static());
        let e = ev(r#"{"event":"session.start","time":"2017-02-03T06:54:05.999Z","user":"a/b"}"#);
        assert_eq!(
            t.render(&e),
            PathBuf::from("/x/2017-02-03/session.start-a_b.ndjson")
        );
        let e = ev(r#"{"event":"user.login","time":"2017-02-04T00:00:00+01:00"}"#);
        assert_eq!(
            t.render(&e),
            PathBuf::from("/x/2017-02-03/user.login-_.ndjson")
        );
        let e = ev(r#"{"event":"..","time":"2018-01-01T00:00:00Z","user":""}"#);
        assert_eq!(t.render(&e), PathBuf::from("/x/2018-01-01/_-_.ndjson"));
    }

    #[test]
    fn static_template() {
        let mut t = PathTemplate::parse("out/events.ndjson").unwrap();
        assert!(t.is_static());
        let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e), PathBuf::from("out/events.ndjson"));
    }

    #[test]
    fn errors_say_what_is_expected() {
        assert!(PathTemplate::parse("a/{event")
            .unwrap_err()
            .contains("no closing"));
        assert!(PathTemplate::parse("a/{}")
            .unwrap_err()
            .contains("not a field placeholder"));
        assert!(PathTemplate::parse("a/%Q")
            .unwrap_err()
            .contains("invalid strftime"));
        assert!(PathTemplate::parse("").is_err());
    }
}
