//! Tamper evidence: the per-stream hash chain, forward-secure seals, and the keys that make them.
//!
//! The agent gives each event of a stream (`node_id/source`) a `seq`, the previous event's hash and its own
//! hash before fan-out, so every sink stores the same chain ([`chain`]); what is hashed is the event's RFC 8785
//! canonical form ([`canonical`]), so the chain verifies on events as any store gives them back. Seals
//! ([`seal`]) sign the chain with an epoch key that evolves and forgets its past ([`keys`]).

pub mod canonical;
pub mod chain;
pub mod keys;
pub mod resume;
pub mod ring;
pub mod seal;
pub mod state;
pub mod stream;
pub mod verify;

#[cfg(test)]
mod model_tests;

/// The member every chained event carries, appended last.
pub const FIELD: &str = "auditrail.integrity";
