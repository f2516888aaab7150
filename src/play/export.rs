//! `auditrail export`: one self-contained HTML file of a session for an auditor with no account and no
//! server — the player (asciinema-player and this project's page script, inlined), the recording (as clean
//! asciicast v2) and the session's events — that opens paused on the screen at `--at` (default: the end).

use std::io::Write;

use super::cast::Problem;
use super::web::{assets, feed, pages};
use super::{recordings_dir, source, At, ExportArgs};

/// Writes the page; the problems the recording has (it is exported anyway, with them listed on the page).
pub fn run(args: &ExportArgs) -> Result<Vec<Problem>, String> {
    if let Some(n) = assets::not_built() {
        return Err(n);
    }
    let dir = recordings_dir(args.config.as_ref(), args.dir.as_ref())?;
    let rec = source::find(&args.recording, &dir).map_err(|e| e.to_string())?;
    let mut cast = Vec::new();
    let (problems, count, duration) =
        feed::clean_cast(&rec.cast, &mut cast).map_err(|e| e.to_string())?;
    let cast = String::from_utf8(cast).map_err(|e| format!("internal: cast not UTF-8: {e}"))?;
    let start = super::cast::CastReader::open(&rec.cast)
        .ok()
        .and_then(|r| r.header().timestamp);
    let events = rec
        .events
        .as_deref()
        .map(|e| feed::timeline(e, start).0)
        .unwrap_or_default();
    let at = match args.at.as_deref().map(At::parse).transpose()? {
        Some(a) => a.resolve(duration).min(duration),
        None => duration,
    };
    let mut shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    if count > shown.len() as u64 {
        shown.push(format!("… {count} problems in all"));
    }
    let html = pages::export(&rec.sid, &cast, &events, &shown, at, duration);
    let tmp = args.output.with_extension("html.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(html.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &args.output)
    };
    write().map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!(
        "auditrail export: {} ({} bytes): session {}, {} events, opens at {}",
        args.output.display(),
        html.len(),
        rec.sid,
        events.len(),
        pages::duration(at)
    );
    Ok(problems)
}
