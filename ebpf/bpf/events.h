/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The records the host-event programs write into the ring buffer, and the keys and values of the maps the
 * agent fills. One definition for both sides: ebpf/src/records.rs holds the #[repr(C)] twins, and a test
 * there checks that every size and offset below agrees with them (the offsets are exported by the object's
 * BTF, which the test reads). Fixed sizes: the ring buffer reserves a constant size per record.
 */
#ifndef AUDITRAIL_EVENTS_H
#define AUDITRAIL_EVENTS_H

/* Bounds an attacker controls the input of: longer values are cut and flagged, never silently shortened. */
#define AR_PATH_MAX 256      /* bytes of a path, NUL included */
#define AR_ARGV_MAX 1024     /* bytes of argv (NUL-separated, as in /proc/PID/cmdline) */
#define AR_COMM_MAX 16       /* TASK_COMM_LEN */
#define AR_PREFIX_MAX 64     /* bytes of an ignored path prefix */
#define AR_CGROUP_DEPTH 16   /* cgroup ancestors looked at for a session cgroup */

/* ar_header.kind */
#define AR_KIND_EXEC 1
#define AR_KIND_OPEN 2
#define AR_KIND_CONNECT 3

/* ar_header.flags */
#define AR_F_PATH_TRUNCATED 1
#define AR_F_ARGV_TRUNCATED 2

/* ar_config.hooks */
#define AR_HOOK_EXEC 1
#define AR_HOOK_OPEN 2
#define AR_HOOK_CONNECT 4

/* Indices of the per-CPU `stats` array. seen = what passed the filters; lost = what of that did not reach the
 * ring buffer. For every kind, seen == delivered + lost. */
#define AR_STAT_SEEN_EXEC 0
#define AR_STAT_SEEN_OPEN 1
#define AR_STAT_SEEN_CONNECT 2
#define AR_STAT_LOST_EXEC 3
#define AR_STAT_LOST_OPEN 4
#define AR_STAT_LOST_CONNECT 5
#define AR_STAT_IGNORED_OPEN 6
#define AR_STAT_COUNT 8

/* ar_open.syscall */
#define AR_SYS_OPEN 0
#define AR_SYS_OPENAT 1
#define AR_SYS_OPENAT2 2

/* What every record starts with. */
struct ar_header {
	__u32 kind;
	__u32 flags;
	__u64 ktime_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;         /* the task's own cgroup v2 id */
	__u64 session_cgroup_id; /* the session cgroup it is in (itself or an ancestor), 0 when none */
	__u32 pid;               /* thread group id */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 reserved;
	char comm[AR_COMM_MAX];
};

/* A program started (sched_process_exec). */
struct ar_exec {
	struct ar_header h;
	__s32 return_code;
	__u32 argv_len; /* bytes of argv used */
	__u32 argc;     /* as the kernel counted them, also when argv was cut */
	__u32 reserved;
	char path[AR_PATH_MAX];
	char argv[AR_ARGV_MAX];
};

/* open / openat / openat2 returned. */
struct ar_open {
	struct ar_header h;
	__s64 return_code;
	__s32 dirfd;
	__u32 flags;
	__u32 mode;
	__u32 syscall;
	char path[AR_PATH_MAX];
};

/* connect returned, for AF_INET and AF_INET6. Addresses in network order, ports in host order. */
struct ar_connect {
	struct ar_header h;
	__s64 return_code;
	__u16 family;
	__u16 dst_port;
	__u16 src_port;
	__u16 reserved;
	__u32 fd;
	__u32 reserved2;
	__u8 src_addr[16];
	__u8 dst_addr[16];
};

/* The single entry of the `config` array. */
struct ar_config {
	__u32 scope_all; /* 1: every process; 0: only session cgroups and their descendants */
	__u32 hooks;     /* AR_HOOK_* enabled */
};

/* Key of the `ignore_prefixes` LPM trie: prefixlen in bits. */
struct ar_prefix_key {
	__u32 prefixlen;
	__u8 data[AR_PREFIX_MAX];
};

#endif
