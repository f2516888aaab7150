//! `${VAR}` in config strings: expanded from the environment after parsing, inside string values only, so that
//! comments may mention variables freely and an error message never shows a secret a variable held.
//!
//! Forms: `${VAR}` (an error if VAR is unset), `${VAR:-default}` (default when unset or empty), `$$` for a
//! literal `$`. A bare `$NAME` is left as it is.

/// A `${VAR}` that could not be expanded, with its byte offset inside the string.
#[derive(Debug, PartialEq, Eq)]
pub struct EnvError {
    /// Byte offset of the `$` inside the string value.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Expands `input` with `lookup`. Returns `None` when there is nothing to expand.
pub fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, EnvError> {
    if !input.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut changed = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let offset = input.len() - rest.len() + pos;
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            changed = true;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body.find('}').ok_or_else(|| EnvError {
                offset,
                message: "`${` without a closing `}`: write ${NAME}, or $$ for a literal $".into(),
            })?;
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(EnvError {
                    offset,
                    message: format!("`${{{inner}}}` is not a variable reference: expected ${{NAME}} or ${{NAME:-default}} with NAME of letters, digits and _"),
                });
            }
            match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(EnvError {
                        offset,
                        message: format!("environment variable `{name}` is not set (write ${{{name}:-default}} for a fallback)"),
                    })
                }
            }
            rest = &body[close + 1..];
            changed = true;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands() {
        assert_eq!(expand("plain", &env).unwrap(), None);
        assert_eq!(
            expand("Bearer ${TOKEN}", &env).unwrap().unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(
            expand("${NOPE:-x}/${EMPTY:-y}", &env).unwrap().unwrap(),
            "x/y"
        );
        assert_eq!(expand("${EMPTY}", &env).unwrap().unwrap(), "");
        assert_eq!(
            expand("$$5 and $HOME", &env).unwrap().unwrap(),
            "$5 and $HOME"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = expand("a ${MISSING}", &env).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("`MISSING` is not set"));
        assert!(expand("${BAD-NAME}", &env)
            .unwrap_err()
            .message
            .contains("not a variable reference"));
        assert!(expand("${OPEN", &env)
            .unwrap_err()
            .message
            .contains("closing"));
    }
}
