//! Index (or data stream) names: the shared [`Template`] with Elasticsearch's naming rules on top.
//!
//! An index name is lower case, at most 255 bytes, must not start with `_`, `-` or `+`, and must not contain
//! `\ / * ? " < > | , # :` or a space. The literal parts of a template are checked when the config is
//! loaded; a field value is lower-cased and every character that an index name cannot hold becomes `_`, so a
//! rendered name is always valid and an event can never be refused for its index name.

use std::borrow::Cow;

use auditrail_core::Event;

use crate::template::Template;

/// Characters an index name cannot contain.
pub const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ',', '#', ':', ' '];

/// Longest index name Elasticsearch accepts, in bytes.
pub const MAX_INDEX_BYTES: usize = 255;

/// A parsed index name template.
#[derive(Clone, Debug)]
pub struct IndexTemplate {
    template: Template,
    /// The last rendering when the template is static.
    fixed: Option<String>,
}

impl IndexTemplate {
    /// Parses and checks `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<IndexTemplate, String> {
        let template = Template::parse(text)?;
        let literal = template.literal_text();
        if literal.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "`{text}`: index names are lower-case: write e.g. \"{}\"",
                text.to_ascii_lowercase()
            ));
        }
        if let Some(c) = literal.chars().find(|c| FORBIDDEN.contains(c)) {
            return Err(format!(
                "`{text}`: an index name cannot contain {c:?} (nor any of \\ / * ? \" < > | , # : or a space)"
            ));
        }
        if text.starts_with(['_', '-', '+']) {
            return Err(format!(
                "`{text}`: an index name must not start with `_`, `-` or `+`"
            ));
        }
        if template.literal_prefix().is_empty() {
            return Err(format!("`{text}`: start the index name with literal text (e.g. \"auditrail-{{event}}\"), so that it can never begin with a character Elasticsearch refuses"));
        }
        if text == "." || text == ".." {
            return Err(format!("`{text}` is not a valid index name"));
        }
        let fixed = template.is_static().then(|| text.to_string());
        Ok(IndexTemplate { template, fixed })
    }

    /// Whether every event goes to the same index.
    pub fn is_static(&self) -> bool {
        self.fixed.is_some()
    }

    /// The literal start of the name (before the first placeholder or strftime sequence).
    pub fn literal_prefix(&self) -> String {
        self.template.literal_prefix()
    }

    /// The index name for `event`: always a valid index name.
    pub fn render(&mut self, event: &Event) -> String {
        if let Some(f) = &self.fixed {
            return f.clone();
        }
        let mut name = self.template.render(event, sanitize).to_lowercase();
        // strftime output such as %T or %e can hold `:` or spaces.
        if name.contains(FORBIDDEN) {
            name = name.replace(FORBIDDEN, "_");
        }
        if name.len() > MAX_INDEX_BYTES {
            let mut cut = MAX_INDEX_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        name
    }
}

/// A field value as part of an index name.
fn sanitize(value: Option<Cow<'_, str>>) -> Cow<'_, str> {
    match value {
        None => Cow::Borrowed("_"),
        Some(v) if v.is_empty() => Cow::Borrowed("_"),
        Some(v) if v.contains(|c: char| FORBIDDEN.contains(&c) || c.is_control()) => Cow::Owned(
            v.chars()
                .map(|c| {
                    if FORBIDDEN.contains(&c) || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect(),
        ),
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::copy_from_slice(json.as_bytes()), 4096).unwrap()
    }

    #[test]
    fn renders_valid_names() {
        let mut t = IndexTemplate::parse("auditrail-{cluster_name}-%Y.%m.%d").unwrap();
        let e = ev(
            r#"{"event":"x","time":"2017-02-03T06:54:05Z","cluster_name":"Prod EU/1, \"main\""}"#,
        );
        assert_eq!(t.render(&e), "auditrail-prod_eu_1___main_-2017.02.03");
        let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e), "auditrail-_-2017.02.03");
        let mut t = IndexTemplate::parse("auditrail-%b").unwrap();
        assert_eq!(t.render(&e), "auditrail-feb");
        let mut t = IndexTemplate::parse("a-%T-%e").unwrap();
        assert_eq!(t.render(&e), "a-06_54_05-_3");
        let mut t = IndexTemplate::parse("fixed").unwrap();
        assert!(t.is_static());
        assert_eq!(t.render(&e), "fixed");
    }

    #[test]
    fn long_names_are_cut() {
        let mut t = IndexTemplate::parse("a-{user}").unwrap();
        let e = ev(&format!(
            r#"{{"event":"x","time":"2017-02-03T06:54:05Z","user":"{}"}}"#,
            "é".repeat(300)
        ));
        let name = t.render(&e);
        assert!(name.len() <= MAX_INDEX_BYTES && name.starts_with("a-é"));
    }

    #[test]
    fn bad_templates() {
        for (t, msg) in [
            ("Audit", "lower-case"),
            ("a|b", "cannot contain '|'"),
            ("-a", "must not start"),
            ("{event}", "start the index name with literal text"),
            ("a-%Q", "invalid strftime"),
            ("", "empty"),
        ] {
            let e = IndexTemplate::parse(t).unwrap_err();
            assert!(e.contains(msg), "{t}: {e}");
        }
    }

    proptest! {
        #[test]
        fn rendered_names_are_always_valid(value in "\\PC{0,300}") {
            let mut t = IndexTemplate::parse("a-{user}-%Y").unwrap();
            let e = ev(&serde_json::json!({"event":"x","time":"2017-02-03T06:54:05Z","user":value}).to_string());
            let name = t.render(&e);
            prop_assert!(name.len() <= MAX_INDEX_BYTES);
            prop_assert!(!name.contains(FORBIDDEN));
            prop_assert!(!name.chars().any(|c| c.is_control()));
            prop_assert!(name.starts_with("a-"));
            prop_assert_eq!(name.to_lowercase(), name.clone());
        }
    }
}
