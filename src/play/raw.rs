//! `auditrail play --raw`: the recorded bytes to stdout without timing, like `cat`, in constant memory.
//!
//! The `.raw` file is exactly what the terminal received, so it is copied as it is; without one (a `.cast`
//! from elsewhere) the `.cast`'s output events are written in order, and its problems are returned.

use std::io::Write;

use super::cast::{CastReader, Code, Problem};
use super::source::Recording;

/// Writes the recording's bytes to `out`; the problems of the `.cast` when it was the source.
pub fn dump(rec: &Recording, out: &mut impl Write) -> Result<Vec<Problem>, String> {
    let broken = |e: std::io::Error| format!("writing to stdout: {e}");
    if let Some(raw) = &rec.raw {
        let mut f =
            std::fs::File::open(raw).map_err(|e| format!("cannot read {}: {e}", raw.display()))?;
        std::io::copy(&mut f, out).map_err(broken)?;
        out.flush().map_err(broken)?;
        return Ok(Vec::new());
    }
    let mut r = CastReader::open(&rec.cast).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    while let Some(e) = r.next_event() {
        match e {
            Ok(e) if e.code == Code::Output => out.write_all(e.data.as_bytes()).map_err(broken)?,
            Ok(_) => {}
            Err(p) => {
                if problems.len() < super::index::MAX_PROBLEMS {
                    problems.push(p);
                }
            }
        }
    }
    out.flush().map_err(broken)?;
    Ok(problems)
}
