//! The web player's static files, embedded in the binary: asciinema-player's bundle and stylesheet (built by
//! `build.rs` from the npm registry) and this project's own page script and stylesheet.

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The page script (first-party: list of events, controls, token-free fetches of the same origin).
pub const APP_JS: &str = include_str!("app.js");
/// The page stylesheet.
pub const APP_CSS: &str = include_str!("app.css");

/// The assets by the name they are served under: (body, content type).
pub fn get(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        "asciinema-player.min.js" => Some((PLAYER_JS, "text/javascript; charset=utf-8")),
        "asciinema-player.css" => Some((PLAYER_CSS, "text/css; charset=utf-8")),
        "app.js" => Some((APP_JS.as_bytes(), "text/javascript; charset=utf-8")),
        "app.css" => Some((APP_CSS.as_bytes(), "text/css; charset=utf-8")),
        _ => None,
    }
}

/// What the pages say when the player was not built.
pub fn not_built() -> Option<String> {
    BUILT.err().map(|why| {
        format!(
            "The web player's assets were not built into this binary ({why}). Build with node and npm on the \
             machine (cargo build runs `npm ci` for src/play/web/assets), then run it again."
        )
    })
}
