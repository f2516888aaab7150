//! Object keys: the `key_template` (`{server_id}/{yyyy}/{mm}/{dd}/{sid}/{file}` by default), parsed once at
//! start and rendered per file. A key must never collide with another session's (unlike a counter that
//! resets, fluent-bit#11987), so the template must hold `{sid}` and `{file}`; and it must be stable across
//! restarts (a resumed multipart upload goes to the same key), so it only uses what the files say: the date
//! is the session's end (`.done`'s mtime, else the newest file's), never "now".

use chrono::{DateTime, Datelike, Utc};

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    ServerId,
    Hostname,
    Year,
    Month,
    Day,
    Sid,
    File,
}

/// A parsed `key_template`.
#[derive(Clone, Debug)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a key is made of, for one file.
pub struct KeyParts<'a> {
    /// `server_id`.
    pub server_id: &'a str,
    /// This host's name.
    pub hostname: &'a str,
    /// When the session ended.
    pub date: DateTime<Utc>,
    /// Session id.
    pub sid: &'a str,
    /// File name, e.g. `<sid>.raw`.
    pub file: &'a str,
}

const NAMES: &str = "{server_id}, {hostname}, {yyyy}, {mm}, {dd}, {sid}, {file}";

impl Template {
    /// Parses `text`; the error says what is wrong and lists the placeholders.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!("`{{` without a closing `}}` in `{text}`; the placeholders are {NAMES}")
            })?;
            let name = &after[..close];
            pieces.push(match name {
                "server_id" => Piece::ServerId,
                "hostname" => Piece::Hostname,
                "yyyy" => Piece::Year,
                "mm" => Piece::Month,
                "dd" => Piece::Day,
                "sid" => Piece::Sid,
                "file" => Piece::File,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}`; the placeholders are {NAMES}"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        if !pieces.contains(&Piece::Sid) || !pieces.contains(&Piece::File) {
            return Err(format!(
                "`{text}` must contain {{sid}} and {{file}}, so that no two files share a key"
            ));
        }
        if pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains('}')))
        {
            return Err(format!("`}}` without an opening `{{` in `{text}`"));
        }
        Ok(Template { pieces })
    }

    /// The key for `parts`, checked as an object_store path (no empty segment, no `.`/`..`, no control
    /// characters); the error names the key and the cause.
    pub fn render(&self, parts: &KeyParts<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::ServerId => out.push_str(parts.server_id),
                Piece::Hostname => out.push_str(parts.hostname),
                Piece::Year => out.push_str(&format!("{:04}", parts.date.year())),
                Piece::Month => out.push_str(&format!("{:02}", parts.date.month())),
                Piece::Day => out.push_str(&format!("{:02}", parts.date.day())),
                Piece::Sid => out.push_str(parts.sid),
                Piece::File => out.push_str(parts.file),
            }
        }
        check_key(&out)?;
        Ok(out)
    }
}

/// Refuses keys S3 and object_store would mangle or refuse: empty, over 1024 bytes, empty segments (`a//b`,
/// a leading or trailing `/`), `.` or `..` segments, control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 1024 {
        return Err(format!(
            "the object key `{key}` is {} bytes: expected 1 to 1024",
            key.len()
        ));
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "the object key `{key}` has an empty, `.` or `..` segment: check key_template and server_id"
            ));
        }
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the object key {key:?} contains the control character {c:?}"
        ));
    }
    object_store::path::Path::parse(key)
        .map_err(|e| format!("the object key `{key}` is not a valid object path: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn parts<'a>(server_id: &'a str, file: &'a str) -> KeyParts<'a> {
        KeyParts {
            server_id,
            hostname: "h1",
            date: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(),
            sid: "s-1",
            file,
        }
    }

    #[test]
    fn the_default_template_renders() {
        let t = Template::parse("{server_id}/{yyyy}/{mm}/{dd}/{sid}/{file}").unwrap();
        assert_eq!(
            t.render(&parts("n1", "s-1.raw")).unwrap(),
            "n1/2026/03/04/s-1/s-1.raw"
        );
        let t = Template::parse("x-{hostname}/{sid}.{file}").unwrap();
        assert_eq!(t.render(&parts("n1", "f")).unwrap(), "x-h1/s-1.f");
    }

    #[test]
    fn bad_templates_and_keys_are_refused() {
        assert!(Template::parse("{server_id}/{file}")
            .unwrap_err()
            .contains("{sid}"));
        assert!(Template::parse("{sid}/{file}/{nope}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(Template::parse("{sid}/{file")
            .unwrap_err()
            .contains("closing"));
        assert!(Template::parse("{sid}}/{file}").is_err());
        let t = Template::parse("{server_id}/{sid}/{file}").unwrap();
        let e = t.render(&parts("", "f")).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(t.render(&parts("..", "f")).is_err());
        assert!(t
            .render(&parts("a\nb", "f"))
            .unwrap_err()
            .contains("control"));
    }
}
