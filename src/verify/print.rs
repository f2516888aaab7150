//! Printing `verify`'s reports and choosing its exit status: the chain report alone, or with the report of
//! the recordings it vouches for (a directory's, or a store's) beside it — as text, or as one JSON object
//! (the chain report's fields, `ok` for both, and the other report under its name).

use std::io::Write;
use std::process::ExitCode;

use auditrail_core::integrity::verify::Report;
use serde::Serialize;

/// A report printed beside the chain report.
pub struct Beside<'a, R: Serialize + std::fmt::Display> {
    /// Its key in the JSON object (`recordings`, `stored`).
    pub name: &'static str,
    /// The report.
    pub report: &'a R,
    /// Its verdict.
    pub ok: bool,
}

/// Prints `events` (and `beside`) to standard output; exit status 0 when everything is ok, 1 when not, 2
/// when the report cannot be written (a closed pipe is not an error: the reader has what it wanted).
pub fn print<R: Serialize + std::fmt::Display>(
    json: bool,
    events: &Report,
    beside: Option<Beside<'_, R>>,
) -> ExitCode {
    let ok = events.ok && beside.as_ref().is_none_or(|b| b.ok);
    let mut out = std::io::stdout().lock();
    let written = match (&beside, json) {
        (None, true) => serde_json::to_writer(&mut out, events)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        (Some(b), true) => serde_json::to_value(events)
            .and_then(|mut v| {
                v["ok"] = ok.into();
                v[b.name] = serde_json::to_value(b.report)?;
                serde_json::to_writer(&mut out, &v)
            })
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        (None, false) => write!(out, "{events}"),
        (Some(b), false) => write!(out, "{events}{}", b.report),
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the report: {e}");
            return ExitCode::from(2);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints the outcome of a check run beside the chain check (`name` as in [`Beside`]); an `Err` is a usage
/// or input error: said on standard error, exit status 2.
pub fn finish<R: Serialize + std::fmt::Display>(
    json: bool,
    name: &'static str,
    outcome: anyhow::Result<(Report, R)>,
    ok: impl Fn(&R) -> bool,
) -> ExitCode {
    match outcome {
        Ok((events, report)) => print(
            json,
            &events,
            Some(Beside {
                name,
                ok: ok(&report),
                report: &report,
            }),
        ),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--recordings` takes its events from NDJSON inputs only.
pub fn ndjson_inputs_only(args: &super::VerifyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.elasticsearch.is_none() && args.kafka.is_none(),
        "--recordings reads its events from NDJSON inputs (files, directories, `-`) only, not yet from --elasticsearch or --kafka: export the events to NDJSON, or name the file sink's output"
    );
    Ok(())
}
