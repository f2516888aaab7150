//! The live-session registry and session cgroups (helper C's component; this branch carries only the
//! recorder-side placeholder of [`client`], which the merge replaces).

pub mod client;
