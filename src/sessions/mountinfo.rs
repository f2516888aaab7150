//! Finding the cgroup v2 hierarchy from `/proc/self/mountinfo` (proc(5)): the mount whose filesystem type is
//! `cgroup2`. Pure v2 hosts mount it at `/sys/fs/cgroup`; hybrid hosts (systemd's default before v2-only, as on
//! this project's CI machine) at `/sys/fs/cgroup/unified`, beside the v1 controllers; some hosts have none.
//!
//! A line is `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`; the kernel writes
//! space, tab, newline and backslash in paths as `\040`, `\011`, `\012`, `\134`.

use std::path::PathBuf;

/// One mount of a `cgroup2` filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Where it is mounted (unescaped).
    pub mount_point: PathBuf,
    /// The cgroup this mount shows as its root (`/` unless a cgroup namespace or bind mount narrows it).
    pub root: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// Undoes the kernel's octal escapes (`\040` → space); anything else is kept as written.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = (digits[0] - b'0') as u32 * 64
                    + (digits[1] - b'0') as u32 * 8
                    + (digits[2] - b'0') as u32;
                if v <= 0xff {
                    out.push(v as u8);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `cgroup2` mount in mountinfo `text`, in order. Lines that do not have the documented shape are skipped.
pub fn cgroup2_mounts(text: &str) -> Vec<Cgroup2Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Cgroup2Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    // Six fixed fields come before the optional ones and the separator; three after it.
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    if fields[sep + 1] != "cgroup2" {
        return None;
    }
    let read_only = fields[5].split(',').any(|o| o == "ro");
    Some(Cgroup2Mount {
        mount_point: PathBuf::from(unescape(fields[4])),
        root: unescape(fields[3]),
        read_only,
    })
}

/// The mount to use: `/sys/fs/cgroup` (pure v2), else `/sys/fs/cgroup/unified` (hybrid), else the first writable
/// one, else the first; `None` when no cgroup2 filesystem is mounted.
pub fn pick(mounts: &[Cgroup2Mount]) -> Option<&Cgroup2Mount> {
    let at = |p: &str| {
        mounts
            .iter()
            .find(|m| m.mount_point == std::path::Path::new(p))
    };
    at("/sys/fs/cgroup")
        .or_else(|| at("/sys/fs/cgroup/unified"))
        .or_else(|| mounts.iter().find(|m| !m.read_only))
        .or_else(|| mounts.first())
}

/// Reads `/proc/self/mountinfo` and picks the cgroup2 mount ([`pick`]).
pub fn discover() -> std::io::Result<Option<Cgroup2Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(pick(&cgroup2_mounts(&text)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE_V2: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
27 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const NONE: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
";

    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>)] = &[
            (HYBRID, Some("/sys/fs/cgroup/unified")),
            (PURE_V2, Some("/sys/fs/cgroup")),
            (NONE, None),
            ("", None),
            ("garbage\n- - -\n41 31 0:38 / /x\n", None),
            // A path with a space, written escaped, and an optional field before the separator.
            (
                "50 1 0:40 / /mnt/my\\040cgroups rw shared:3 master:1 - cgroup2 none rw\n",
                Some("/mnt/my cgroups"),
            ),
            // Both present: the pure-v2 location wins over a second one.
            (
                "50 1 0:40 / /mnt/cg2 rw - cgroup2 none rw\n27 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                Some("/sys/fs/cgroup"),
            ),
            // A read-only one is passed over for a writable one.
            (
                "50 1 0:40 / /ro rw,ro - cgroup2 none ro\n51 1 0:41 / /rw rw - cgroup2 none rw\n",
                Some("/rw"),
            ),
            // cgroup (v1) is not cgroup2.
            ("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", None),
        ];
        for (text, want) in cases {
            let mounts = cgroup2_mounts(text);
            let got = pick(&mounts).map(|m| m.mount_point.display().to_string());
            assert_eq!(got.as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("tab\\011nl\\012bs\\134"), "tab\tnl\nbs\\");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("not\\999octal"), "not\\999octal");
        assert_eq!(unescape("\\"), "\\");
    }

    proptest! {
        /// Whatever the path, the kernel's escaping of it parses back to it.
        #[test]
        fn escaped_paths_round_trip(path in "/[ -~\t\n]{0,40}") {
            let mut esc = String::new();
            for c in path.chars() {
                match c {
                    ' ' => esc.push_str("\\040"),
                    '\t' => esc.push_str("\\011"),
                    '\n' => esc.push_str("\\012"),
                    '\\' => esc.push_str("\\134"),
                    c => esc.push(c),
                }
            }
            let line = format!("41 31 0:38 / {esc} rw,relatime - cgroup2 cgroup2 rw");
            let m = cgroup2_mounts(&line);
            prop_assert_eq!(m.len(), 1);
            prop_assert_eq!(m[0].mount_point.to_str().unwrap(), path.as_str());
        }

        /// Any line is parsed without panicking.
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = pick(&cgroup2_mounts(&text));
        }
    }
}
