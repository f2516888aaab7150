//! The `#[repr(C)]` twins of `bpf/events.h`: the records the programs write into the ring buffer and the
//! keys and values of the maps the agent fills. `tests/layout.rs` checks every size and field offset here
//! against the compiled object's BTF, so the two definitions cannot drift apart.

/// Bytes of a path, NUL included (`AR_PATH_MAX`).
pub const PATH_MAX: usize = 256;
/// Bytes of argv, NUL-separated (`AR_ARGV_MAX`).
pub const ARGV_MAX: usize = 1024;
/// Bytes of a task's comm (`AR_COMM_MAX`).
pub const COMM_MAX: usize = 16;
/// Bytes of an ignored path prefix (`AR_PREFIX_MAX`).
pub const PREFIX_MAX: usize = 64;
/// Cgroup ancestors the programs look at for a session cgroup (`AR_CGROUP_DEPTH`).
pub const CGROUP_DEPTH: usize = 16;

/// `ar_header.kind` of an exec record.
pub const KIND_EXEC: u32 = 1;
/// `ar_header.kind` of an open record.
pub const KIND_OPEN: u32 = 2;
/// `ar_header.kind` of a connect record.
pub const KIND_CONNECT: u32 = 3;

/// `ar_header.flags`: the path was cut at [`PATH_MAX`].
pub const F_PATH_TRUNCATED: u32 = 1;
/// `ar_header.flags`: argv was cut at [`ARGV_MAX`].
pub const F_ARGV_TRUNCATED: u32 = 2;

/// `ar_config.hooks`: exec.
pub const HOOK_EXEC: u32 = 1;
/// `ar_config.hooks`: open, openat, openat2.
pub const HOOK_OPEN: u32 = 2;
/// `ar_config.hooks`: connect.
pub const HOOK_CONNECT: u32 = 4;

/// Index in `stats`: execs that passed the filters.
pub const STAT_SEEN_EXEC: u32 = 0;
/// Index in `stats`: opens that passed the filters.
pub const STAT_SEEN_OPEN: u32 = 1;
/// Index in `stats`: connects that passed the filters.
pub const STAT_SEEN_CONNECT: u32 = 2;
/// Index in `stats`: execs that found no room in the ring buffer.
pub const STAT_LOST_EXEC: u32 = 3;
/// Index in `stats`: opens that found no room.
pub const STAT_LOST_OPEN: u32 = 4;
/// Index in `stats`: connects that found no room.
pub const STAT_LOST_CONNECT: u32 = 5;
/// Index in `stats`: opens under an ignored prefix (filtered, not lost).
pub const STAT_IGNORED_OPEN: u32 = 6;
/// Entries of `stats`.
pub const STAT_COUNT: u32 = 8;

/// `ar_open.syscall`: open(2).
pub const SYS_OPEN: u32 = 0;
/// `ar_open.syscall`: openat(2).
pub const SYS_OPENAT: u32 = 1;
/// `ar_open.syscall`: openat2(2).
pub const SYS_OPENAT2: u32 = 2;

/// What every record starts with (`struct ar_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// `KIND_*`.
    pub kind: u32,
    /// `F_*`.
    pub flags: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
    /// The task's own cgroup v2 id.
    pub cgroup_id: u64,
    /// The session cgroup it is in (itself or an ancestor), 0 when none.
    pub session_cgroup_id: u64,
    /// Thread group id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's thread group id.
    pub ppid: u32,
    /// Real uid, as `bpf_get_current_uid_gid` gives it.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Zero.
    pub reserved: u32,
    /// The task's comm, NUL-padded.
    pub comm: [u8; COMM_MAX],
}

/// `struct ar_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Exec {
    /// Common fields.
    pub h: Header,
    /// 0: sched_process_exec fires only for execs that succeeded.
    pub return_code: i32,
    /// Bytes of `argv` used.
    pub argv_len: u32,
    /// The kernel's argc (0 when the attach point does not give it).
    pub argc: u32,
    /// Zero.
    pub reserved: u32,
    /// The program path as exec'd, NUL-terminated.
    pub path: [u8; PATH_MAX],
    /// argv, NUL-separated.
    pub argv: [u8; ARGV_MAX],
}

/// `struct ar_open`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Open {
    /// Common fields.
    pub h: Header,
    /// The fd, or -errno.
    pub return_code: i64,
    /// The directory fd (-100 = AT_FDCWD).
    pub dirfd: i32,
    /// O_* flags.
    pub flags: u32,
    /// Mode (with O_CREAT).
    pub mode: u32,
    /// `SYS_*`.
    pub syscall: u32,
    /// The path as given, NUL-terminated.
    pub path: [u8; PATH_MAX],
}

/// `struct ar_connect`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Connect {
    /// Common fields.
    pub h: Header,
    /// 0, or -errno.
    pub return_code: i64,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Host order.
    pub dst_port: u16,
    /// Host order; 0 when the socket has none.
    pub src_port: u16,
    /// Zero.
    pub reserved: u16,
    /// The socket's fd.
    pub fd: u32,
    /// Zero.
    pub reserved2: u32,
    /// Network order; IPv4 in the first 4 bytes.
    pub src_addr: [u8; 16],
    /// Network order; IPv4 in the first 4 bytes.
    pub dst_addr: [u8; 16],
}

/// `struct ar_config`: the single entry of the `config` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// 1: every process; 0: session cgroups and their descendants only.
    pub scope_all: u32,
    /// `HOOK_*` enabled.
    pub hooks: u32,
}

/// `struct ar_prefix_key`: a key of the `ignore_prefixes` LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PrefixKey {
    /// Length of the prefix in bits.
    pub prefixlen: u32,
    /// The prefix's bytes.
    pub data: [u8; PREFIX_MAX],
}

// SAFETY: plain integers and byte arrays, no padding the kernel could leave uninitialised in a way Rust cares
// about (the maps copy bytes).
unsafe impl aya::Pod for Config {}

/// A record read from the ring buffer.
#[derive(Clone, Debug)]
pub enum Record {
    /// A program started.
    Exec(Box<Exec>),
    /// A file was opened (or not).
    Open(Box<Open>),
    /// A connection was made (or refused).
    Connect(Box<Connect>),
}

/// Why ring buffer bytes are not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the kind needs.
    #[error("ring buffer record of {len} bytes is shorter than its kind {kind} needs ({need})")]
    Short {
        /// The kind read.
        kind: u32,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An unknown kind.
    #[error("ring buffer record of unknown kind {0}")]
    Kind(u32),
}

fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<Box<T>, RecordError> {
    let need = std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(RecordError::Short {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: T is one of the repr(C) records above, made of integers and byte arrays only (every bit pattern
    // is valid), and `bytes` holds at least size_of::<T>() bytes; read_unaligned copes with any alignment.
    Ok(Box::new(unsafe {
        std::ptr::read_unaligned(bytes.as_ptr().cast::<T>())
    }))
}

impl Record {
    /// Decodes one ring buffer item.
    pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() < 4 {
            return Err(RecordError::Short {
                kind: 0,
                len: bytes.len(),
                need: 4,
            });
        }
        let kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        match kind {
            KIND_EXEC => read::<Exec>(bytes, kind).map(Record::Exec),
            KIND_OPEN => read::<Open>(bytes, kind).map(Record::Open),
            KIND_CONNECT => read::<Connect>(bytes, kind).map(Record::Connect),
            k => Err(RecordError::Kind(k)),
        }
    }
}

/// The bytes of a NUL-terminated buffer up to its first NUL.
pub fn c_bytes(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_refuses_short_or_unknown() {
        let mut bytes = vec![0u8; std::mem::size_of::<Exec>()];
        bytes[..4].copy_from_slice(&KIND_EXEC.to_ne_bytes());
        assert!(matches!(Record::parse(&bytes), Ok(Record::Exec(_))));
        assert_eq!(
            Record::parse(&bytes[..100]).unwrap_err(),
            RecordError::Short {
                kind: KIND_EXEC,
                len: 100,
                need: bytes.len()
            }
        );
        bytes[..4].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(Record::parse(&bytes).unwrap_err(), RecordError::Kind(9));
        assert_eq!(c_bytes(b"ab\0cd"), b"ab");
        assert_eq!(c_bytes(b"abc"), b"abc");
    }
}
