//! HEC answers, judged as Splunk documents them ("Troubleshoot HTTP Event Collector": the table of status codes
//! with their HTTP statuses; "About HTTP Event Collector Indexer Acknowledgment": the `ackId` of an event
//! request and the body of an ack query).
//!
//! | HEC code (HTTP) | Splunk's text | verdict |
//! | --- | --- | --- |
//! | 0 (200) | Success | delivered (acks off), or awaiting its `ackId` (acks on) |
//! | 1 (403), 2 (401), 3 (401), 4 (403), any 401/403 | Token disabled, Token is required, Invalid authorization, Invalid token | [`Reply::Auth`]: held, nothing lost |
//! | 5, 6, 7, 12, 13, 15 (400) | No data, Invalid data format, Incorrect index, Event field is required, Event field cannot be blank, Error in handling indexed fields | [`Reply::Refused`]: the batch is split (at `invalid-event-number`) and the bad event dead-lettered with Splunk's text |
//! | 8 (500), other 5xx | Internal server error | [`Reply::Transient`], the indexer taken out until its health check passes |
//! | 9 (503), any 503 | Server is busy | [`Reply::Transient`] after a backoff honouring `Retry-After` (another indexer at once, with several) |
//! | 10, 11 (400) | Data channel is missing, Invalid data channel | [`Reply::Unexpected`] naming `acknowledgements` |
//! | 14 (400) | ACK is disabled | [`Reply::Unexpected`] naming the token's indexer acknowledgement setting |
//! | 16 (400) | Query string authorization is not enabled | [`Reply::Unexpected`] (the sink sends the token in a header; a proxy changed the request) |
//! | 408, 429 | — | [`Reply::Transient`] after a backoff |
//! | other 400, 413 | — | [`Reply::Refused`], split in halves |
//! | anything else (404, 405…) | — | [`Reply::Unexpected`]: held, "is `endpoint` right?" |

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::http::client::cut;
use crate::http::Reply;

/// The JSON body of every HEC answer to an event request: `{"text":"Success","code":0,"ackId":7}`, with
/// `invalid-event-number` on a data error.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct HecAnswer {
    /// Splunk's words.
    #[serde(default)]
    pub text: String,
    /// The HEC status code.
    #[serde(default)]
    pub code: Option<i64>,
    /// The place in the batch (from 0) of the event that made the request fail.
    #[serde(default, rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
    /// The id to ask `/services/collector/ack` about (indexer acknowledgement on).
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
}

/// `body` as a HEC answer, when it is one.
pub fn parse_answer(body: &[u8]) -> Option<HecAnswer> {
    serde_json::from_slice(body).ok()
}

/// The HEC codes that say the data itself is wrong.
pub const DATA_ERRORS: [i64; 6] = [5, 6, 7, 12, 13, 15];
/// The HEC codes that say the token is refused.
pub const TOKEN_ERRORS: [i64; 4] = [1, 2, 3, 4];

/// What the sink tells the operator to do about HEC code 14.
pub const ACK_DISABLED_HINT: &str = "the token has indexer acknowledgement disabled (HEC code 14, \"ACK is disabled\"): enable \"Enable indexer acknowledgement\" on the token in Splunk (useACK = 1 in inputs.conf), or set acknowledgements = false in this sink";

/// The verdict on a non-2xx answer (or a 2xx one, which is [`Reply::Ok`] for the classifier) from `base`.
pub fn verdict(base: &str, status: u16, body: &[u8], retry_after: Option<Duration>) -> Reply {
    if (200..300).contains(&status) {
        return Reply::Ok(bytes::Bytes::copy_from_slice(body));
    }
    let answer = parse_answer(body);
    let code = answer.as_ref().and_then(|a| a.code);
    let text = match &answer {
        Some(a) => a.text.clone(),
        None => cut(&String::from_utf8_lossy(body)),
    };
    let why = match code {
        Some(c) => format!("{base}: {status}: HEC code {c}: {text}"),
        None => format!("{base}: {status}: {text}"),
    };
    match (status, code) {
        (_, Some(c)) if TOKEN_ERRORS.contains(&c) => Reply::Auth {
            why: format!("{why} (check `token`)"),
        },
        (401 | 403, _) => Reply::Auth {
            why: format!("{why} (check `token`)"),
        },
        (_, Some(9)) | (503, _) => Reply::Transient {
            why,
            retry_after,
            node_down: true,
        },
        (_, Some(8)) => Reply::Transient {
            why,
            retry_after,
            node_down: true,
        },
        (_, Some(c)) if DATA_ERRORS.contains(&c) => Reply::Refused {
            status,
            why,
            at: answer.and_then(|a| a.invalid_event_number),
        },
        (_, Some(10 | 11)) => Reply::Unexpected {
            why: format!("{why}: the token wants a channel (its indexer acknowledgement is on): set acknowledgements = true"),
        },
        (_, Some(14)) => Reply::Unexpected {
            why: format!("{why}: {ACK_DISABLED_HINT}"),
        },
        (_, Some(16)) => Reply::Unexpected {
            why: format!("{why}: the sink sends the token in the Authorization header; is a proxy rewriting requests?"),
        },
        (408 | 429, _) => Reply::Transient {
            why,
            retry_after,
            node_down: false,
        },
        (s, _) if s >= 500 => Reply::Transient {
            why,
            retry_after,
            node_down: true,
        },
        (400 | 413, _) => Reply::Refused {
            status,
            why,
            at: None,
        },
        _ => Reply::Unexpected { why },
    }
}

/// The answer to an ack query: `{"acks":{"0":true,"1":false}}`.
#[derive(Debug, Deserialize)]
struct AckAnswer {
    acks: HashMap<String, bool>,
}

/// Why an ack query gave no answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckQueryError {
    /// HEC code 14: the token has acknowledgements off; they will never come.
    #[error("{0}")]
    Disabled(String),
    /// Anything else: ask again at the next poll.
    #[error("{0}")]
    Failed(String),
}

/// The body of an ack query for `ids`: `{"acks":[0,1,2]}`.
pub fn ack_request(ids: &[u64]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("numbers always serialize")
}

/// The ids an ack answer says are indexed (`true`) and the ones it says are not yet (`false`).
pub fn parse_ack_answer(
    base: &str,
    status: u16,
    body: &[u8],
) -> Result<(Vec<u64>, Vec<u64>), AckQueryError> {
    if !(200..300).contains(&status) {
        let answer = parse_answer(body);
        let why = match &answer {
            Some(HecAnswer {
                code: Some(c),
                text,
                ..
            }) => format!("{base}: {status}: HEC code {c}: {text}"),
            _ => format!("{base}: {status}: {}", cut(&String::from_utf8_lossy(body))),
        };
        if answer.and_then(|a| a.code) == Some(14) {
            return Err(AckQueryError::Disabled(format!(
                "{why}: {ACK_DISABLED_HINT}"
            )));
        }
        return Err(AckQueryError::Failed(why));
    }
    let a: AckAnswer = serde_json::from_slice(body).map_err(|e| {
        AckQueryError::Failed(format!(
            "{base}: not an ack answer ({e}): {}",
            cut(&String::from_utf8_lossy(body))
        ))
    })?;
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for (id, done) in a.acks {
        let Ok(id) = id.parse::<u64>() else { continue };
        if done {
            yes.push(id);
        } else {
            no.push(id);
        }
    }
    yes.sort_unstable();
    no.sort_unstable();
    Ok((yes, no))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_answers_never_panic(body in prop::collection::vec(any::<u8>(), 0..300), status in 100u16..600) {
            let _ = verdict("http://x/", status, &body, None);
            let _ = parse_ack_answer("http://x/", status, &body);
            let _ = parse_answer(&body);
        }

        #[test]
        fn generated_ack_answers_split_into_indexed_and_not(acks in prop::collection::btree_map(any::<u64>(), any::<bool>(), 0..50)) {
            let body = serde_json::json!({
                "acks": acks.iter().map(|(k, v)| (k.to_string(), serde_json::Value::Bool(*v))).collect::<serde_json::Map<_, _>>()
            });
            let (yes, no) = parse_ack_answer("http://x/", 200, body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(yes, acks.iter().filter(|(_, v)| **v).map(|(k, _)| *k).collect::<Vec<_>>());
            prop_assert_eq!(no, acks.iter().filter(|(_, v)| !**v).map(|(k, _)| *k).collect::<Vec<_>>());
        }
    }

    #[test]
    fn errors_never_hold_the_token_and_name_the_indexer() {
        let r = verdict(
            "https://idx1:8088/",
            403,
            br#"{"text":"Invalid token","code":4}"#,
            None,
        );
        match r {
            Reply::Auth { why } => assert_eq!(
                why,
                "https://idx1:8088/: 403: HEC code 4: Invalid token (check `token`)"
            ),
            other => panic!("{other:?}"),
        }
    }
}
