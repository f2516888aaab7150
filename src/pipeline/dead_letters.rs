//! Reports of dead-letter records lost by rotation: every second, each component's unreported loss becomes an
//! `auditrail.dead_letter_lost` event sent where that component's events go, so the loss lands in the audit
//! trail that is read, not only in a metric and a log line on the host.
//!
//! A sink's loss goes to that sink's buffer; a source's loss to the buffers of every sink that reads the source.
//! The reports bypass the integrity chain, like `auditrail.dropped` (they are the pipeline's own, per sink). A
//! buffer without room now keeps its count for the next second, so each sink is told the exact total once. At
//! shutdown one last round is made and the buffers are let go, so they can close; a loss during the final drain
//! is counted and logged only.

use std::sync::Arc;
use std::time::Duration;

use auditrail_core::buffer::BufferSender;
use auditrail_core::dead_letter::DeadLetter;
use auditrail_core::shutdown::Shutdown;

/// How often losses are looked for.
const INTERVAL: Duration = Duration::from_secs(1);

/// One dead-letter file and the buffers its loss reports go to.
pub(super) struct Watched {
    dead_letter: Arc<DeadLetter>,
    /// Each buffer with the count it has not been told yet.
    to: Vec<(BufferSender, u64)>,
}

impl Watched {
    /// Reports of `dead_letter` go to every buffer of `to`.
    pub(super) fn new(dead_letter: Arc<DeadLetter>, to: Vec<BufferSender>) -> Watched {
        Watched {
            dead_letter,
            to: to.into_iter().map(|s| (s, 0)).collect(),
        }
    }

    fn report(&mut self) {
        let new = self.dead_letter.take_unreported();
        for (sender, pending) in &mut self.to {
            *pending += new;
            if *pending > 0
                && sender
                    .try_send(vec![self.dead_letter.loss_event(*pending)])
                    .is_ok()
            {
                *pending = 0;
            }
        }
    }
}

/// Runs until `shutdown`, reporting every [`INTERVAL`].
pub(super) async fn run(mut watched: Vec<Watched>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => watched.iter_mut().for_each(Watched::report),
        }
    }
    watched.iter_mut().for_each(Watched::report);
    for w in &watched {
        let unsent: u64 = w.to.iter().map(|(_, n)| *n).max().unwrap_or(0);
        if unsent > 0 {
            tracing::warn!(
                path = %w.dead_letter.path().display(),
                records = unsent,
                "shutting down with a dead-letter loss not yet reported to every sink (it is counted in auditrail_dead_letter_rotated_lost_total)"
            );
        }
    }
}
