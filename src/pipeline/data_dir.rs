//! The check of `data_dir` at start: the agent keeps its buffers, checkpoints, chain state and dead letters
//! there, so a directory other users may write to lets them swap or delete that state (replace a checkpoint,
//! plant a segment, remove the chain state to force a reset). The agent does not change a directory the operator
//! made; it says so, loudly and measurably: a warning with the path and mode, and the gauge
//! `auditrail_data_dir_group_or_world_writable` (1 when it is, 0 when not) for fleet-wide alerting.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use auditrail_core::private_fs;

/// Warns (log and gauge) when `dir` is group- or world-writable.
pub(super) fn check_mode(dir: &Path) {
    let gauge = metrics::gauge!("auditrail_data_dir_group_or_world_writable");
    let mode = match std::fs::metadata(dir) {
        Ok(m) => m.mode() & 0o7777,
        Err(e) => {
            tracing::warn!(data_dir = %dir.display(), error = %e, "cannot read the mode of data_dir");
            return;
        }
    };
    if private_fs::group_or_world_writable(mode) {
        gauge.set(1.0);
        tracing::warn!(
            data_dir = %dir.display(),
            mode = %format!("{mode:04o}"),
            "data_dir is writable by its group or by everyone: other users could replace or delete the agent's buffers, checkpoints and chain state; make it 0700 (chmod 0700 {})",
            dir.display()
        );
    } else {
        gauge.set(0.0);
    }
}
