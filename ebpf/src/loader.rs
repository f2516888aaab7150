//! Loads the object into the kernel and attaches each hook at the first attach point that works, in the order
//! tp_btf → raw_tp → tracepoint (kernels differ: some lack BTF-typed tracepoints, the classic ones need
//! tracefs mounted). Everything that can be missing (privilege, BTF, a hook) is checked here and reported as
//! one [`LoadError`] saying what is missing and what to do.
//!
//! RLIMIT_MEMLOCK is left alone: since Linux 5.11 BPF memory is charged to the cgroup, and raising the limit
//! needs CAP_SYS_RESOURCE, which an agent may well not have.

use std::fmt;

use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::records::{self, Config, PREFIX_MAX};

/// Where the kernel's BTF is.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// How a program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// BTF-typed raw tracepoint (`tp_btf/…`).
    TpBtf,
    /// Raw tracepoint (`raw_tp/…`).
    RawTp,
    /// Classic tracepoint (`tracepoint/…`, needs tracefs).
    Tracepoint,
}

impl AttachKind {
    /// The name used in logs and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachKind::TpBtf => "tp_btf",
            AttachKind::RawTp => "raw_tp",
            AttachKind::Tracepoint => "tracepoint",
        }
    }
}

/// One attached program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The hook: `sched_process_exec`, `sys_enter` or `sys_exit`.
    pub hook: &'static str,
    /// The program's name in the object.
    pub program: &'static str,
    /// How it is attached.
    pub kind: AttachKind,
}

impl fmt::Display for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.kind.as_str(), self.hook, self.program)
    }
}

/// What to load.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes of the ring buffer: a power of two, at least one page.
    pub ring_buffer_size: u32,
    /// Every process (true) or session cgroups only.
    pub scope_all: bool,
    /// `records::HOOK_*` to enable.
    pub hooks: u32,
    /// Path prefixes whose opens are not reported (at most [`PREFIX_MAX`] bytes each).
    pub ignore_prefixes: Vec<Vec<u8>>,
    /// Use only this attach point (None: the first that works, in the order tp_btf, raw_tp, tracepoint).
    pub only: Option<AttachKind>,
}

/// Why the programs are not running. Each message says what is missing and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No kernel BTF.
    #[error("the kernel has no BTF ({VMLINUX_BTF}: {0}): host events need a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 5.8 are); the ebpf source is off")]
    NoBtf(String),
    /// Not allowed to use bpf().
    #[error("not allowed to load eBPF programs ({0}): run the agent as root, or give it CAP_BPF and CAP_PERFMON (e.g. AmbientCapabilities= in its systemd unit); the ebpf source is off")]
    Permission(String),
    /// The object or a map could not be created.
    #[error("loading the eBPF object failed: {0}; the ebpf source is off")]
    Load(String),
    /// No attach point worked for a hook.
    #[error("no usable attach point for {hook} (tried {tried}): the kernel lacks this hook or refuses it; the ebpf source is off")]
    NoHook {
        /// The hook.
        hook: &'static str,
        /// Each attach point tried and why it failed.
        tried: String,
    },
}

/// The loaded, attached programs and the maps the agent uses.
pub struct Loaded {
    ebpf: Ebpf,
    /// How each program is attached.
    pub attached: Vec<Attached>,
}

/// The capabilities in the effective set (`CapEff` of /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks privilege the way the kernel does for tracing programs: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
fn check_privilege() -> Result<(), LoadError> {
    let Some(caps) = effective_caps() else {
        return Ok(()); // No /proc: let bpf() answer.
    };
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    Err(LoadError::Permission(format!(
        "the process lacks {} (and CAP_SYS_ADMIN)",
        missing.join(" and ")
    )))
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether an error chain ends in EPERM/EACCES from the kernel.
fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// What can be checked without loading anything: the kernel's BTF and the process's capabilities.
pub fn preflight() -> Result<(), LoadError> {
    if let Err(e) = std::fs::metadata(VMLINUX_BTF) {
        return Err(LoadError::NoBtf(e.to_string()));
    }
    check_privilege()
}

impl Loaded {
    /// Loads `object` (the compiled `events.bpf.o`), fills its configuration and attaches every hook `options`
    /// enables.
    pub fn load(object: &[u8], options: &Options) -> Result<Loaded, LoadError> {
        preflight()?;
        let btf = Btf::from_sys_fs().map_err(|e| LoadError::NoBtf(chain(&e)))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("events", options.ring_buffer_size)
            .load(object)
            .map_err(|e| {
                if is_permission(&e) {
                    LoadError::Permission(chain(&e))
                } else {
                    LoadError::Load(chain(&e))
                }
            })?;
        let map_err = |what: &str, e: &dyn std::error::Error| {
            LoadError::Load(format!("map `{what}`: {}", chain(e)))
        };
        {
            let mut config: Array<&mut MapData, Config> =
                Array::try_from(ebpf.map_mut("config").ok_or_else(|| missing("config"))?)
                    .map_err(|e| map_err("config", &e))?;
            let value = Config {
                scope_all: u32::from(options.scope_all),
                hooks: options.hooks,
            };
            config.set(0, value, 0).map_err(|e| map_err("config", &e))?;
        }
        {
            let mut trie: LpmTrie<&mut MapData, [u8; PREFIX_MAX], u8> = LpmTrie::try_from(
                ebpf.map_mut("ignore_prefixes")
                    .ok_or_else(|| missing("ignore_prefixes"))?,
            )
            .map_err(|e| map_err("ignore_prefixes", &e))?;
            for p in &options.ignore_prefixes {
                let n = p.len().min(PREFIX_MAX);
                let mut data = [0u8; PREFIX_MAX];
                data[..n].copy_from_slice(&p[..n]);
                let key = aya::maps::lpm_trie::Key::new((n * 8) as u32, data);
                trie.insert(&key, 1, 0)
                    .map_err(|e| map_err("ignore_prefixes", &e))?;
            }
        }
        let mut attached = Vec::new();
        if options.hooks & records::HOOK_EXEC != 0 {
            attached.push(attach(
                &mut ebpf,
                &btf,
                "sched_process_exec",
                "sched",
                ["exec_btf", "exec_raw", "exec_tp"],
                options.only,
            )?);
        }
        if options.hooks & (records::HOOK_OPEN | records::HOOK_CONNECT) != 0 {
            // Exit first: an entry whose exit is not attached yet would sit in `pending` until evicted.
            attached.push(attach(
                &mut ebpf,
                &btf,
                "sys_exit",
                "raw_syscalls",
                ["sys_exit_btf", "sys_exit_raw", "sys_exit_tp"],
                options.only,
            )?);
            attached.push(attach(
                &mut ebpf,
                &btf,
                "sys_enter",
                "raw_syscalls",
                ["sys_enter_btf", "sys_enter_raw", "sys_enter_tp"],
                options.only,
            )?);
        }
        Ok(Loaded { ebpf, attached })
    }

    /// The ring buffer the records arrive in (once: the map moves out).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("events")
            .ok_or_else(|| missing("events"))?;
        RingBuf::try_from(map).map_err(|e| LoadError::Load(format!("map `events`: {}", chain(&e))))
    }

    /// The session cgroup ids (once).
    pub fn take_session_cgroups(&mut self) -> Result<HashMap<MapData, u64, u64>, LoadError> {
        let map = self
            .ebpf
            .take_map("session_cgroups")
            .ok_or_else(|| missing("session_cgroups"))?;
        HashMap::try_from(map)
            .map_err(|e| LoadError::Load(format!("map `session_cgroups`: {}", chain(&e))))
    }

    /// The per-CPU counters (once).
    pub fn take_stats(&mut self) -> Result<Stats, LoadError> {
        let map = self
            .ebpf
            .take_map("stats")
            .ok_or_else(|| missing("stats"))?;
        PerCpuArray::try_from(map)
            .map(Stats)
            .map_err(|e| LoadError::Load(format!("map `stats`: {}", chain(&e))))
    }
}

/// The `stats` counters, summed over CPUs.
pub struct Stats(PerCpuArray<MapData, u64>);

impl Stats {
    /// The sum over every CPU of counter `index` (`records::STAT_*`).
    pub fn get(&self, index: u32) -> u64 {
        self.0.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

fn missing(name: &str) -> LoadError {
    LoadError::Load(format!("the object has no map `{name}` (a stale object?)"))
}

/// Loads and attaches the first of `programs` (tp_btf, raw_tp, tracepoint forms of `hook`) that works.
fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    hook: &'static str,
    category: &str,
    programs: [&'static str; 3],
    only: Option<AttachKind>,
) -> Result<Attached, LoadError> {
    let kinds = [AttachKind::TpBtf, AttachKind::RawTp, AttachKind::Tracepoint];
    let mut tried = Vec::new();
    let mut denied = true;
    for (program, kind) in programs.into_iter().zip(kinds) {
        if only.is_some_and(|o| o != kind) {
            continue;
        }
        let Some(p) = ebpf.program_mut(program) else {
            tried.push(format!("{}: not in the object", kind.as_str()));
            continue;
        };
        let result: Result<(), Box<dyn std::error::Error + 'static>> = (|| {
            match kind {
                AttachKind::TpBtf => {
                    let p: &mut BtfTracePoint = p.try_into()?;
                    p.load(hook, btf)?;
                    p.attach()?;
                }
                AttachKind::RawTp => {
                    let p: &mut RawTracePoint = p.try_into()?;
                    p.load()?;
                    p.attach(hook)?;
                }
                AttachKind::Tracepoint => {
                    let p: &mut TracePoint = p.try_into()?;
                    p.load()?;
                    p.attach(category, hook)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let a = Attached {
                    hook,
                    program,
                    kind,
                };
                tracing::info!(
                    hook,
                    program,
                    attach = kind.as_str(),
                    "eBPF program attached"
                );
                return Ok(a);
            }
            Err(e) => {
                denied &= is_permission(e.as_ref());
                let why = chain(e.as_ref());
                tracing::debug!(hook, program, attach = kind.as_str(), error = %why, "attach point not usable; trying the next");
                tried.push(format!("{}: {why}", kind.as_str()));
            }
        }
    }
    if denied {
        return Err(LoadError::Permission(format!(
            "{hook}: {}",
            tried.join("; ")
        )));
    }
    Err(LoadError::NoHook {
        hook,
        tried: tried.join("; "),
    })
}
