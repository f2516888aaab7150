//! The web player's HTML: the list of recordings, the player page, the not-found page. Also the player
//! page of `auditrail export`, with its scripts, styles, recording and events inlined.

use std::fmt::Write;

use super::feed::TimelineEvent;
use crate::play::source::Summary;

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON made safe inside `<script>`: no `<` (so no `</script>` or `<!--`), no U+2028/9.
pub fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Seconds as `H:MM:SS` / `M:SS`.
pub fn duration(t: f64) -> String {
    let t = t.max(0.0) as u64;
    let (h, m, s) = (t / 3600, (t % 3600) / 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn head(title: &str, extra: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"referrer\" content=\"no-referrer\">{extra}</head>\n",
        esc(title)
    )
}

/// The list of recordings.
pub fn list(dir: &str, rows: &[Summary], not_built: Option<&str>) -> String {
    let mut h = head(
        "auditrail recordings",
        "<link rel=\"stylesheet\" href=\"/assets/app.css\">",
    );
    let _ = write!(
        h,
        "<body><h1>Recordings</h1><p>in <code>{}</code>: {} recordings</p>",
        esc(dir),
        rows.len()
    );
    if let Some(n) = not_built {
        let _ = write!(h, "<p class=\"problem\" id=\"not-built\">{}</p>", esc(n));
    }
    h.push_str(
        "<table class=\"recordings\"><thead><tr><th>session</th><th>user</th><th>server</th><th>start (UTC)</th>\
         <th>duration</th><th>size</th></tr></thead><tbody>\n",
    );
    for r in rows {
        let start = r
            .start
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr data-sid=\"{sid}\"><td><a href=\"/play/{sid}\">{sid}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.user.as_deref().unwrap_or("")),
            esc(r.server.as_deref().unwrap_or("")),
            esc(&start),
            r.duration.map(duration).unwrap_or_default(),
            r.bytes,
            sid = esc(&r.sid),
        );
        if let Some(p) = &r.problem {
            let _ = writeln!(
                h,
                "<tr><td colspan=\"6\" class=\"problem\">{}</td></tr>",
                esc(p)
            );
        }
    }
    h.push_str("</tbody></table></body></html>\n");
    h
}

/// The not-found page, with a link to the list.
pub fn not_found(what: &str) -> String {
    let mut h = head("not found", "");
    let _ = writeln!(
        h,
        "<body><h1>Not found</h1><p>{}</p><p><a href=\"/\">All recordings</a></p></body></html>",
        esc(what)
    );
    h
}

/// The controls and the events list, shared by the served and the exported page.
fn body(sid: &str, back_link: bool) -> String {
    let mut h = String::from("<body>");
    if back_link {
        h.push_str("<p><a href=\"/\">All recordings</a></p>");
    }
    let _ = write!(
        h,
        "<h1>Session <code>{}</code></h1>\
         <p id=\"problems\" hidden></p>\
         <main class=\"player\"><div id=\"stage\"><div id=\"player\"></div>\
         <div id=\"controls\"><button id=\"play\" type=\"button\">Play</button>\
         <input id=\"seek\" type=\"range\" min=\"0\" max=\"0\" step=\"0.1\" value=\"0\" aria-label=\"seek\">\
         <span id=\"clock\">0:00</span>\
         <label>speed <select id=\"speed\"><option value=\"0.5\">0.5×</option><option value=\"1\" selected>1×</option>\
         <option value=\"2\">2×</option><option value=\"4\">4×</option><option value=\"8\">8×</option></select></label>\
         </div></div>\
         <aside><h2>Events</h2><ol id=\"events\"></ol></aside></main>",
        esc(sid)
    );
    h
}

/// The served player page; the recording and events are fetched by `app.js`.
pub fn player(sid: &str, config: &serde_json::Value) -> String {
    let mut h = head(
        &format!("auditrail: session {sid}"),
        "<link rel=\"stylesheet\" href=\"/assets/asciinema-player.css\"><link rel=\"stylesheet\" href=\"/assets/app.css\">",
    );
    h.push_str(&body(sid, true));
    let _ = writeln!(
        h,
        "<script id=\"config\" type=\"application/json\">{}</script>\
         <script src=\"/assets/asciinema-player.min.js\"></script><script src=\"/assets/app.js\"></script></body></html>",
        script_json(config)
    );
    h
}

/// The exported page: everything inline. `cast` is the clean asciicast text.
pub fn export(
    sid: &str,
    cast: &str,
    events: &[TimelineEvent],
    problems: &[String],
    at: f64,
    duration: f64,
) -> String {
    use super::assets;
    let player_js = &String::from_utf8_lossy(assets::PLAYER_JS);
    let player_css = &String::from_utf8_lossy(assets::PLAYER_CSS);
    let (app_js, app_css) = (assets::APP_JS, assets::APP_CSS);
    let config = serde_json::json!({
        "sid": sid,
        "cast": cast,
        "events": events,
        "problems": problems,
        "at": at,
        "duration": duration,
    });
    let no_close = |s: &str| {
        s.replace("</script", "<\\/script")
            .replace("</style", "<\\/style")
    };
    let mut h = head(
        &format!("auditrail: session {sid}"),
        &format!(
            "<style>{}</style><style>{}</style>",
            no_close(player_css),
            no_close(app_css)
        ),
    );
    h.push_str(&body(sid, false));
    let _ = writeln!(
        h,
        "<script id=\"config\" type=\"application/json\">{}</script><script>{}</script><script>{}</script></body></html>",
        script_json(&config),
        no_close(player_js),
        no_close(app_js)
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_script_data_cannot_break_out() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let j = script_json(&serde_json::json!({"a": "</script><!--\u{2028}"}));
        assert!(!j.contains('<') && !j.contains('\u{2028}'), "{j}");
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back["a"], "</script><!--\u{2028}");
    }
}
