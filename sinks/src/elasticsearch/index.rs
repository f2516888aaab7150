//! Index (or data stream) names: the shared [`Template`] with Elasticsearch's naming rules on top.
//!
//! An index name is lower case, at most 255 bytes, must not start with `_`, `-` or `+`, and must not contain
//! `\ / * ? " < > | , # :` or a space, and is not `.` or `..`. The literal parts of a template are checked
//! when the config is loaded (it must start with literal text that does not begin with `_`, `-` or `+` and is
//! not only dots); a field value is lower-cased and every character that an index name cannot hold becomes
//! `_`, so those rules hold by construction. What cannot be fixed character by character, a name over 255
//! bytes, follows the sink's `unsafe_index` option ([`UnsafeNames`], shared with the file sink's paths): the
//! event is dead-lettered (default) or the name cut and suffixed with a hash of its full text.
//! Either way the cluster never sees a name it refuses, so a bulk request is never failed by one event.

use std::borrow::Cow;

use auditrail_core::Event;

use crate::name_rules::{self, NameRefused, UnsafeNames};
use crate::template::Template;

/// Dead-letter reason of an event whose fields make an index name longer than [`MAX_INDEX_BYTES`].
pub const REASON_TOO_LONG: &str = "index_name_too_long";

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
    policy: UnsafeNames,
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
        if template.literal_prefix().chars().all(|c| c == '.') {
            // Then the fields could make the name `.` or `..`; with another literal character they never can.
            return Err(format!("`{text}`: start the index name with literal text other than dots (e.g. \"auditrail-{{event}}\"), so that it can never be `.` or `..`"));
        }
        let fixed = template.is_static().then(|| text.to_string());
        if text.len() > MAX_INDEX_BYTES {
            return Err(format!(
                "`{}…` is {} bytes: an index name holds at most {MAX_INDEX_BYTES}",
                name_rules::cut(text, 32),
                text.len()
            ));
        }
        Ok(IndexTemplate {
            template,
            fixed,
            policy: UnsafeNames::default(),
        })
    }

    /// What [`Self::render`] does with a name that is too long or all dots.
    pub fn policy(mut self, policy: UnsafeNames) -> IndexTemplate {
        self.policy = policy;
        self
    }

    /// Whether every event goes to the same index.
    pub fn is_static(&self) -> bool {
        self.fixed.is_some()
    }

    /// The literal start of the name (before the first placeholder or strftime sequence).
    pub fn literal_prefix(&self) -> String {
        self.template.literal_prefix()
    }

    /// The index name for `event`: always a valid index name, or (with `unsafe_index = "dead_letter"`) why
    /// the event's fields cannot make one.
    pub fn render(&mut self, event: &Event) -> Result<String, NameRefused> {
        if let Some(f) = &self.fixed {
            return Ok(f.clone());
        }
        let mut name = self.template.render(event, sanitize).to_lowercase();
        // strftime output such as %T or %e can hold `:` or spaces.
        if name.contains(FORBIDDEN) {
            name = name.replace(FORBIDDEN, "_");
        }
        if name.len() > MAX_INDEX_BYTES {
            if self.policy == UnsafeNames::Rewrite {
                return Ok(name_rules::shorten(&name, MAX_INDEX_BYTES, ""));
            }
            return Err(NameRefused {
                reason: REASON_TOO_LONG,
                message: format!(
                    "fields {} make the index name `{}` {} bytes long: an index name holds at most {MAX_INDEX_BYTES} (unsafe_index = \"rewrite\" would cut it, with a hash suffix)",
                    name_rules::list_fields(&self.template.field_names()),
                    name_rules::preview(&name),
                    name.len()
                ),
            });
        }
        Ok(name)
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
        assert_eq!(
            t.render(&e).unwrap(),
            "auditrail-prod_eu_1___main_-2017.02.03"
        );
        let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e).unwrap(), "auditrail-_-2017.02.03");
        let mut t = IndexTemplate::parse("auditrail-%b").unwrap();
        assert_eq!(t.render(&e).unwrap(), "auditrail-feb");
        let mut t = IndexTemplate::parse("a-%T-%e").unwrap();
        assert_eq!(t.render(&e).unwrap(), "a-06_54_05-_3");
        let mut t = IndexTemplate::parse("fixed").unwrap();
        assert!(t.is_static());
        assert_eq!(t.render(&e).unwrap(), "fixed");
    }

    #[test]
    fn long_names_are_refused_by_default_and_cut_with_a_hash_on_request() {
        let long = |c: &str| {
            ev(&format!(
                r#"{{"event":"x","time":"2017-02-03T06:54:05Z","user":"{}"}}"#,
                c.repeat(300)
            ))
        };
        let err = IndexTemplate::parse("a-{user}")
            .unwrap()
            .render(&long("é"))
            .unwrap_err();
        assert_eq!(err.reason, REASON_TOO_LONG);
        assert!(
            err.message.contains("`user`") && err.message.contains("602 bytes"),
            "{}",
            err.message
        );
        let mut t = IndexTemplate::parse("a-{user}")
            .unwrap()
            .policy(UnsafeNames::Rewrite);
        let name = t.render(&long("é")).unwrap();
        assert!(
            name.len() <= MAX_INDEX_BYTES && name.starts_with("a-é"),
            "{name}"
        );
        assert_ne!(name, t.render(&long("è")).unwrap());
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
            ("+a", "must not start"),
            ("_{user}", "must not start"),
            ("%Y-{user}", "start the index name with literal text"),
            (".", "not a valid index name"),
            (".{user}", "other than dots"),
            ("..", "not a valid index name"),
        ] {
            let e = IndexTemplate::parse(t).unwrap_err();
            assert!(e.contains(msg), "{t}: {e}");
        }
    }

    proptest! {
        #[test]
        fn rendered_names_are_always_valid(
            value in prop_oneof![Just(".".to_string()), Just(String::new()), "\\PC{0,300}"],
            template in prop_oneof![Just("a-{user}-%Y"), Just(".a{user}"), Just("x{user}{user}")],
            rewrite in any::<bool>(),
        ) {
            let policy = if rewrite { UnsafeNames::Rewrite } else { UnsafeNames::DeadLetter };
            let mut t = IndexTemplate::parse(template).unwrap().policy(policy);
            let e = ev(&serde_json::json!({"event":"x","time":"2017-02-03T06:54:05Z","user":value}).to_string());
            match t.render(&e) {
                Ok(name) => {
                    prop_assert!(name.len() <= MAX_INDEX_BYTES);
                    prop_assert!(!name.contains(FORBIDDEN));
                    prop_assert!(!name.chars().any(|c| c.is_control()));
                    prop_assert!(!name.starts_with(['_', '-', '+']));
                    prop_assert!(name != "." && name != "..");
                    prop_assert!(!name.is_empty());
                    prop_assert_eq!(name.to_lowercase(), name.clone());
                }
                Err(e) => {
                    prop_assert!(!rewrite, "rewrite never refuses: {:?}", e);
                    prop_assert_eq!(e.reason, REASON_TOO_LONG);
                }
            }
        }
    }
}
