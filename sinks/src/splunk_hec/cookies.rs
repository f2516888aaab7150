//! A cookie jar per channel and indexer URL, so that the ack queries of a channel reach the indexer that took its
//! data when a load balancer stands in front (Splunk documents indexer acknowledgement behind an AWS ELB with
//! sticky sessions: the balancer's cookie, e.g. `AWSELB`, must come back on every request of the channel).
//!
//! Only what stickiness needs: `name=value` of each `Set-Cookie`, replaced by a later one of the same name and
//! removed by `Max-Age=0` or an empty value; sent back as one `Cookie` header on every request to that URL.
//! Bounded: at most [`MAX_COOKIES`] cookies of at most [`MAX_COOKIE_BYTES`] bytes each; more is ignored (and a
//! hostile server cannot grow the sink's memory).

use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};

/// Most cookies kept per jar.
pub const MAX_COOKIES: usize = 16;
/// Longest `name=value` kept.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct CookieJar {
    cookies: Mutex<Vec<(String, String)>>,
}

impl CookieJar {
    /// Takes in the `Set-Cookie` headers of a response.
    pub fn store(&self, headers: &HeaderMap) {
        let mut jar = self.cookies.lock().expect("cookie jar lock");
        for h in headers.get_all(SET_COOKIE) {
            let Ok(text) = h.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty()
                || name.len() + value.len() + 1 > MAX_COOKIE_BYTES
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'=' && b != b',')
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
            {
                continue;
            }
            let expired = parts.any(|a| {
                a.trim().split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
                })
            });
            jar.retain(|(n, _)| n != name);
            if !expired && !value.is_empty() && jar.len() < MAX_COOKIES {
                jar.push((name.to_string(), value.to_string()));
            }
        }
    }

    /// The `Cookie` header to send, if any cookie is kept.
    pub fn header(&self) -> Option<HeaderValue> {
        let jar = self.cookies.lock().expect("cookie jar lock");
        if jar.is_empty() {
            return None;
        }
        let text = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(jar: &CookieJar, values: &[&str]) {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        jar.store(&h);
    }

    #[test]
    fn keeps_replaces_and_expires_cookies() {
        let jar = CookieJar::default();
        assert!(jar.header().is_none());
        set(
            &jar,
            &["AWSELB=ABCD1234;PATH=/;MAX-AGE=86400", "other=1; HttpOnly"],
        );
        assert_eq!(jar.header().unwrap(), "AWSELB=ABCD1234; other=1");
        set(&jar, &["AWSELB=EFGH; Path=/"]);
        assert_eq!(jar.header().unwrap(), "other=1; AWSELB=EFGH");
        set(&jar, &["other=; Max-Age=0"]);
        assert_eq!(jar.header().unwrap(), "AWSELB=EFGH");
        set(&jar, &["no-equals-sign", "bad name=x"]);
        assert_eq!(jar.header().unwrap(), "AWSELB=EFGH");
    }

    #[test]
    fn a_hostile_server_cannot_grow_the_jar() {
        let jar = CookieJar::default();
        let many: Vec<String> = (0..100).map(|i| format!("c{i}=v")).collect();
        set(&jar, &many.iter().map(String::as_str).collect::<Vec<_>>());
        set(&jar, &[&format!("big={}", "x".repeat(MAX_COOKIE_BYTES))]);
        let h = jar.header().unwrap();
        assert_eq!(h.to_str().unwrap().split("; ").count(), MAX_COOKIES);
        assert!(!h.to_str().unwrap().contains("big="));
    }
}
