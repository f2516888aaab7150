//! Path templates of the file sink: the shared [`crate::template::Template`] rendered to a path whose
//! field-derived components are checked after rendering.
//!
//! A field value becomes part of a single path component: `/` and NUL are replaced by `_`, and a missing or
//! empty value renders `_`. Each component that holds field text is then checked as a whole (so that
//! adjacent placeholders, `{a}{b}` with `.` and `.`, are covered): it must not be `.` or `..`, and must fit
//! in [`MAX_COMPONENT_BYTES`]; the whole path must fit in [`MAX_PATH_BYTES`]. What happens to an event whose
//! path breaks a rule is the sink's `unsafe_path` option ([`UnsafeNames`]): refused (dead-lettered, the
//! default) or rewritten (`_` for an unsafe component, a long one cut with a hash suffix). Either way the path
//! has exactly the template's directory structure: a value can never add, remove or climb a level.

use std::borrow::Cow;
use std::path::PathBuf;

use auditrail_core::Event;

use crate::name_rules::{self, NameRefused, UnsafeNames};
use crate::template::Template;

/// Most bytes of a path component that holds field text: below NAME_MAX (255), leaving room for the
/// filesystems with shorter limits to be the exception rather than the rule.
pub const MAX_COMPONENT_BYTES: usize = 240;

/// Most bytes of a whole rendered path: below PATH_MAX (4096, NUL included).
pub const MAX_PATH_BYTES: usize = 4000;

/// Dead-letter reason of an event whose path would be longer than a component or a path may be.
pub const REASON_TOO_LONG: &str = "path_too_long";
/// Dead-letter reason of an event whose fields render a `.` or `..` path component.
pub const REASON_UNSAFE_COMPONENT: &str = "path_unsafe_component";

/// One `/`-separated piece of the template.
#[derive(Clone, Debug)]
enum Component {
    /// Plain text.
    Literal(String),
    /// Text alone (possibly with strftime sequences, whose output is never checked: it is not the events').
    Fixed(Template),
    /// With placeholders: checked after rendering.
    Fields(Template),
}

/// A parsed path template.
#[derive(Clone, Debug)]
pub struct PathTemplate {
    whole: Template,
    components: Vec<Component>,
    policy: UnsafeNames,
}

impl PathTemplate {
    /// Parses `template`; the error says what is wrong. Unsafe paths are dead-lettered (see [`Self::policy`]).
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        if template.is_empty() {
            return Err("the path template is empty".into());
        }
        // The whole first, so that an error points at the byte of the template it is about.
        let whole = Template::parse(template)?;
        let mut components = Vec::new();
        let mut fields = 0;
        for piece in template.split('/') {
            if piece.is_empty() {
                components.push(Component::Literal(String::new()));
                continue;
            }
            let t = Template::parse(piece)?;
            if t.has_fields() {
                fields += 1;
                components.push(Component::Fields(t));
            } else {
                if t.is_static() {
                    if piece.len() > MAX_COMPONENT_BYTES {
                        return Err(format!("the path component `{}` is {} bytes: at most {MAX_COMPONENT_BYTES} are allowed", name_rules::preview(piece), piece.len()));
                    }
                    components.push(Component::Literal(piece.to_string()));
                } else {
                    components.push(Component::Fixed(t));
                }
            }
        }
        // Even with every field component at its longest, the path must fit: then rewriting always can.
        let worst = whole.literal_text().len()
            + 64 * template.matches('%').count()
            + fields * MAX_COMPONENT_BYTES;
        if worst > MAX_PATH_BYTES {
            return Err(format!("with {fields} components holding fields, a rendered path could be {worst} bytes: at most {MAX_PATH_BYTES} are allowed (use fewer placeholder components)"));
        }
        Ok(PathTemplate {
            whole,
            components,
            policy: UnsafeNames::default(),
        })
    }

    /// What [`Self::render`] does with a path that breaks a rule.
    pub fn policy(mut self, policy: UnsafeNames) -> PathTemplate {
        self.policy = policy;
        self
    }

    /// Whether every event renders to the same path.
    pub fn is_static(&self) -> bool {
        self.whole.is_static()
    }

    /// The path for `event`, or why it cannot have one (only with `unsafe_path = "dead_letter"`).
    pub fn render(&mut self, event: &Event) -> Result<PathBuf, NameRefused> {
        self.render_marked(event).map(|(p, _)| p)
    }

    /// [`Self::render`], with the byte offset in the path where field-derived text starts (the path's length
    /// when it has none): an error from the OS about a component before it is not the event's doing.
    pub fn render_marked(&mut self, event: &Event) -> Result<(PathBuf, usize), NameRefused> {
        if !self.whole.has_fields() {
            let path = self.whole.render(event, sanitize);
            let len = path.len();
            return Ok((PathBuf::from(path), len));
        }
        let mut out = String::with_capacity(128);
        let mut fields_from = None;
        for (i, c) in self.components.iter_mut().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match c {
                Component::Literal(text) => out.push_str(text),
                Component::Fixed(t) => t.render_into(event, sanitize, &mut out),
                Component::Fields(t) => {
                    let start = out.len();
                    fields_from.get_or_insert(start);
                    t.render_into(event, sanitize, &mut out);
                    if let Some(fixed) = check(&out[start..], t, self.policy)? {
                        out.truncate(start);
                        out.push_str(&fixed);
                    }
                }
            }
        }
        if out.len() > MAX_PATH_BYTES {
            // Only reachable in dead-letter mode: parse bounds the worst case of a rewritten path.
            return Err(NameRefused {
                reason: REASON_TOO_LONG,
                message: format!(
                    "fields {} make the path {} bytes long: at most {MAX_PATH_BYTES} are allowed",
                    name_rules::list_fields(&self.whole.field_names()),
                    out.len()
                ),
            });
        }
        let from = fields_from.unwrap_or(out.len());
        Ok((PathBuf::from(out), from))
    }
}

/// Checks a rendered component (`/` in it can only come from strftime, e.g. `%D`: each piece is checked);
/// returns its rewritten text if the policy rewrites it, or why it cannot be used.
fn check(rendered: &str, t: &Template, policy: UnsafeNames) -> Result<Option<String>, NameRefused> {
    let bad = |piece: &str| piece == "." || piece == ".." || piece.len() > MAX_COMPONENT_BYTES;
    if !rendered.split('/').any(bad) {
        return Ok(None);
    }
    let fields = name_rules::list_fields(&t.field_names());
    if policy == UnsafeNames::DeadLetter {
        let piece = rendered.split('/').find(|p| bad(p)).expect("one is bad");
        return Err(if piece.len() > MAX_COMPONENT_BYTES {
            NameRefused {
                reason: REASON_TOO_LONG,
                message: format!("fields {fields} make the path component `{}` {} bytes long: at most {MAX_COMPONENT_BYTES} are allowed (unsafe_path = \"rewrite\" would cut it, with a hash suffix)", name_rules::preview(piece), piece.len()),
            }
        } else {
            NameRefused {
                reason: REASON_UNSAFE_COMPONENT,
                message: format!("fields {fields} make the path component `{piece}`, which would leave the template's directory: expected a name other than `.` or `..` (unsafe_path = \"rewrite\" would write `_` instead)"),
            }
        });
    }
    let pieces: Vec<String> = rendered
        .split('/')
        .map(|p| {
            if p == "." || p == ".." {
                "_".to_string()
            } else {
                name_rules::shorten(p, MAX_COMPONENT_BYTES, t.literal_suffix())
            }
        })
        .collect();
    Ok(Some(pieces.join("/")))
}

/// A field value as text inside a single path component.
fn sanitize(value: Option<Cow<'_, str>>) -> Cow<'_, str> {
    match value {
        None => Cow::Borrowed("_"),
        Some(v) if v.is_empty() => Cow::Borrowed("_"),
        Some(v) if v.contains(['/', '\0']) => Cow::Owned(v.replace(['/', '\0'], "_")),
        Some(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::path::{Component as PathComponent, Path};

    fn ev(json: &str) -> Event {
        Event::parse(Bytes::copy_from_slice(json.as_bytes()), 1 << 20).unwrap()
    }

    fn with(fields: &[(&str, &str)]) -> Event {
        let mut v = serde_json::json!({"event":"x","time":"2017-02-03T06:54:05Z"});
        for (k, val) in fields {
            v[*k] = serde_json::Value::String(val.to_string());
        }
        ev(&v.to_string())
    }

    #[test]
    fn renders_time_and_fields() {
        let mut t = PathTemplate::parse("/x/%Y-%m-%d/{event}-{user}.ndjson").unwrap();
        assert!(!t.is_static());
        let e = ev(r#"{"event":"session.start","time":"2017-02-03T06:54:05.999Z","user":"a/b"}"#);
        assert_eq!(
            t.render(&e).unwrap(),
            PathBuf::from("/x/2017-02-03/session.start-a_b.ndjson")
        );
        let e = ev(r#"{"event":"user.login","time":"2017-02-04T00:00:00+01:00"}"#);
        assert_eq!(
            t.render(&e).unwrap(),
            PathBuf::from("/x/2017-02-03/user.login-_.ndjson")
        );
        // `..` inside a longer component is a harmless name; an empty value renders `_` like a missing one.
        let e = ev(r#"{"event":"..","time":"2018-01-01T00:00:00Z","user":""}"#);
        assert_eq!(
            t.render(&e).unwrap(),
            PathBuf::from("/x/2018-01-01/..-_.ndjson")
        );
    }

    #[test]
    fn dot_components_are_refused_by_default_and_rewritten_on_request() {
        let cases: [(&str, &[(&str, &str)]); 4] = [
            ("/x/{user}/e", &[("user", "..")]),
            ("/x/{user}/e", &[("user", ".")]),
            ("/x/{a}{b}/e", &[("a", "."), ("b", ".")]),
            ("/x/{a}./e", &[("a", ".")]),
        ];
        for (template, fields) in cases {
            let e = with(fields);
            let err = PathTemplate::parse(template)
                .unwrap()
                .render(&e)
                .unwrap_err();
            assert_eq!(err.reason, REASON_UNSAFE_COMPONENT, "{template}");
            assert!(
                err.message.contains("expected a name other than"),
                "{}",
                err.message
            );
            let mut t = PathTemplate::parse(template)
                .unwrap()
                .policy(UnsafeNames::Rewrite);
            assert_eq!(t.render(&e).unwrap(), PathBuf::from("/x/_/e"), "{template}");
        }
    }

    #[test]
    fn long_components_are_refused_by_default_and_shortened_on_request() {
        let user = "u".repeat(10_000);
        let e = with(&[("user", &user)]);
        let err = PathTemplate::parse("/x/{user}/{event}.ndjson")
            .unwrap()
            .render(&e)
            .unwrap_err();
        assert_eq!(err.reason, REASON_TOO_LONG);
        assert!(
            err.message.contains("`user`") && err.message.contains("10000 bytes"),
            "{}",
            err.message
        );
        let mut t = PathTemplate::parse("/x/{user}.ndjson")
            .unwrap()
            .policy(UnsafeNames::Rewrite);
        let p = t.render(&e).unwrap();
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() <= MAX_COMPONENT_BYTES
                && name.ends_with(".ndjson")
                && name.starts_with("uuu"),
            "{name}"
        );
        let other = t.render(&with(&[("user", &format!("{user}v"))])).unwrap();
        assert_ne!(p, other, "distinct long values stay distinct");
    }

    #[test]
    fn static_template() {
        let mut t = PathTemplate::parse("out/events.ndjson").unwrap();
        assert!(t.is_static());
        let e = ev(r#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#);
        assert_eq!(t.render(&e).unwrap(), PathBuf::from("out/events.ndjson"));
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
        assert!(PathTemplate::parse(&format!("/x/{}/e", "a".repeat(300)))
            .unwrap_err()
            .contains("at most 240"));
        assert!(PathTemplate::parse(&"/{a}".repeat(20))
            .unwrap_err()
            .contains("fewer placeholder components"));
    }

    /// What a rendered path must always be: the template's structure, no climbing, every component bounded.
    fn assert_safe(template: &str, path: &Path) -> Result<(), TestCaseError> {
        let text = path.to_str().unwrap();
        prop_assert!(text.len() <= MAX_PATH_BYTES);
        prop_assert_eq!(
            text.matches('/').count(),
            template.matches('/').count(),
            "{}",
            text
        );
        for c in path.components() {
            prop_assert!(
                matches!(c, PathComponent::RootDir | PathComponent::Normal(_)),
                "{:?} in {}",
                c,
                text
            );
            prop_assert!(c.as_os_str().len() <= MAX_COMPONENT_BYTES);
        }
        // `Path::components` drops `.` pieces silently: look at the raw text too.
        for piece in text.split('/').skip(1) {
            prop_assert!(
                !piece.is_empty() && piece != "." && piece != "..",
                "{:?} in {}",
                piece,
                text
            );
        }
        Ok(())
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".to_string()),
            Just("..".to_string()),
            "[./a]{0,4}",
            "\\PC{0,40}",
            "\\PC{200,400}",
        ]
    }

    /// Values that no rule rewrites character by character (`/`, NUL, and `_` which they become, left out).
    fn distinct_value() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z.]{1,3}", "[^/_\\x00]{1,40}", "[^/_\\x00]{230,400}"]
    }

    proptest! {
        #[test]
        fn rendered_paths_are_always_safe(a in value(), b in value(), rewrite in any::<bool>()) {
            for template in ["/out/{a}/{b}.ndjson", "/out/{a}{b}/x", "/out/{a}./{b}", "/out/%Y/{a}-%D-{b}"] {
                let policy = if rewrite { UnsafeNames::Rewrite } else { UnsafeNames::DeadLetter };
                let mut t = PathTemplate::parse(template).unwrap().policy(policy);
                match t.render(&with(&[("a", &a), ("b", &b)])) {
                    Ok(p) => {
                        let shape = template.replace("%D", "%m/%d/%y");
                        assert_safe(&shape, &p)?;
                    }
                    Err(e) => {
                        prop_assert!(!rewrite, "rewrite never refuses: {:?}", e);
                        prop_assert!([REASON_TOO_LONG, REASON_UNSAFE_COMPONENT].contains(&e.reason));
                    }
                }
            }
        }

        #[test]
        fn rewriting_keeps_distinct_values_distinct(a in distinct_value(), b in distinct_value()) {
            prop_assume!(a != b);
            // `.` and `..` become `_`, by design: leave them out of the comparison.
            prop_assume!(![&a, &b].iter().any(|v| v.as_str() == "." || v.as_str() == ".."));
            let mut t = PathTemplate::parse("/out/{user}.ndjson").unwrap().policy(UnsafeNames::Rewrite);
            let (pa, pb) = (t.render(&with(&[("user", &a)])).unwrap(), t.render(&with(&[("user", &b)])).unwrap());
            prop_assert_ne!(pa, pb);
        }
    }
}
