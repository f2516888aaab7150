//! The players of session recordings: `auditrail play` on the terminal ([`terminal`]), `play --raw`
//! ([`raw`]), `play --web` in the browser ([`web`]) and `auditrail export` to one self-contained HTML file
//! ([`export`]); all read the recorder's files through the streaming [`cast`] reader and the [`index`].
//!
//! Exit status: 0 played (or exported) cleanly; 1 the file has problems (what was readable was shown, the
//! problems are listed on stderr as `file:line: what`); 2 usage error or nothing playable.

pub mod cast;
pub mod export;
pub mod index;
pub mod index_file;
pub mod raw;
pub mod source;
pub mod terminal;
pub mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use cast::{CastReader, Problem};
use index::SeekIndex;

/// `auditrail play [OPTIONS] [SID | PATH]`.
#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// A session id (looked up in the recordings directory) or a path to a `.cast` (or, with `--raw`, `.raw`)
    /// file. Not with `--web`.
    pub recording: Option<String>,
    /// The agent's config file; its `data_dir` and `[recording] dir` say where recordings are.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Recordings directory; default `[recording] dir`, else `<data_dir>/recordings`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Playback speed (2 = twice as fast); `+`/`-` change it while playing.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub speed: f64,
    /// Longest pause between two events, in seconds (default: the cast header's `idle_time_limit`, else
    /// none).
    #[arg(long, value_parser = positive)]
    pub idle_limit: Option<f64>,
    /// Dump the recorded bytes to stdout without timing, like `cat <sid>.raw` (the `.raw` when there, else
    /// the `.cast`'s output).
    #[arg(long)]
    pub raw: bool,
    /// Start at this time: seconds, `MM:SS`, `HH:MM:SS` or `N%` of the session.
    #[arg(long)]
    pub at: Option<String>,
    /// Start paused (space plays).
    #[arg(long)]
    pub paused: bool,
    /// Print the screen at `--at` (default: the end) as text and exit, without playing.
    #[arg(long)]
    pub frame: bool,
    /// Serve the web player instead (lists the recordings of the directory).
    #[arg(long)]
    pub web: bool,
    /// With `--web`: the address to listen on. Loopback by default; any other address needs `--token-file`.
    #[arg(long, default_value = "127.0.0.1:8738")]
    pub address: String,
    /// With `--web`: a file holding the bearer token every request must carry (`Authorization: Bearer T`,
    /// or `/?token=T` once in a browser, which sets a cookie).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// `auditrail export SID|PATH -o FILE.html [--at T]`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A session id (looked up in the recordings directory) or a path to a `.cast` file.
    pub recording: String,
    /// The agent's config file (for the recordings directory).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Recordings directory; default `[recording] dir`, else `<data_dir>/recordings`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(long, short)]
    pub output: PathBuf,
    /// The time the page opens paused at: seconds, `MM:SS`, `HH:MM:SS` or `N%`; default the end.
    #[arg(long)]
    pub at: Option<String>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A time given on the command line, before the duration is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// Seconds.
    Seconds(f64),
    /// Percent of the session.
    Percent(f64),
}

impl At {
    /// Parses `SECONDS`, `MM:SS`, `HH:MM:SS` or `N%`.
    pub fn parse(s: &str) -> Result<At, String> {
        let bad = || format!("`{s}` is not a time (seconds, MM:SS, HH:MM:SS or N%)");
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) {
                return Err(bad());
            }
            return Ok(At::Percent(v));
        }
        let mut total = 0.0;
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        for p in parts {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad());
            }
            total = total * 60.0 + v;
        }
        Ok(At::Seconds(total))
    }

    /// Seconds, given the duration.
    pub fn resolve(self, duration: f64) -> f64 {
        match self {
            At::Seconds(s) => s,
            At::Percent(p) => duration * p / 100.0,
        }
    }
}

/// The recordings directory from the flags and the config file.
pub fn recordings_dir(config: Option<&PathBuf>, dir: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(d) = dir {
        return Ok(d.clone());
    }
    let (data_dir, rec) = match config {
        Some(c) => crate::recording::config::load(c).map_err(|e| e.to_string())?,
        None => (
            PathBuf::from(crate::recording::config::DEFAULT_DATA_DIR),
            crate::recording::config::RecordingConfig::defaults(),
        ),
    };
    Ok(rec.dir_in(&data_dir))
}

/// Prints problems to stderr (after the terminal is back); returns whether there were any.
fn report(problems: &[Problem], total: u64) -> bool {
    let mut seen = std::collections::BTreeMap::new();
    for p in problems {
        seen.entry((p.file.clone(), p.line)).or_insert(p);
    }
    for p in seen.values() {
        eprintln!("auditrail play: {p}");
    }
    let total = total.max(seen.len() as u64);
    if total > seen.len() as u64 {
        eprintln!(
            "auditrail play: … and {} more problems",
            total - seen.len() as u64
        );
    }
    total > 0
}

/// `auditrail play`.
pub fn main(args: PlayArgs) -> ExitCode {
    match run(args) {
        Ok(clean) => {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("auditrail play: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: PlayArgs) -> Result<bool, String> {
    let dir = recordings_dir(args.config.as_ref(), args.dir.as_ref())?;
    if args.web {
        if args.recording.is_some() {
            return Err("--web serves every recording of the directory: give no recording".into());
        }
        return web::serve(&args, &dir).map(|_| true);
    }
    let what = args
        .recording
        .as_deref()
        .ok_or("give a session id or a .cast file to play (or --web)")?;
    let rec = source::find(what, &dir).map_err(|e| e.to_string())?;
    if args.raw {
        let problems = raw::dump(&rec, &mut std::io::stdout().lock())?;
        return Ok(!report(&problems, problems.len() as u64));
    }
    let header = match CastReader::open(&rec.cast) {
        Ok(r) => r.header().clone(),
        Err(e) => return Err(e.to_string()),
    };
    let at = args.at.as_deref().map(At::parse).transpose()?;
    if args.frame {
        let index = SeekIndex::open(&rec.cast, header);
        let t = match at {
            None => f64::INFINITY,
            Some(At::Seconds(s)) => s,
            Some(p) => p.resolve(duration(&index, &rec.cast)),
        };
        let s = index.seek(t).map_err(|e| e.to_string());
        index.finish();
        let s = s?;
        print!("{}", s.vt.screen().contents());
        println!();
        return Ok(!finish_report(&index, s.problems));
    }
    let idle_limit = args.idle_limit.or(header.idle_time_limit);
    let index = SeekIndex::open(&rec.cast, header);
    let start_at = match at {
        None => 0.0,
        Some(At::Seconds(s)) => s,
        Some(p) => p.resolve(duration(&index, &rec.cast)),
    };
    let outcome = terminal::play(
        &index,
        &terminal::Options {
            speed: args.speed,
            idle_limit,
            start_at,
            paused: args.paused,
        },
    );
    // Whether it ended, was quit or failed: the index keeps what it built for the next play.
    index.finish();
    Ok(!finish_report(&index, outcome?.problems))
}

/// The session's duration, for `--at N%`: the index's when it is complete; for v2 the last event's time
/// from the tail of the file (so a percent seek on a first play waits only for the index to reach it, not
/// for all of it); v3's intervals need the whole file, so the index's once built.
fn duration(index: &SeekIndex, cast: &std::path::Path) -> f64 {
    if let Some(d) = index.duration() {
        return d;
    }
    if index.header().version == 2 {
        if let Some(d) = source::last_time_v2(cast) {
            return d;
        }
    }
    index.wait_done()
}

/// Reports the playback's and the index's problems and the index's notes (a stored index that was stale,
/// damaged or could not be written); whether the recording had problems.
fn finish_report(index: &SeekIndex, mut problems: Vec<Problem>) -> bool {
    let (total, notes) = index.with(|p| {
        problems.extend(p.problems.iter().cloned());
        (p.problem_count, p.notes.clone())
    });
    let bad = report(&problems, total);
    for n in notes {
        eprintln!("auditrail play: {n}");
    }
    bad
}

/// `auditrail export`.
pub fn export_main(args: ExportArgs) -> ExitCode {
    match export::run(&args) {
        Ok(problems) => {
            if report(&problems, problems.len() as u64) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("auditrail export: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        assert_eq!(At::parse("90").unwrap(), At::Seconds(90.0));
        assert_eq!(At::parse("1:30").unwrap(), At::Seconds(90.0));
        assert_eq!(At::parse("1:00:01.5").unwrap(), At::Seconds(3601.5));
        assert_eq!(At::parse("90%").unwrap().resolve(200.0), 180.0);
        for bad in ["", "x", "-1", "101%", "1:2:3:4", "inf"] {
            assert!(At::parse(bad).is_err(), "{bad}");
        }
    }
}
