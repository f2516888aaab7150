/* SPDX-License-Identifier: GPL-2.0 */
/*
 * auditrail's host-event programs: exec, file open and network connect, written as records (events.h) into
 * one ring buffer, filtered in the kernel to the session cgroups (and their descendants) unless the scope is
 * "all", with paths under the ignored prefixes dropped before they cost a record.
 *
 * Each hook comes in three attach forms, in the order the loader tries them: tp_btf (BTF-typed raw
 * tracepoint), raw_tp, then the classic tracepoint (which needs tracefs). All forms share one body; only the
 * way they read their arguments differs. Syscalls are caught at raw_syscalls sys_enter / sys_exit: the entry
 * stashes what the arguments point to (path, sockaddr) under the thread's id, the exit adds the return code
 * and writes the record, so a record says what the call returned.
 *
 * Nothing is lost silently: every event that passed the filters is counted as seen, and every one that found
 * no room in the ring buffer (or no room to be stashed) as lost, per CPU (`stats`): seen = delivered + lost.
 */
#include "kernel.h"
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* set by the loader from `ring_buffer_size` */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ar_config);
} config SEC(".maps");

/* Session cgroup ids (filled by the agent from the sessions it sees start). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, __u64);
} session_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ar_prefix_key);
	__type(value, __u8);
} ignore_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AR_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* A syscall between entry and exit. */
struct ar_pending {
	union {
		struct ar_header h;
		struct ar_open open;
		struct ar_connect conn;
	};
};

/* LRU: an entry whose exit never came (a thread killed mid-call) is evicted instead of filling the map. */
struct {
	__uint(type, 9 /* BPF_MAP_TYPE_LRU_HASH */);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ar_pending);
} pending SEC(".maps");

/* Per-CPU scratch: records are larger than the 512-byte stack. The exec record is in the union only so that
 * its type is in the object's BTF, where the layout test reads it. */
struct ar_scratch {
	union {
		struct ar_pending pending;
		struct ar_exec exec;
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ar_scratch);
} scratch SEC(".maps");

/* Keeps the compiler from folding a bound check the verifier must see. */
#define barrier_var(v) asm volatile("" : "+r"(v))

static __always_inline void stat_inc(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &index);
	if (v)
		*v += 1;
}

static __always_inline struct ar_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

/* Whether the current task is to be reported; sets its cgroup id and the session cgroup it is in (0: none). */
static __always_inline int in_scope(struct ar_config *cfg, __u64 *cgroup_id, __u64 *session)
{
	__u64 id = bpf_get_current_cgroup_id();
	*cgroup_id = id;
	*session = 0;
	if (bpf_map_lookup_elem(&session_cgroups, &id)) {
		*session = id;
		return 1;
	}
#pragma unroll
	for (int level = 1; level <= AR_CGROUP_DEPTH; level++) {
		__u64 a = bpf_get_current_ancestor_cgroup_id(level);
		if (a == 0 || a == id)
			break;
		if (bpf_map_lookup_elem(&session_cgroups, &a)) {
			*session = a;
			return 1;
		}
	}
	return cfg->scope_all;
}

static __always_inline void fill_header(struct ar_header *h, __u32 kind, __u64 cgroup_id, __u64 session)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent = 0;
	int ppid = 0;
	KREAD(parent, task->real_parent);
	if (parent)
		KREAD(ppid, parent->tgid);
	h->kind = kind;
	h->flags = 0;
	h->ktime_ns = bpf_ktime_get_ns();
	h->cgroup_id = cgroup_id;
	h->session_cgroup_id = session;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->ppid = ppid;
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->reserved = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* A string read with bpf_probe_read_*_str of n bytes (NUL included) filled the whole buffer: it was cut unless
 * its last byte was the source's end. */
static __always_inline int cut_user(long n, const char *src)
{
	char c = 0;
	if (n < AR_PATH_MAX)
		return 0;
	bpf_probe_read_user(&c, 1, src + AR_PATH_MAX - 1);
	return c != 0;
}

static __always_inline int cut_kernel(long n, const char *src)
{
	char c = 0;
	if (n < AR_PATH_MAX)
		return 0;
	bpf_probe_read_kernel(&c, 1, src + AR_PATH_MAX - 1);
	return c != 0;
}

/*
 * How to submit a record: wake the reader only once an eighth of the ring is waiting. The agent drains the
 * ring every few milliseconds anyway; a wakeup per record costs the traced task an irq_work and the agent a
 * context switch per event, which on a busy host is most of the cost of tracing.
 */
static __always_inline __u64 wakeup_flag(void)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	return avail >= size / 8 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* ---- exec ---- */

static __always_inline int on_exec(const char *filename, int argc)
{
	struct ar_config *cfg = get_config();
	__u64 cgroup_id, session;
	if (!cfg || !(cfg->hooks & AR_HOOK_EXEC) || !in_scope(cfg, &cgroup_id, &session))
		return 0;
	stat_inc(AR_STAT_SEEN_EXEC);
	struct ar_exec *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(AR_STAT_LOST_EXEC);
		return 0;
	}
	fill_header(&e->h, AR_KIND_EXEC, cgroup_id, session);
	e->return_code = 0;
	e->argc = argc;
	e->reserved = 0;
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename);
	if (n < 0)
		e->path[0] = 0;
	else if (cut_kernel(n, filename))
		e->h.flags |= AR_F_PATH_TRUNCATED;

	/* The new program's argv, as /proc/PID/cmdline shows it: the mm is the new one by now. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mm_struct *mm = 0;
	unsigned long start = 0, end = 0;
	KREAD(mm, task->mm);
	if (mm) {
		KREAD(start, mm->arg_start);
		KREAD(end, mm->arg_end);
	}
	__u64 len = end > start ? end - start : 0;
	if (len > AR_ARGV_MAX) {
		len = AR_ARGV_MAX;
		e->h.flags |= AR_F_ARGV_TRUNCATED;
	}
	barrier_var(len);
	if (len > AR_ARGV_MAX)
		len = 0;
	if (len && bpf_probe_read_user(e->argv, len, (const void *)start) < 0)
		len = 0;
	e->argv_len = len;
	bpf_ringbuf_submit(e, wakeup_flag());
	return 0;
}

/* tp_btf and raw_tp sched_process_exec: (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm). */
static __always_inline int exec_bprm(__u64 *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];
	const char *filename = 0;
	int argc = 0;
	KREAD(filename, bprm->filename);
	KREAD(argc, bprm->argc);
	return on_exec(filename, argc);
}

SEC("tp_btf/sched_process_exec")
int exec_btf(__u64 *ctx)
{
	return exec_bprm(ctx);
}

SEC("raw_tp/sched_process_exec")
int exec_raw(__u64 *ctx)
{
	return exec_bprm(ctx);
}

SEC("tracepoint/sched/sched_process_exec")
int exec_tp(struct trace_event_raw_sched_process_exec *ctx)
{
	unsigned int off = ctx->__data_loc_filename & 0xFFFF;
	/* argc is not in this tracepoint's record: 0 says "count argv". */
	return on_exec((const char *)ctx + off, 0);
}

/* ---- syscalls: open, openat, openat2, connect ---- */

static __always_inline int wanted(long id)
{
	return id == AR_NR_OPENAT || id == AR_NR_OPENAT2 || id == AR_NR_OPEN || id == AR_NR_CONNECT;
}

static __always_inline int enter_open(struct ar_config *cfg, struct ar_pending *p, long id, unsigned long a0,
				      unsigned long a1, unsigned long a2, unsigned long a3)
{
	struct ar_open *o = &p->open;
	const char *path;
	if (id == AR_NR_OPEN) {
		o->syscall = AR_SYS_OPEN;
		o->dirfd = -100; /* AT_FDCWD */
		path = (const char *)a0;
		o->flags = a1;
		o->mode = a2;
	} else {
		o->dirfd = (int)a0;
		path = (const char *)a1;
		if (id == AR_NR_OPENAT) {
			o->syscall = AR_SYS_OPENAT;
			o->flags = a2;
			o->mode = a3;
		} else {
			__u64 how[2] = {0, 0}; /* struct open_how: flags, mode */
			o->syscall = AR_SYS_OPENAT2;
			bpf_probe_read_user(how, sizeof(how), (const void *)a2);
			o->flags = how[0];
			o->mode = how[1];
		}
	}
	long n = bpf_probe_read_user_str(o->path, sizeof(o->path), path);
	if (n <= 0) {
		o->path[0] = 0;
		n = 1;
	} else if (cut_user(n, path)) {
		o->h.flags |= AR_F_PATH_TRUNCATED;
	}
	struct ar_prefix_key key = {};
	__u64 bytes = n - 1;
	if (bytes > AR_PREFIX_MAX)
		bytes = AR_PREFIX_MAX;
	key.prefixlen = bytes * 8;
	__builtin_memcpy(key.data, o->path, AR_PREFIX_MAX);
	if (bpf_map_lookup_elem(&ignore_prefixes, &key)) {
		stat_inc(AR_STAT_IGNORED_OPEN);
		return 0;
	}
	return 1;
}

static __always_inline int enter_connect(struct ar_pending *p, unsigned long a0, unsigned long a1,
					 unsigned long a2)
{
	struct ar_connect *c = &p->conn;
	__u16 family = 0;
	bpf_probe_read_user(&family, sizeof(family), (const void *)a1);
	c->fd = a0;
	c->family = family;
	c->src_port = 0;
	c->reserved = 0;
	c->reserved2 = 0;
	__builtin_memset(c->src_addr, 0, 16);
	__builtin_memset(c->dst_addr, 0, 16);
	if (family == AF_INET && a2 >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sa = {};
		bpf_probe_read_user(&sa, sizeof(sa), (const void *)a1);
		c->dst_port = __builtin_bswap16(sa.sin_port);
		__builtin_memcpy(c->dst_addr, &sa.sin_addr, 4);
		return 1;
	}
	if (family == AF_INET6 && a2 >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sa = {};
		bpf_probe_read_user(&sa, sizeof(sa), (const void *)a1);
		c->dst_port = __builtin_bswap16(sa.sin6_port);
		__builtin_memcpy(c->dst_addr, sa.sin6_addr, 16);
		return 1;
	}
	return 0; /* unix, netlink, ...: not network connections */
}

static __always_inline int on_enter(long id, unsigned long a0, unsigned long a1, unsigned long a2,
				    unsigned long a3)
{
	struct ar_config *cfg = get_config();
	__u64 cgroup_id, session;
	int is_connect = id == AR_NR_CONNECT;
	if (!cfg)
		return 0;
	if (!(cfg->hooks & (is_connect ? AR_HOOK_CONNECT : AR_HOOK_OPEN)))
		return 0;
	if (!in_scope(cfg, &cgroup_id, &session))
		return 0;
	__u32 zero = 0;
	struct ar_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct ar_pending *p = &s->pending;
	fill_header(&p->h, is_connect ? AR_KIND_CONNECT : AR_KIND_OPEN, cgroup_id, session);
	int keep = is_connect ? enter_connect(p, a0, a1, a2) : enter_open(cfg, p, id, a0, a1, a2, a3);
	if (!keep)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pending, &pid_tgid, p, BPF_ANY) != 0) {
		stat_inc(is_connect ? AR_STAT_SEEN_CONNECT : AR_STAT_SEEN_OPEN);
		stat_inc(is_connect ? AR_STAT_LOST_CONNECT : AR_STAT_LOST_OPEN);
	}
	return 0;
}

/* The local address the kernel gave the socket `fd` of the current task (0s when it has none). */
static __always_inline void source_address(struct ar_connect *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = 0;
	struct fdtable *fdt = 0;
	struct file **fds = 0;
	struct file *file = 0;
	struct socket *sock = 0;
	struct sock *sk = 0;
	unsigned int max = 0;
	KREAD(files, task->files);
	if (!files)
		return;
	KREAD(fdt, files->fdt);
	if (!fdt)
		return;
	KREAD(max, fdt->max_fds);
	KREAD(fds, fdt->fd);
	if (e->fd >= max || !fds)
		return;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[e->fd]);
	if (!file)
		return;
	KREAD(sock, file->private_data);
	if (!sock)
		return;
	KREAD(sk, sock->sk);
	if (!sk)
		return;
	KREAD(e->src_port, sk->__sk_common.skc_num);
	if (e->family == AF_INET)
		KREAD(*(__u32 *)e->src_addr, sk->__sk_common.skc_rcv_saddr);
	else
		KREAD(*(struct in6_addr *)e->src_addr, sk->__sk_common.skc_v6_rcv_saddr);
}

static __always_inline int on_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ar_pending *p = bpf_map_lookup_elem(&pending, &pid_tgid);
	if (!p)
		return 0;
	if (p->h.kind == AR_KIND_OPEN) {
		stat_inc(AR_STAT_SEEN_OPEN);
		struct ar_open *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			stat_inc(AR_STAT_LOST_OPEN);
		} else {
			bpf_probe_read_kernel(e, sizeof(*e), &p->open);
			e->return_code = ret;
			bpf_ringbuf_submit(e, wakeup_flag());
		}
	} else if (p->h.kind == AR_KIND_CONNECT) {
		stat_inc(AR_STAT_SEEN_CONNECT);
		struct ar_connect *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			stat_inc(AR_STAT_LOST_CONNECT);
		} else {
			bpf_probe_read_kernel(e, sizeof(*e), &p->conn);
			e->return_code = ret;
			source_address(e);
			bpf_ringbuf_submit(e, wakeup_flag());
		}
	}
	bpf_map_delete_elem(&pending, &pid_tgid);
	return 0;
}

/* tp_btf and raw_tp sys_enter: (struct pt_regs *regs, long id). */
static __always_inline int enter_regs(__u64 *ctx)
{
	long id = ctx[1];
	if (!wanted(id))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	unsigned long a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	KREAD(a0, regs->di);
	KREAD(a1, regs->si);
	KREAD(a2, regs->dx);
	KREAD(a3, regs->r10);
	return on_enter(id, a0, a1, a2, a3);
}

SEC("tp_btf/sys_enter")
int sys_enter_btf(__u64 *ctx)
{
	return enter_regs(ctx);
}

SEC("raw_tp/sys_enter")
int sys_enter_raw(__u64 *ctx)
{
	return enter_regs(ctx);
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	long id = ctx->id;
	if (!wanted(id))
		return 0;
	return on_enter(id, ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

/* tp_btf and raw_tp sys_exit: (struct pt_regs *regs, long ret). */
SEC("tp_btf/sys_exit")
int sys_exit_btf(__u64 *ctx)
{
	return on_exit((long)ctx[1]);
}

SEC("raw_tp/sys_exit")
int sys_exit_raw(__u64 *ctx)
{
	return on_exit((long)ctx[1]);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret);
}
