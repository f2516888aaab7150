//! `auditrail verify`: reads chained events back from where sinks put them (NDJSON files and directories,
//! standard input, an Elasticsearch or OpenSearch index, a Kafka topic) and reports per stream what is intact
//! and what was tampered with. The checks are [`auditrail_core::integrity::verify`]'s; this module reads inputs
//! and prints. Inputs may be combined: a stream split across stores verifies as one.
//!
//! Exit status: 0 when everything is intact, 1 when anything was tampered with (or a line is unreadable), 2 on
//! a usage or input error (a missing file, an unreadable key, an unreachable server). Seqs missing within a
//! crash window an honoured `auditrail.integrity_crash` announcement declares are a crash, not tampering:
//! they are listed per stream (`crash_windows` in `--json`) and leave the status 0.

pub mod credentials;
pub mod elasticsearch;
pub mod kafka;
mod print;
pub mod recordings;
pub mod stored;
mod walk;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use auditrail_core::integrity::keys;
use auditrail_core::integrity::verify::{Report, Verifier};

/// How much of an input is read at once (whole lines of it are examined together, on every core).
const CHUNK: usize = 8 << 20;
/// A line longer than this is counted as unreadable and skipped.
pub const MAX_LINE: usize = 64 << 20;
/// Environment variable holding the Elasticsearch API key.
pub const API_KEY_ENV: &str = credentials::API_KEY_ENV;
/// Environment variable holding the password of the user named in the `--elasticsearch` URL.
pub const PASSWORD_ENV: &str = credentials::PASSWORD_ENV;

/// `auditrail verify`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The auditors' public key file (`auditrail.pub`, made by `auditrail keygen`).
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also read the events from this Elasticsearch or OpenSearch (`http[s]://[user@]host:port`; the
    /// user's password comes from $AUDITRAIL_ES_PASSWORD or --es-password-file, never the URL).
    #[arg(long, value_name = "URL", requires = "index")]
    pub elasticsearch: Option<String>,
    /// The index, alias or pattern to read with --elasticsearch.
    #[arg(long, value_name = "INDEX", requires = "elasticsearch")]
    pub index: Option<String>,
    /// Refused: a key on the command line is shown by `ps`. Kept only to say what to use instead.
    #[arg(long, value_name = "KEY", hide = true)]
    pub es_api_key: Option<String>,
    /// A file (mode 0600) holding the API key for --elasticsearch (sent as `Authorization: ApiKey …`);
    /// or set $AUDITRAIL_ES_API_KEY.
    #[arg(long, value_name = "FILE", requires = "elasticsearch")]
    pub es_api_key_file: Option<PathBuf>,
    /// A file (mode 0600) holding the password of the user named in the --elasticsearch URL; or set
    /// $AUDITRAIL_ES_PASSWORD.
    #[arg(long, value_name = "FILE", requires = "elasticsearch")]
    pub es_password_file: Option<PathBuf>,
    /// Also read the events from this Kafka cluster (`host:port[,host:port…]`, the bootstrap brokers).
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The topic to read with --kafka: every partition, from its beginning to where it ended when verify
    /// started. Nothing is committed.
    #[arg(long, value_name = "T", requires = "kafka")]
    pub topic: Option<String>,
    /// Also check the session recordings in this directory (`<sid>.raw`, `.cast`, `.done`) against the
    /// digests in the verified events read from the inputs (see `recordings`); or, given a store URL
    /// (`s3://bucket/prefix`, also `gs://`, `az://`, `file://`), the objects the uploader stored there
    /// against its verified `session.upload` events (see `stored`; the store is reached through the
    /// standard environment: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …).
    #[arg(long, value_name = "DIR|URL")]
    pub recordings: Option<PathBuf>,
    /// NDJSON files, or directories whose files (all of them, recursively, but hidden ones) are read;
    /// `-` for standard input.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

/// Runs `auditrail verify` and prints the report; returns the exit status.
pub fn main(args: VerifyArgs) -> ExitCode {
    if args.recordings.is_some() {
        return recordings::main(args);
    }
    let report = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    print::print::<Report>(args.json, &report, None)
}

/// Verifies every input of `args`; an `Err` is a usage or input error, not a verdict.
pub fn run(args: &VerifyArgs) -> anyhow::Result<Report> {
    run_tapped(args, None)
}

/// [`run`], also handing every NDJSON line read to `tap` (the recordings check's events).
pub fn run_tapped(
    args: &VerifyArgs,
    mut tap: Option<&mut recordings::Collector>,
) -> anyhow::Result<Report> {
    // Refused before anything is read, so a secret on the command line is never used.
    let creds = credentials::Credentials::gather(
        args.es_api_key.is_some(),
        args.es_api_key_file.as_deref(),
        args.es_password_file.as_deref(),
        &|v| std::env::var(v).ok(),
    )?;
    if args.inputs.is_empty() && args.elasticsearch.is_none() && args.kafka.is_none() {
        anyhow::bail!(
            "nothing to verify: name NDJSON files or directories, `-` for standard input, --elasticsearch URL --index INDEX, or --kafka BROKERS --topic T"
        );
    }
    let root = keys::load_public(&args.key).context("cannot use the --key file")?;
    let mut verifier = Verifier::new(root);
    let mut stdin_used = false;
    for input in &args.inputs {
        if input.as_os_str() == "-" {
            anyhow::ensure!(!stdin_used, "`-` (standard input) is named twice");
            stdin_used = true;
            feed_reader(&mut verifier, std::io::stdin(), "-", tap.as_deref_mut())
                .context("cannot read standard input")?;
        } else {
            feed_path(&mut verifier, input, tap.as_deref_mut())?;
        }
    }
    if let (Some(url), Some(index)) = (&args.elasticsearch, &args.index) {
        elasticsearch::feed(&mut verifier, url, index, &creds)?;
    }
    if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic) {
        kafka::feed(&mut verifier, brokers, topic)?;
    }
    Ok(verifier.finish())
}

/// Feeds a file, or every file under a directory (sorted; hidden names skipped; see [`walk`] for links).
pub fn feed_path(
    verifier: &mut Verifier,
    path: &Path,
    mut tap: Option<&mut recordings::Collector>,
) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if !meta.is_dir() {
        let file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        return feed_reader(verifier, file, &path.display().to_string(), tap)
            .with_context(|| format!("{}: cannot read", path.display()));
    }
    let walked = walk::files(path)?;
    for skipped in &walked.skipped {
        eprintln!("note: {skipped}");
    }
    let files = walked.files;
    anyhow::ensure!(
        !files.is_empty(),
        "{}: the directory holds no files to verify",
        path.display()
    );
    for f in files {
        let file =
            std::fs::File::open(&f).with_context(|| format!("{}: cannot open", f.display()))?;
        feed_reader(verifier, file, &f.display().to_string(), tap.as_deref_mut())
            .with_context(|| format!("{}: cannot read", f.display()))?;
    }
    Ok(())
}

/// Feeds NDJSON from `reader`, labelled `label` in messages. Reading runs on its own thread, one chunk ahead
/// of the examination; the two buffers go back and forth, so nothing is allocated per chunk. `tap`, when
/// given, sees the same lines.
pub fn feed_reader(
    verifier: &mut Verifier,
    reader: impl Read + Send,
    label: &str,
    mut tap: Option<&mut recordings::Collector>,
) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Piece>(1);
    let (give_back, take_back) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reading = scope.spawn(move || read_pieces(reader, &tx, &take_back));
        let mut line = 1u64;
        for piece in rx {
            match piece {
                Piece::Lines(buf, len) => {
                    if let Some(t) = tap.as_deref_mut() {
                        t.scan(&buf[..len], label, line);
                    }
                    line += verifier.feed_ndjson(&buf[..len], label, line);
                    let _ = give_back.send(buf);
                }
                Piece::TooLong(len) => {
                    verifier.note_unreadable(
                        label,
                        line,
                        &format!("a line of {len} bytes or more (the most is {MAX_LINE}); skipped"),
                    );
                    line += 1;
                }
            }
        }
        reading.join().expect("the reading thread does not panic")
    })
}

enum Piece {
    /// A buffer whose first bytes are whole lines (the last one may lack its `\n` at the end of the input).
    Lines(Vec<u8>, usize),
    /// A line too long to examine, skipped; at least this long.
    TooLong(usize),
}

fn read_pieces(
    mut reader: impl Read,
    tx: &std::sync::mpsc::SyncSender<Piece>,
    returned: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    // A buffer back from the examination, or a new one; its old contents are overwritten, not cleared.
    let fresh = |at_least: usize| -> Vec<u8> {
        let mut b = returned.try_recv().unwrap_or_default();
        if b.len() < at_least.max(CHUNK) {
            b.resize(at_least.max(CHUNK), 0);
        }
        b
    };
    let mut buf = fresh(0);
    let mut filled = 0;
    // Skipping the rest of an over-long line.
    let mut skipping = false;
    loop {
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if filled > 0 && !skipping {
                let _ = tx.send(Piece::Lines(buf, filled));
            }
            return Ok(());
        }
        filled += n;
        if skipping {
            match memchr::memchr(b'\n', &buf[..filled]) {
                None => {
                    filled = 0;
                    continue;
                }
                Some(p) => {
                    buf.copy_within(p + 1..filled, 0);
                    filled -= p + 1;
                    skipping = false;
                }
            }
        }
        if filled < buf.len() {
            continue;
        }
        match memchr::memrchr(b'\n', &buf[..filled]) {
            Some(p) => {
                let rest = filled - p - 1;
                let mut next = fresh(rest + CHUNK);
                next[..rest].copy_from_slice(&buf[p + 1..filled]);
                if tx.send(Piece::Lines(buf, p + 1)).is_err() {
                    return Ok(());
                }
                buf = next;
                filled = rest;
            }
            None if filled >= MAX_LINE => {
                if tx.send(Piece::TooLong(filled)).is_err() {
                    return Ok(());
                }
                filled = 0;
                skipping = true;
            }
            None => buf.resize((buf.len() * 2).min(MAX_LINE), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn pieces_hold_whole_lines_and_long_lines_are_skipped() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n{{\"c\":3}}");
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let t = std::thread::spawn(move || {
            let input = input;
            let (_keep, returned) = std::sync::mpsc::channel();
            read_pieces(Trickle(input.as_bytes(), 1 << 20), &tx, &returned).unwrap();
        });
        let mut lines = Vec::new();
        let mut too_long = 0;
        for p in rx {
            match p {
                Piece::Lines(text, len) => lines.extend(
                    String::from_utf8(text[..len].to_vec())
                        .unwrap()
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                ),
                Piece::TooLong(n) => {
                    assert!(n >= MAX_LINE);
                    too_long += 1;
                }
            }
        }
        t.join().unwrap();
        assert_eq!(too_long, 1);
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }
}
