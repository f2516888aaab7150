//! Session ids: `[A-Za-z0-9_-]{1,128}` (a UUIDv7 by default). A sid names files (`<sid>.raw`) and cgroups
//! (`auditrail/<sid>`), so anything else (`..`, `/`, NUL, an empty string) is refused before it is used.

/// The longest sid accepted.
pub const MAX_SID_LEN: usize = 128;

/// Why a sid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSid {
    /// Empty.
    #[error("the sid is empty: expected 1 to 128 characters of [A-Za-z0-9_-]")]
    Empty,
    /// Over [`MAX_SID_LEN`].
    #[error("the sid is {0} bytes long: expected at most 128 characters of [A-Za-z0-9_-]")]
    TooLong(usize),
    /// A character outside the set.
    #[error("the sid contains {0:?}: expected only [A-Za-z0-9_-] (it names files and cgroups)")]
    BadChar(char),
}

/// Checks `sid` against `[A-Za-z0-9_-]{1,128}`.
pub fn validate(sid: &str) -> Result<(), InvalidSid> {
    if sid.is_empty() {
        return Err(InvalidSid::Empty);
    }
    if sid.len() > MAX_SID_LEN {
        return Err(InvalidSid::TooLong(sid.len()));
    }
    match sid
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(InvalidSid::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_refuses_paths() {
        assert!(validate("0192f1c4-5e2a-7b3c-8d4e-5f6a7b8c9d0e").is_ok());
        assert!(validate("a_B-9").is_ok());
        assert!(validate(&"x".repeat(128)).is_ok());
        assert_eq!(validate(""), Err(InvalidSid::Empty));
        assert_eq!(validate(&"x".repeat(129)), Err(InvalidSid::TooLong(129)));
        assert_eq!(validate(".."), Err(InvalidSid::BadChar('.')));
        assert_eq!(validate("a/b"), Err(InvalidSid::BadChar('/')));
        assert_eq!(validate("a\0"), Err(InvalidSid::BadChar('\0')));
        assert_eq!(validate("é"), Err(InvalidSid::BadChar('é')));
    }
}
