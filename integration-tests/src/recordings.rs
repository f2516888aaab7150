//! Reading `auditrail verify --json --recordings` reports: the parts the recording tests look up.

use serde_json::Value;

/// The report's entry for recording `sid` (panics naming the report when there is none).
pub fn recording<'a>(report: &'a Value, sid: &str) -> &'a Value {
    report["recordings"]["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["sid"] == sid)
        .unwrap_or_else(|| panic!("no recording {sid} in {report}"))
}

/// A recording entry's verdict on one of its files: `"raw"` or `"cast"`.
pub fn file<'a>(rec: &'a Value, which: &str) -> &'a Value {
    rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == which)
        .unwrap_or_else(|| panic!("no {which} in {rec}"))
}
