//! Shutdown signalling shared by every task: one [`ShutdownTrigger`], many cloned [`Shutdown`] handles.
//!
//! A task selects on [`Shutdown::wait`] next to its work and finishes what it holds when it fires.

use tokio::sync::watch;

/// Fires the shutdown of everything that holds a [`Shutdown`] made from it.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first handle.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Signals shutdown to every handle.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A new handle on this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether shutdown has been signalled.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown is signalled (at once if it already was, or if the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}
