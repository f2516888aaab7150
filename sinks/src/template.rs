//! Templates that name where an event goes: strftime on the event's time plus `{field}` placeholders.
//!
//! Shared by the sinks that route by time and fields (the file sink's path, the Elasticsearch sink's index). A
//! template only knows how to fill itself in; what a field value may contain is the caller's rule, given as a
//! sanitizer, since a path component and an index name forbid different characters.
//!
//! What a rendering may become (how long, which components) is checked by [`crate::name_rules`], shared too.
//!
//! Rendering is on the hot path, so a template without placeholders renders to a constant, and a strftime part
//! is formatted once per second of event time rather than once per event.

use std::borrow::Cow;

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

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    /// Last second rendered and what each strftime part gave for it.
    cache: Option<(i64, Vec<String>)>,
}

impl Template {
    /// Parses `template`; the error says what is wrong.
    pub fn parse(template: &str) -> Result<Template, String> {
        if template.is_empty() {
            return Err("the template is empty".into());
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
        Ok(Template { parts, cache: None })
    }

    /// Whether every event renders to the same text.
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

    /// The literal text before the first strftime sequence or placeholder (all of it for a static template).
    pub fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text {
                    text,
                    strftime: false,
                } => out.push_str(text),
                Part::Text { text, .. } => {
                    out.push_str(&text[..text.find('%').unwrap_or(text.len())]);
                    break;
                }
                Part::Field(_) => break,
            }
        }
        out
    }

    /// The literal (non-strftime, non-placeholder) text of the template, for checking what characters it uses.
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, strftime } => Some(if *strftime {
                    strip_strftime(text)
                } else {
                    text.clone()
                }),
                Part::Field(_) => None,
            })
            .collect()
    }

    /// Whether the template has `{field}` placeholders (its text then depends on untrusted input).
    pub fn has_fields(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The names of the template's placeholders, in order (for messages about what a rendering came from).
    pub fn field_names(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Field(name) => Some(name.as_str()),
                Part::Text { .. } => None,
            })
            .collect()
    }

    /// The literal text after the last placeholder when it has no strftime sequence (`.ndjson` in
    /// `{event}.ndjson`): what a shortened rendering keeps at its end.
    pub fn literal_suffix(&self) -> &str {
        match self.parts.last() {
            Some(Part::Text {
                text,
                strftime: false,
            }) => text,
            _ => "",
        }
    }

    /// The text for `event`; each field value (or `None` for a missing field) goes through `sanitize`.
    pub fn render(
        &mut self,
        event: &Event,
        sanitize: impl for<'a> Fn(Option<Cow<'a, str>>) -> Cow<'a, str>,
    ) -> String {
        let mut out = String::new();
        self.render_into(event, sanitize, &mut out);
        out
    }

    /// [`Self::render`] appending to `out`, so that a caller building a longer text allocates once.
    pub fn render_into(
        &mut self,
        event: &Event,
        sanitize: impl for<'a> Fn(Option<Cow<'a, str>>) -> Cow<'a, str>,
        out: &mut String,
    ) {
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

/// `text` without its strftime sequences (`%%` kept as `%`).
fn strip_strftime(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // Flags, widths and modifiers (`%-d`, `%3f`, `%.3f`, `%:z`), then the specifier itself.
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || "-_^#.:".contains(*c))
        {
            chars.next();
        }
        chars.next();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::copy_from_slice(json.as_bytes()), 4096).unwrap()
    }

    fn keep(v: Option<Cow<'_, str>>) -> Cow<'_, str> {
        v.unwrap_or(Cow::Borrowed("-"))
    }

    #[test]
    fn renders_time_and_fields() {
        let mut t = Template::parse("a-%Y.%m.%d-{user}").unwrap();
        let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z","user":"Al"}"#);
        assert_eq!(t.render(&e, keep), "a-2017.02.03-Al");
        let e = ev(r#"{"event":"x","time":"2018-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e, keep), "a-2018.02.03--");
    }

    #[test]
    fn prefixes_and_literals() {
        let t = Template::parse("auditrail-%Y.%m.%d").unwrap();
        assert_eq!(t.literal_prefix(), "auditrail-");
        assert_eq!(t.literal_text(), "auditrail-..");
        let t = Template::parse("logs-{cluster_name}-x").unwrap();
        assert_eq!(t.literal_prefix(), "logs-");
        assert_eq!(t.literal_text(), "logs--x");
        let t = Template::parse("static").unwrap();
        assert!(t.is_static());
        assert_eq!(t.literal_prefix(), "static");
        assert_eq!(Template::parse("100%%").unwrap().literal_text(), "100%");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            if let Ok(mut t) = Template::parse(&s) {
                let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#);
                let _ = t.render(&e, keep);
                let _ = t.literal_prefix();
                let _ = t.literal_text();
            }
        }
    }
}
