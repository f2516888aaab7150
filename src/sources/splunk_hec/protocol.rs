//! HEC's answers: the status codes Splunk documents ("Troubleshoot HTTP Event Collector", table of possible
//! error codes), each with its HTTP status and its exact `text`, and the JSON bodies built from them.
//!
//! | code | HTTP | text |
//! |-----:|-----:|------|
//! | 0 | 200 | Success |
//! | 1 | 403 | Token disabled |
//! | 2 | 401 | Token is required |
//! | 3 | 401 | Invalid authorization |
//! | 4 | 403 | Invalid token |
//! | 5 | 400 | No data |
//! | 6 | 400 | Invalid data format |
//! | 7 | 400 | Incorrect index |
//! | 8 | 500 | Internal server error |
//! | 9 | 503 | Server is busy |
//! | 10 | 400 | Data channel is missing |
//! | 11 | 400 | Invalid data channel |
//! | 12 | 400 | Event field is required |
//! | 13 | 400 | Event field cannot be blank |
//! | 14 | 400 | ACK is disabled |
//! | 15 | 400 | Error in handling indexed fields |
//! | 16 | 400 | Query string authorization is not enabled |
//! | 17 | 200 | HEC is healthy |
//! | 18 | 503 | HEC is unhealthy, queues are full |
//!
//! Codes 1 (no token is ever disabled here) and 7 (there are no indexes to allow) are never sent.

use axum::http::StatusCode;

/// One documented HEC status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// HEC's `code`.
    pub code: u16,
    /// The HTTP status it goes with.
    pub http: StatusCode,
    /// HEC's `text`.
    pub text: &'static str,
}

macro_rules! statuses {
    ($($name:ident = $code:literal, $http:ident, $text:literal;)*) => {
        $(
            #[doc = concat!("`", $text, "` (code ", stringify!($code), ").")]
            pub const $name: Status = Status { code: $code, http: StatusCode::$http, text: $text };
        )*
    };
}

statuses! {
    SUCCESS = 0, OK, "Success";
    TOKEN_REQUIRED = 2, UNAUTHORIZED, "Token is required";
    INVALID_AUTHORIZATION = 3, UNAUTHORIZED, "Invalid authorization";
    INVALID_TOKEN = 4, FORBIDDEN, "Invalid token";
    NO_DATA = 5, BAD_REQUEST, "No data";
    INVALID_DATA_FORMAT = 6, BAD_REQUEST, "Invalid data format";
    INTERNAL_ERROR = 8, INTERNAL_SERVER_ERROR, "Internal server error";
    SERVER_BUSY = 9, SERVICE_UNAVAILABLE, "Server is busy";
    CHANNEL_MISSING = 10, BAD_REQUEST, "Data channel is missing";
    INVALID_CHANNEL = 11, BAD_REQUEST, "Invalid data channel";
    EVENT_FIELD_REQUIRED = 12, BAD_REQUEST, "Event field is required";
    EVENT_FIELD_BLANK = 13, BAD_REQUEST, "Event field cannot be blank";
    ACK_DISABLED = 14, BAD_REQUEST, "ACK is disabled";
    INDEXED_FIELDS_ERROR = 15, BAD_REQUEST, "Error in handling indexed fields";
    QUERY_STRING_AUTH_DISABLED = 16, BAD_REQUEST, "Query string authorization is not enabled";
    HEALTHY = 17, OK, "HEC is healthy";
    UNHEALTHY_QUEUES_FULL = 18, SERVICE_UNAVAILABLE, "HEC is unhealthy, queues are full";
}

impl Status {
    /// `{"text":...,"code":...}`.
    pub fn body(self) -> String {
        format!(r#"{{"text":"{}","code":{}}}"#, self.text, self.code)
    }

    /// `{"text":...,"code":...,"invalid-event-number":N}`: the 0-based position of the first bad event.
    pub fn body_at(self, event: usize) -> String {
        format!(
            r#"{{"text":"{}","code":{},"invalid-event-number":{event}}}"#,
            self.text, self.code
        )
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self.code {
            0 => "success",
            2 => "token_required",
            3 => "invalid_authorization",
            4 => "invalid_token",
            5 => "no_data",
            6 => "invalid_data_format",
            8 => "internal_error",
            9 => "server_busy",
            10 => "channel_missing",
            11 => "invalid_channel",
            12 => "event_field_required",
            13 => "event_field_blank",
            14 => "ack_disabled",
            15 => "indexed_fields_error",
            16 => "query_string_auth_disabled",
            17 => "healthy",
            18 => "unhealthy",
            _ => "other",
        }
    }
}

/// `{"text":"Success","code":0,"ackId":N}`.
pub fn success_with_ack(ack_id: u64) -> String {
    format!(r#"{{"text":"Success","code":0,"ackId":{ack_id}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_splunks() {
        assert_eq!(SUCCESS.body(), r#"{"text":"Success","code":0}"#);
        assert_eq!(
            success_with_ack(7),
            r#"{"text":"Success","code":0,"ackId":7}"#
        );
        assert_eq!(
            INVALID_DATA_FORMAT.body_at(2),
            r#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#
        );
        assert_eq!(SERVER_BUSY.http.as_u16(), 503);
        assert_eq!(HEALTHY.body(), r#"{"text":"HEC is healthy","code":17}"#);
    }
}
