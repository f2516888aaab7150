//! Socket permissions in the config: `mode` (an octal string such as `"0660"`, or a TOML integer such as
//! `0o660`) and `group` (a group name, or a numeric gid), applied to a socket right after `bind`.

use std::ffi::CString;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A socket's permission bits, at most `0o777` (no setuid/setgid/sticky on a socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl SocketMode {
    /// Parses `"0660"`, `"660"` or `"0o660"`.
    pub fn parse(s: &str) -> Result<SocketMode, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let v = u32::from_str_radix(digits, 8).map_err(|_| {
            format!("expected an octal mode such as \"0660\" or 0o660, found {s:?}")
        })?;
        SocketMode::checked(v)
    }

    fn checked(v: u32) -> Result<SocketMode, String> {
        if v > 0o777 {
            return Err(format!(
                "mode {v:o} (octal) is over 0777: write it in octal, as a string \"0660\" or a TOML octal integer 0o660 (a plain integer like 660 is decimal)"
            ));
        }
        Ok(SocketMode(v))
    }

    /// Whether anyone but the owner may connect (write permission for the group or others).
    pub fn shared(self) -> bool {
        self.0 & 0o022 != 0
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SocketMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an octal mode: a string such as \"0660\" or a TOML integer such as 0o660",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SocketMode, E> {
                SocketMode::parse(s).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SocketMode, E> {
                u32::try_from(v)
                    .map_err(|_| E::custom(format!("mode {v} is negative or too large")))
                    .and_then(|v| SocketMode::checked(v).map_err(E::custom))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SocketMode, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// The group a socket is given: a name (looked up when the source starts) or a gid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketGroup {
    /// A group name, e.g. `"auditrail-users"`.
    Name(String),
    /// A numeric gid.
    Gid(u32),
}

impl<'de> Deserialize<'de> for SocketGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SocketGroup;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a group name (string) or a gid (integer)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SocketGroup, E> {
                if s.is_empty() {
                    return Err(E::custom(
                        "expected a group name or gid, found an empty string",
                    ));
                }
                Ok(match s.parse::<u32>() {
                    Ok(g) => SocketGroup::Gid(g),
                    Err(_) => SocketGroup::Name(s.to_string()),
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SocketGroup, E> {
                u32::try_from(v)
                    .map(SocketGroup::Gid)
                    .map_err(|_| E::custom(format!("gid {v} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SocketGroup, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
        }
        d.deserialize_any(V)
    }
}

impl SocketGroup {
    /// The gid: looks a name up in the group database (`getgrnam_r`).
    pub fn resolve(&self) -> std::io::Result<u32> {
        let name = match self {
            SocketGroup::Gid(g) => return Ok(*g),
            SocketGroup::Name(n) => n,
        };
        let c = CString::new(name.as_str()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "group name contains NUL")
        })?;
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        // SAFETY: plain-data out-parameters of the sizes given.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        let r = unsafe {
            libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out)
        };
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
        if out.is_null() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no group named {name:?} (see /etc/group or `getent group {name}`)"),
            ));
        }
        Ok(grp.gr_gid)
    }
}

/// Gives `path` `mode` and, when set, `group` (its owner stays the agent's user).
pub fn apply(path: &Path, mode: SocketMode, group: Option<&SocketGroup>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(g) = group {
        let gid = g.resolve()?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct T {
        mode: SocketMode,
        #[serde(default)]
        group: Option<SocketGroup>,
    }

    fn parse(s: &str) -> Result<T, String> {
        toml::from_str::<T>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn modes_and_groups() {
        assert_eq!(parse("mode = \"0666\"").unwrap().mode, SocketMode(0o666));
        assert_eq!(parse("mode = \"660\"").unwrap().mode, SocketMode(0o660));
        assert_eq!(parse("mode = 0o600").unwrap().mode, SocketMode(0o600));
        assert!(parse("mode = 666").unwrap_err().contains("decimal"));
        assert!(parse("mode = \"0999\"").unwrap_err().contains("octal"));
        assert!(parse("mode = \"4777\"").unwrap_err().contains("over 0777"));
        assert!(parse("mode = -1").is_err());
        let t = parse("mode = \"0660\"\ngroup = \"wheel\"").unwrap();
        assert_eq!(t.group, Some(SocketGroup::Name("wheel".into())));
        assert_eq!(
            parse("mode = \"0660\"\ngroup = 10").unwrap().group,
            Some(SocketGroup::Gid(10))
        );
        assert_eq!(
            parse("mode = \"0660\"\ngroup = \"10\"").unwrap().group,
            Some(SocketGroup::Gid(10))
        );
        assert!(SocketMode(0o660).shared() && !SocketMode(0o600).shared());
        assert_eq!(SocketGroup::Gid(7).resolve().unwrap(), 7);
        assert_eq!(SocketGroup::Name("root".into()).resolve().unwrap(), 0);
        let e = SocketGroup::Name("no-such-group-xyz".into())
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("no group named"), "{e}");
    }
}
