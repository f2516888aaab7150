//! Path templates of the file sink: the shared [`crate::template::Template`] rendered to a path, with each
//! field value made a single safe path component.

use std::borrow::Cow;
use std::path::PathBuf;

use auditrail_core::Event;

use crate::template::Template;

/// A parsed path template.
#[derive(Clone, Debug)]
pub struct PathTemplate(Template);

impl PathTemplate {
    /// Parses `template`; the error says what is wrong.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        if template.is_empty() {
            return Err("the path template is empty".into());
        }
        Template::parse(template).map(PathTemplate)
    }

    /// Whether every event renders to the same path.
    pub fn is_static(&self) -> bool {
        self.0.is_static()
    }

    /// The path for `event`.
    pub fn render(&mut self, event: &Event) -> PathBuf {
        PathBuf::from(self.0.render(event, sanitize))
    }
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
