//! The terminal player: replays a `.cast` on the user's terminal at recorded speed, with keys: space
//! pause/resume, ←/→ seek 5 s, `+`/`-` speed, `q` quit.
//!
//! Playback streams the file (one event in memory at a time); a seek asks the [`SeekIndex`] for the screen
//! at the new time, redraws it whole and reads on from there. The terminal is put back (cooked mode, cursor
//! shown, attributes and the modes a recording may leave on reset) on every way out: the end, `q`, an
//! error, a termination signal (turned into a poll event, never a kill) and a panic (the recorder's hook).

use std::io::Write;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use super::cast::{Code, Event, Problem};
use super::index::SeekIndex;
use crate::recording::terminal::{RawMode, Signals};

/// How far ←/→ move.
pub const SEEK_STEP: f64 = 5.0;
/// Speed bounds for `+`/`-`.
const MIN_SPEED: f64 = 1.0 / 16.0;
const MAX_SPEED: f64 = 64.0;

/// What shapes a playback.
#[derive(Debug, Clone)]
pub struct Options {
    /// Playback speed (2 = twice as fast).
    pub speed: f64,
    /// Longest pause between events, in recorded seconds.
    pub idle_limit: Option<f64>,
    /// Where to start, in recorded seconds.
    pub start_at: f64,
    /// Start paused.
    pub paused: bool,
}

/// A key the player acts on.
#[derive(Debug, PartialEq)]
enum Key {
    Pause,
    Back,
    Forward,
    Faster,
    Slower,
    Quit,
}

/// Decodes the keys in one read from the terminal.
fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let (key, used) = match rest {
            [0x1b, b'[' | b'O', b'D', ..] => (Some(Key::Back), 3),
            [0x1b, b'[' | b'O', b'C', ..] => (Some(Key::Forward), 3),
            [b' ', ..] => (Some(Key::Pause), 1),
            [b'+' | b'=', ..] => (Some(Key::Faster), 1),
            [b'-' | b'_', ..] => (Some(Key::Slower), 1),
            [b'q' | b'Q' | 3 | 4, ..] => (Some(Key::Quit), 1),
            _ => (None, 1),
        };
        out.extend(key);
        i += used;
    }
    out
}

/// Resets what a recording may have left on: attributes, cursor visibility, the alternate screen, mouse
/// and bracketed-paste modes, application cursor keys.
const RESTORE: &[u8] =
    b"\x1b[0m\x1b[?25h\x1b[?1049l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b>";

/// Restores the terminal's screen modes when dropped (raw mode has its own guard).
struct ScreenGuard;

impl Drop for ScreenGuard {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(RESTORE);
        let _ = out.write_all(b"\r\n");
        let _ = out.flush();
    }
}

/// How the playback ended.
pub struct Outcome {
    /// Problems the playback met (the index has the whole file's).
    pub problems: Vec<Problem>,
    /// The user quit (rather than reaching the end).
    pub quit: bool,
}

/// Plays the recording the index is built on; returns once it ends or the user quits.
pub fn play(index: &SeekIndex, opts: &Options) -> Result<Outcome, String> {
    let signals = Signals::install().map_err(|e| format!("signal handlers: {e}"))?;
    let raw = RawMode::enter();
    let interactive = raw.is_some();
    let _screen = ScreenGuard;
    let mut out = std::io::stdout().lock();
    let mut problems = Vec::new();

    let mut speed = opts.speed;
    let mut paused = opts.paused && interactive;
    let mut seeked = index.seek(opts.start_at).map_err(|e| e.to_string())?;
    problems.append(&mut seeked.problems);
    redraw(&mut out, &seeked.vt)?;
    let mut reader = seeked.reader;
    let mut next: Option<Event> = seeked.next.take();
    // The recorded time shown on the screen now.
    let mut now = opts.start_at;
    let mut quit = false;
    // When the next event is due, in wall time (None while paused or not yet planned).
    let mut due: Option<Instant> = None;

    while let Some(event) = next.as_ref() {
        if !paused && due.is_none() {
            let mut gap = (event.time - now).max(0.0);
            if let Some(limit) = opts.idle_limit {
                gap = gap.min(limit);
            }
            due = Some(Instant::now() + Duration::from_secs_f64(gap / speed));
        }
        let timeout = match (paused, due) {
            (true, _) | (_, None) => None,
            (false, Some(d)) => Some(d.saturating_duration_since(Instant::now())),
        };
        if timeout == Some(Duration::ZERO) {
            // Due: show it and read the next one.
            let event = next.take().expect("checked above");
            if event.code == Code::Output {
                out.write_all(event.data.as_bytes())
                    .map_err(|e| format!("writing to the terminal: {e}"))?;
            }
            now = event.time;
            due = None;
            next = read_next(&mut reader, &mut problems);
            let soon = next
                .as_ref()
                .is_some_and(|n| (n.time - now) / speed < 0.002);
            if !soon {
                out.flush()
                    .map_err(|e| format!("writing to the terminal: {e}"))?;
            }
            continue;
        }
        out.flush()
            .map_err(|e| format!("writing to the terminal: {e}"))?;
        let stdin = rustix::stdio::stdin();
        let sig_fd = signals.fd();
        let mut fds = vec![PollFd::new(&sig_fd, PollFlags::IN)];
        if interactive {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        let ts = timeout.map(|t| rustix::event::Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: t.subsec_nanos() as i64,
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let sig_ready = !fds[0].revents().is_empty();
        let key_ready = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if sig_ready
            && signals
                .take()
                .iter()
                .any(|s| [libc::SIGTERM, libc::SIGHUP, libc::SIGINT].contains(s))
        {
            quit = true;
            break;
        }
        if !key_ready {
            continue;
        }
        let mut buf = [0u8; 64];
        let n = match rustix::io::read(stdin, &mut buf) {
            Ok(0) => {
                // The terminal went away.
                quit = true;
                break;
            }
            Ok(n) => n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => return Err(format!("reading keys: {e}")),
        };
        let mut target = None;
        for key in keys(&buf[..n]) {
            match key {
                Key::Quit => quit = true,
                Key::Pause => {
                    paused = !paused;
                    due = None;
                }
                Key::Faster => {
                    speed = (speed * 2.0).min(MAX_SPEED);
                    due = None;
                }
                Key::Slower => {
                    speed = (speed / 2.0).max(MIN_SPEED);
                    due = None;
                }
                Key::Back => target = Some(target.unwrap_or(now) - SEEK_STEP),
                Key::Forward => target = Some(target.unwrap_or(now) + SEEK_STEP),
            }
        }
        if quit {
            break;
        }
        if let Some(t) = target {
            let t = t.max(0.0);
            let mut s = index.seek(t).map_err(|e| e.to_string())?;
            problems.append(&mut s.problems);
            redraw(&mut out, &s.vt)?;
            reader = s.reader;
            next = s.next.take();
            now = t;
            due = None;
        }
    }
    out.flush().ok();
    drop(out);
    drop(raw);
    Ok(Outcome { problems, quit })
}

fn read_next(
    reader: &mut super::cast::CastReader<std::io::BufReader<std::fs::File>>,
    problems: &mut Vec<Problem>,
) -> Option<Event> {
    loop {
        match reader.next_event()? {
            Ok(e) => return Some(e),
            Err(p) => {
                if problems.len() < super::index::MAX_PROBLEMS {
                    problems.push(p);
                }
            }
        }
    }
}

/// Clears the terminal and draws the emulator's screen on it.
fn redraw(out: &mut impl Write, vt: &vt100::Parser) -> Result<(), String> {
    let mut bytes = RESTORE.to_vec();
    bytes.extend_from_slice(b"\x1b[H\x1b[2J");
    bytes.extend_from_slice(&vt.screen().state_formatted());
    out.write_all(&bytes)
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing to the terminal: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_arrows_in_both_cursor_modes() {
        assert_eq!(
            keys(b" \x1b[D\x1bOC+-qx"),
            vec![
                Key::Pause,
                Key::Back,
                Key::Forward,
                Key::Faster,
                Key::Slower,
                Key::Quit
            ]
        );
        assert_eq!(keys(b"\x03"), vec![Key::Quit]);
    }
}
