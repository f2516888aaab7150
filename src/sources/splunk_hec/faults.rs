//! Test-only fault switch of the splunk_hec source, compiled only with the `test-faults` feature (the test
//! binary scripts/test.sh builds beside the plain one): it lets end-to-end tests make a receiving agent answer
//! "Server is busy" for a while, or hold every ackId `false`, without a mock.
//!
//! `AUDITRAIL_TEST_FAULTS_FILE` names a file read on each request; each word in it turns a fault on while it is
//! there: `busy` (every `/event`, `/raw` and `/ack` request is answered `{"text":"Server is busy","code":9}`,
//! 503, and health is unhealthy) and `hold_acks` (acks are never confirmed). Without the feature both
//! functions are `false` constants, so the shipping binary has neither the switch nor the variable's name.

/// The faults switched on now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Answer "Server is busy".
    pub busy: bool,
    /// Never confirm an ackId.
    pub hold_acks: bool,
}

/// Reads the switch.
#[cfg(feature = "test-faults")]
pub fn now() -> Faults {
    static PATH: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(path) =
        PATH.get_or_init(|| std::env::var_os("AUDITRAIL_TEST_FAULTS_FILE").map(Into::into))
    else {
        return Faults::default();
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let has = |w: &str| text.split_whitespace().any(|t| t == w);
    Faults {
        busy: has("busy"),
        hold_acks: has("hold_acks"),
    }
}

/// Reads the switch: off in a build without `test-faults`.
#[cfg(not(feature = "test-faults"))]
#[inline(always)]
pub fn now() -> Faults {
    Faults::default()
}
