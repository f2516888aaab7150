//! Builds the web player's third-party JavaScript (asciinema-player, from the npm registry, pinned by
//! `src/play/web/assets/package-lock.json`) into the build directory and generates the Rust that embeds it.
//!
//! `npm ci` runs in `$OUT_DIR` (never in the source tree, which keeps no `node_modules`), only when the
//! lock file changed since the last install. Without npm, offline, or with `AUDITRAIL_SKIP_NPM=1`, the
//! build still succeeds: the binary then says that the web player's assets were not built (and how to
//! build them) instead of serving a player.

use std::path::{Path, PathBuf};
use std::process::Command;

const ASSETS: &str = "src/play/web/assets";
const BUNDLE: &str = "node_modules/asciinema-player/dist/bundle";

fn main() {
    println!("cargo:rerun-if-changed={ASSETS}/package.json");
    println!("cargo:rerun-if-changed={ASSETS}/package-lock.json");
    println!("cargo:rerun-if-env-changed=AUDITRAIL_SKIP_NPM");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let work = out.join("web-assets");
    let generated = out.join("web_assets.rs");
    let outcome = install(&work);
    let code = match outcome {
        Ok(bundle) => format!(
            "/// The assets were built.\npub const BUILT: Result<(), &str> = Ok(());\n\
             /// asciinema-player's bundle.\npub const PLAYER_JS: &[u8] = include_bytes!({js:?});\n\
             /// asciinema-player's stylesheet.\npub const PLAYER_CSS: &[u8] = include_bytes!({css:?});\n",
            js = bundle.join("asciinema-player.min.js"),
            css = bundle.join("asciinema-player.css"),
        ),
        Err(why) => {
            println!("cargo:warning=web player assets not built: {why}");
            format!(
                "/// Why the assets were not built.\npub const BUILT: Result<(), &str> = Err({why:?});\n\
                 /// Not built.\npub const PLAYER_JS: &[u8] = b\"\";\n/// Not built.\npub const PLAYER_CSS: &[u8] = b\"\";\n"
            )
        }
    };
    std::fs::write(&generated, code).expect("writing web_assets.rs");
}

/// Runs `npm ci` in `work` when its lock differs from the source's; the bundle directory.
fn install(work: &Path) -> Result<PathBuf, String> {
    if std::env::var_os("AUDITRAIL_SKIP_NPM").is_some_and(|v| v != "0") {
        return Err("AUDITRAIL_SKIP_NPM is set".into());
    }
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let lock = std::fs::read(Path::new(ASSETS).join("package-lock.json"))
        .map_err(|e| format!("{ASSETS}/package-lock.json: {e}"))?;
    let manifest = std::fs::read(Path::new(ASSETS).join("package.json"))
        .map_err(|e| format!("{ASSETS}/package.json: {e}"))?;
    let bundle = work.join(BUNDLE);
    let stamp = work.join("installed.lock");
    let fresh = std::fs::read(&stamp).is_ok_and(|s| s == lock)
        && bundle.join("asciinema-player.min.js").is_file();
    if fresh {
        return Ok(bundle);
    }
    std::fs::write(work.join("package.json"), &manifest).map_err(|e| e.to_string())?;
    std::fs::write(work.join("package-lock.json"), &lock).map_err(|e| e.to_string())?;
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let result = Command::new(&npm)
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(work)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(format!(
                "`{npm} ci` failed ({}): {}; install node and npm (Debian: apt-get install npm) and rebuild",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot run `{npm}`: {e}; install node and npm (Debian: apt-get install npm) and rebuild"
            ))
        }
    }
    if !bundle.join("asciinema-player.min.js").is_file() {
        return Err(format!(
            "npm ci did not produce {BUNDLE}/asciinema-player.min.js"
        ));
    }
    std::fs::write(&stamp, &lock).map_err(|e| e.to_string())?;
    Ok(bundle)
}
