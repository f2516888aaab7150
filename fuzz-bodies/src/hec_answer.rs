//! Untrusted HEC answers → the splunk_hec sink's verdicts: an event answer (any status, any body) and an ack
//! answer must never panic; a 2xx event answer is handed on unchanged; a data error's bad event is the one the
//! body names; an ack answer's indexed and not-yet ids are disjoint, sorted, and exactly the body's.
//!
//! Input layout: two bytes for the HTTP status (`100 + u16 % 500`), then the body.

use auditrail_sinks::http::Reply;
use auditrail_sinks::splunk_hec::response::{parse_ack_answer, parse_answer, verdict};

/// See the module documentation.
pub fn hec_answer(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 500;
    let body = &data[2..];
    match verdict("http://idx/", status, body, None) {
        Reply::Ok(b) => {
            assert!((200..300).contains(&status));
            assert_eq!(&b[..], body);
        }
        Reply::Refused { at: Some(n), .. } => {
            assert_eq!(
                parse_answer(body).and_then(|a| a.invalid_event_number),
                Some(n)
            );
        }
        _ => assert!(!(200..300).contains(&status)),
    }
    if let Ok((yes, no)) = parse_ack_answer("http://idx/", status, body) {
        assert!(yes.windows(2).all(|w| w[0] <= w[1]));
        assert!(no.windows(2).all(|w| w[0] <= w[1]));
        assert!(yes.iter().all(|id| no.binary_search(id).is_err()));
    }
}
