//! The records in `bpf/events.h` and their twins in `src/records.rs` agree: for every struct, the size and
//! every field's offset read from the compiled object's BTF (what clang made of the C) equal Rust's.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use auditrail_ebpf::records::*;
use object::{Object, ObjectSection};

/// A struct in BTF: its size and its members' byte offsets by name.
#[derive(Debug)]
struct BtfStruct {
    size: usize,
    members: HashMap<String, usize>,
}

/// The named structs of the object's `.BTF` section (just enough of the format: header, types, strings).
fn btf_structs(object: &[u8]) -> HashMap<String, BtfStruct> {
    let file = object::File::parse(object).expect("the object is ELF");
    let btf = file
        .section_by_name(".BTF")
        .expect("the object has BTF (clang -g)")
        .data()
        .unwrap();
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(btf, 4) as usize;
    let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let str_off = u32_at(btf, 16) as usize;
    let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &btf[hdr_len + str_off..];
    let name = |off: u32| {
        let s = &strings[off as usize..];
        String::from_utf8(s[..s.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
    };
    let mut out = HashMap::new();
    let mut at = 0;
    while at < types.len() {
        let (name_off, info, size) = (
            u32_at(types, at),
            u32_at(types, at + 4),
            u32_at(types, at + 8),
        );
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        at += 12;
        let extra = match kind {
            1 | 14 | 17 => 4,             // int, var, decl_tag
            3 => 12,                      // array
            4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
            6 | 13 => 8 * vlen,           // enum, func_proto
            _ => 0,
        };
        if kind == 4 && name_off != 0 {
            let mut members = HashMap::new();
            for m in 0..vlen {
                let base = at + 12 * m;
                let offset = u32_at(types, base + 8);
                let bits = if kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                };
                members.insert(name(u32_at(types, base)), (bits / 8) as usize);
            }
            out.insert(
                name(name_off),
                BtfStruct {
                    size: size as usize,
                    members,
                },
            );
        }
        at += extra;
    }
    out
}

macro_rules! check {
    ($structs:expr, $c:literal, $rust:ty, [$($field:ident),* $(,)?]) => {{
        let s = $structs.get($c).unwrap_or_else(|| panic!("struct {} is not in the object's BTF", $c));
        assert_eq!(s.size, size_of::<$rust>(), "size of struct {} vs {}", $c, stringify!($rust));
        let mut names = vec![$(stringify!($field)),*];
        $(
            assert_eq!(
                s.members.get(stringify!($field)).copied(),
                Some(offset_of!($rust, $field)),
                "offset of {}.{}", $c, stringify!($field)
            );
        )*
        let mut c_names: Vec<&str> = s.members.keys().map(|k| k.as_str()).collect();
        c_names.sort();
        names.sort();
        assert_eq!(c_names, names, "fields of struct {} vs {}", $c, stringify!($rust));
    }};
}

fn check_all(object: &[u8]) {
    let s = btf_structs(object);
    check!(
        s,
        "ar_header",
        Header,
        [
            kind,
            flags,
            ktime_ns,
            cgroup_id,
            session_cgroup_id,
            pid,
            tid,
            ppid,
            uid,
            gid,
            reserved,
            comm
        ]
    );
    check!(
        s,
        "ar_exec",
        Exec,
        [h, return_code, argv_len, argc, reserved, path, argv]
    );
    check!(
        s,
        "ar_open",
        Open,
        [h, return_code, dirfd, flags, mode, syscall, path]
    );
    check!(
        s,
        "ar_connect",
        Connect,
        [
            h,
            return_code,
            family,
            dst_port,
            src_port,
            reserved,
            fd,
            reserved2,
            src_addr,
            dst_addr
        ]
    );
    check!(s, "ar_config", Config, [scope_all, hooks]);
    check!(s, "ar_prefix_key", PrefixKey, [prefixlen, data]);
}

#[test]
fn records_agree_with_the_embedded_object() {
    check_all(auditrail_ebpf::OBJECT);
}

#[test]
fn records_agree_with_the_committed_object() {
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/objects/events.bpf.o")).unwrap();
    check_all(&committed);
}

#[test]
fn the_check_sees_a_difference() {
    // A field the Rust side lacks, as a drifted header would have: the comparison must notice.
    let s = btf_structs(auditrail_ebpf::OBJECT);
    let h = &s["ar_header"];
    assert!(h.members.contains_key("session_cgroup_id"));
    assert_ne!(
        h.members["tid"],
        offset_of!(Header, pid),
        "offsets are read, not assumed"
    );
}
