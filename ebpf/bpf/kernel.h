/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few kernel types and BPF helpers the programs use, instead of a whole generated vmlinux.h (2.8 MB on
 * this kernel) and libbpf's headers: the build then needs nothing but clang, and what the objects depend on
 * is small enough to read. Every struct is marked preserve_access_index, so each field access is a CO-RE
 * relocation resolved by name against the running kernel's BTF (/sys/kernel/btf/vmlinux) when the loader
 * loads the object: only the names and types below must match the kernel, not the layouts. Fields the kernel
 * keeps inside anonymous structs or unions (mm_struct's arg_start, sock_common's addresses) are written flat;
 * the relocation finds them through the anonymous members. Regenerate the reference with
 * `bpftool btf dump file /sys/kernel/btf/vmlinux format c` when adding a field.
 */
#ifndef AUDITRAIL_KERNEL_H
#define AUDITRAIL_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define CORE __attribute__((preserve_access_index))

/* Map types and flags (include/uapi/linux/bpf.h). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_F_NO_PREALLOC 1
#define BPF_ANY 0

#define AF_INET 2
#define AF_INET6 10

/* Helpers, by their number in enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)16;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *src) = (void *)114;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) = (void *)115;
static __u64 (*bpf_get_current_ancestor_cgroup_id)(int level) = (void *)123;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)134;

/* bpf_ringbuf_submit flags and bpf_ringbuf_query questions (include/uapi/linux/bpf.h). */
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0
#define BPF_RB_RING_SIZE 1

/* Reads a kernel value through a CO-RE-relocated address. */
#define KREAD(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} CORE;

struct file {
	void *private_data;
} CORE;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} CORE;

struct files_struct {
	struct fdtable *fdt;
} CORE;

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct files_struct *files;
} CORE;

struct linux_binprm {
	int argc;
	const char *filename;
} CORE;

struct in6_addr {
	__u8 s6_addr[16];
} CORE;

struct sock_common {
	__be32 skc_rcv_saddr;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_rcv_saddr;
} CORE;

struct sock {
	struct sock_common __sk_common;
} CORE;

struct socket {
	struct sock *sk;
} CORE;

/* x86-64 registers at syscall entry: the arguments are di, si, dx, r10, r8, r9. */
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long r8;
	unsigned long r9;
} CORE;

/* Classic tracepoint contexts (the tracefs format files). */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long id;
	unsigned long args[6];
} CORE;

struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long id;
	long ret;
} CORE;

struct trace_event_raw_sched_process_exec {
	struct trace_entry ent;
	__u32 __data_loc_filename;
	int pid;
	int old_pid;
} CORE;

struct sockaddr_in {
	__u16 sin_family;
	__be16 sin_port;
	__be32 sin_addr;
};

struct sockaddr_in6 {
	__u16 sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	__u8 sin6_addr[16];
	__u32 sin6_scope_id;
};

/* x86-64 syscall numbers. */
#define AR_NR_OPEN 2
#define AR_NR_CONNECT 42
#define AR_NR_OPENAT 257
#define AR_NR_OPENAT2 437

#endif
