//! `auditrail-ebpf`: the host-event programs (C, CO-RE, in `bpf/`), the layouts of the records they write
//! ([`records`], twins of `bpf/events.h`), and their loader ([`loader`], aya).
//!
//! The object is compiled by `build.rs` with clang when clang is there; otherwise the committed
//! `objects/events.bpf.o` is used, so building the agent never needs clang. `tests/objects.rs` fails when the
//! committed object is stale.

pub use aya;

pub mod loader;
pub mod records;

/// The compiled `events.bpf.o` (see the crate documentation for where it comes from), 8-aligned as the ELF
/// parser wants it.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/events.bpf.o"));

/// How [`OBJECT`] was made: `clang <version>` when built now, `committed` when taken from `objects/`.
pub const OBJECT_ORIGIN: &str = env!("AUDITRAIL_EBPF_OBJECT_ORIGIN");
