//! Uploading one file and proving it arrived.
//!
//! 1. Open without following symlinks; it must be a regular file. Note its size and mtime.
//! 2. Read it once: SHA-256 (it goes into the object's metadata, which S3 takes only at the start). A file
//!    below `multipart_threshold` is read whole into memory (under the uploader's memory budget) and that
//!    copy is what is sent; a larger one is hashed with a CRC32C per part, kept for step 4.
//! 3. HEAD the key (for a small file the state file does not know, only after its conditional PUT of
//!    step 4 got 412: the key exists). An object with the same size and sha256 is this file already
//!    uploaded (counts as done, e.g. after a crash between completing and recording it). One that is ours
//!    (below) is replaced by the newer version of the file. Anything else is someone else's content and
//!    is never overwritten: the file fails with a conflict (and is quarantined after `max_attempts`).
//! 4. Below `multipart_threshold`: one PUT (`If-None-Match: *` for a new key). Above: a multipart upload
//!    whose id and every finished part's ETag go to the state file as they happen, so after a crash the same
//!    upload continues with the parts still missing (continued rather than aborted and restarted: recordings
//!    can be GiBs, and on a thin link the parts already sent are hours of bandwidth). Parts are read in
//!    order, at most `part_concurrency` in flight, each under the memory budget and through the bandwidth
//!    limit. Each part's CRC32C must equal the one from step 2 (a hardware CRC costs a fraction of the
//!    second SHA-256 pass it replaces); otherwise the file changed while it was read, the upload is
//!    aborted, and the file is tried again.
//! 5. HEAD again: size, sha256 metadata and ETag must be what was sent; the file must still have the size and
//!    mtime of step 1 (a write while it was read changes one or the other). Only then is the file verified
//!    (and may retention touch it).
//!
//! An object at the key is ours when its ETag is the last this uploader recorded there, or when its
//! metadata names this session and this `server_id`: keys are unique per server and session, so only this
//! uploader writes such an object, and a crash that lost the recorded ETag (the state file is saved within
//! half a second, not per request) must not turn our own object into "foreign content".

use std::fs::File;
use std::io::Read;
use std::num::NonZeroU32;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, MultipartUpload, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::budget::Budget;

use super::state::{Multipart, StateFile};
use super::store::Store;

/// Why a file did not upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The local file cannot be read as a recording.
    #[error("{path}: {cause}")]
    Local {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// The key holds other content.
    #[error("{path}: the object {url} already exists with other content ({detail}); it is left untouched: remove it or change key_template")]
    Conflict {
        /// The file.
        path: PathBuf,
        /// The object.
        url: String,
        /// Sizes and digests.
        detail: String,
    },
    /// The file changed while it was uploaded: tried again, not counted as a failure.
    #[error("{path}: changed while it was uploaded ({detail}); uploading it again")]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// The store refused or failed.
    #[error("{path}: {url}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The object.
        url: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// The object is not what was sent.
    #[error("{path}: {url} does not verify: {detail}")]
    Verify {
        /// The file.
        path: PathBuf,
        /// The object.
        url: String,
        /// What differs.
        detail: String,
    },
}

impl UploadError {
    /// Whether this failure is the session's own and counts towards `max_attempts`. The store being down,
    /// slow, or refusing our credentials is not: such errors are retried without limit (quarantining every
    /// recording because the network was out for an hour would be Teleport's #65895 again).
    pub fn counts(&self) -> bool {
        match self {
            UploadError::Local { .. }
            | UploadError::Conflict { .. }
            | UploadError::Verify { .. } => true,
            UploadError::Changed { .. } => false,
            UploadError::Store { source, .. } => matches!(
                source,
                object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
            ),
        }
    }

    /// A short label for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            UploadError::Local { .. } => "local_file",
            UploadError::Conflict { .. } => "conflict",
            UploadError::Changed { .. } => "changed",
            UploadError::Store { .. } => "store",
            UploadError::Verify { .. } => "verify",
        }
    }
}

/// A verified object.
#[derive(Clone, Debug)]
pub struct Uploaded {
    /// The local file.
    pub path: PathBuf,
    /// Its name (`<sid>.raw`).
    pub file: String,
    /// The full object key.
    pub key: String,
    /// Its URL.
    pub url: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 (hex).
    pub sha256: String,
    /// The object's ETag.
    pub etag: String,
    /// The local file's mtime (ns) when it was read.
    pub mtime_ns: i128,
    /// Bytes sent now (0 when the object was already there; parts sent before a crash not counted).
    pub sent: u64,
    /// Whether it was there already.
    pub already_present: bool,
    /// Whether it replaced an older version of ours.
    pub replaced: bool,
}

/// What goes into the object's metadata besides its digest.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// Session id.
    pub sid: String,
    /// The session's user, when the events file names one.
    pub user: Option<String>,
    /// `server_id`.
    pub server_id: String,
    /// Uploaded without `.done`.
    pub incomplete: bool,
}

/// The settings and shared handles every upload uses.
pub struct Uploader {
    /// The store.
    pub store: Store,
    /// Multipart from this size.
    pub threshold: u64,
    /// Part size for new multipart uploads.
    pub part_size: u64,
    /// Parts in flight per file.
    pub part_concurrency: usize,
    /// The bandwidth limit, in KiB cells.
    pub limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// Largest single wait on the limiter, KiB.
    pub burst_kib: u32,
    /// The state file.
    pub state: Arc<Mutex<StateFile>>,
    /// Whether the store keeps user metadata and a content type (not `file://`).
    pub attributes: bool,
    /// Bodies in memory at once, over all uploads.
    pub budget: Budget,
}

/// A bandwidth limiter of `bytes_per_sec`, and its burst in KiB (a tenth of a second's worth, at least
/// 64 KiB): bytes are let out in small steps, so the rate holds over any window longer than a part.
pub fn limiter(bytes_per_sec: u64) -> (Arc<DefaultDirectRateLimiter>, u32) {
    let kib = (bytes_per_sec / 1024).clamp(1, u32::MAX as u64) as u32;
    let burst = (kib / 10).max(64).min(kib.max(1));
    let q = Quota::per_second(NonZeroU32::new(kib).expect("at least 1"))
        .allow_burst(NonZeroU32::new(burst).expect("at least 1"));
    (Arc::new(RateLimiter::direct(q)), burst)
}

/// The content type of a recording file.
pub fn content_type(file: &str) -> &'static str {
    if file.ends_with(".cast") {
        "application/x-asciicast"
    } else if file.ends_with(".ndjson") {
        "application/x-ndjson"
    } else {
        "application/octet-stream"
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Opens `path` for reading without following a symlink; refuses what is not a regular file.
fn open_regular(path: &Path) -> Result<(File, u64, i128), String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                "is a symlink: recordings are never read through a link".to_string()
            }
            _ => format!("cannot open: {e}"),
        })?;
    let m = f.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !m.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    Ok((f, m.len(), mtime_ns(&m)))
}

/// What the first read of a file gives.
struct FirstRead {
    /// SHA-256 (hex) of its `size` bytes.
    sha256: String,
    /// The whole content, for a file read whole.
    body: Option<Bytes>,
    /// Per part size asked for, the CRC32C of each part.
    crcs: Vec<(u64, Vec<u32>)>,
}

/// Reads the first `size` bytes of `f` once: SHA-256, and either the bytes themselves (`whole`) or the
/// CRC32C of every part for each of `part_sizes`. `None` when the file has fewer bytes.
fn first_read(
    f: &File,
    size: u64,
    whole: bool,
    part_sizes: &[u64],
) -> std::io::Result<Option<FirstRead>> {
    if whole {
        let mut buf = vec![0u8; size as usize];
        let mut at = 0usize;
        while at < buf.len() {
            match f.read_at(&mut buf[at..], at as u64)? {
                0 => return Ok(None),
                n => at += n,
            }
        }
        return Ok(Some(FirstRead {
            sha256: hex::encode(Sha256::digest(&buf)),
            body: Some(Bytes::from(buf)),
            crcs: Vec::new(),
        }));
    }
    let mut h = Sha256::new();
    // Per part size: the CRCs of the parts so far, and the running one.
    let mut crcs: Vec<(u64, Vec<u32>, u32)> =
        part_sizes.iter().map(|&p| (p, Vec::new(), 0)).collect();
    let mut buf = vec![0u8; 256 << 10];
    let mut at = 0u64;
    while at < size {
        let want = ((size - at) as usize).min(buf.len());
        let n = f.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Ok(None);
        }
        let chunk = &buf[..n];
        h.update(chunk);
        for (part, done, crc) in crcs.iter_mut() {
            let mut pos = at;
            let mut rest = chunk;
            while !rest.is_empty() {
                let to_end = (*part - pos % *part) as usize;
                let (now, later) = rest.split_at(to_end.min(rest.len()));
                *crc = crc32c::crc32c_append(*crc, now);
                pos += now.len() as u64;
                rest = later;
                if pos % *part == 0 {
                    done.push(std::mem::take(crc));
                }
            }
        }
        at += n as u64;
    }
    Ok(Some(FirstRead {
        sha256: hex::encode(h.finalize()),
        body: None,
        crcs: crcs
            .into_iter()
            .map(|(p, mut done, crc)| {
                if size % p != 0 {
                    done.push(crc);
                }
                (p, done)
            })
            .collect(),
    }))
}

/// The CRCs of `first_read` for `part_size`; an empty list (so that every part "differs", and the file is
/// read again from the start) if that part size was not asked for or the count is not `parts`.
fn part_crcs(crcs: &[(u64, Vec<u32>)], part_size: u64, parts: usize) -> Vec<u32> {
    crcs.iter()
        .find(|(p, c)| *p == part_size && c.len() == parts)
        .map(|(_, c)| c.clone())
        .unwrap_or_default()
}

/// Reads exactly `len` bytes at `offset`.
fn read_exact_at(f: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking read does not panic")
}

/// Logs and counts a failed save of the state file.
pub fn log_save(r: Result<(), super::state::StateError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot save the uploader state");
        metrics::counter!("auditrail_uploader_state_errors_total").increment(1);
    }
}

/// The remote object, when there is one.
struct Remote {
    size: u64,
    etag: Option<String>,
    sha256: Option<String>,
    /// The `sid` and `server_id` metadata.
    sid: Option<String>,
    server_id: Option<String>,
}

impl Uploader {
    /// Waits until `bytes` may be sent.
    pub async fn throttle(&self, bytes: u64) {
        let Some(l) = &self.limiter else { return };
        let mut kib = bytes.div_ceil(1024);
        while kib > 0 {
            let step = kib.min(self.burst_kib as u64) as u32;
            let _ = l
                .until_n_ready(NonZeroU32::new(step).expect("step > 0"))
                .await;
            kib -= step as u64;
        }
    }

    /// The state file, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the state now (what must be on disk before the next request); a failure to save is logged
    /// (the upload goes on; a crash then repeats some work, which the conditional PUT and the HEAD after
    /// a 412 make harmless).
    fn save_now(&self, st: &mut StateFile) {
        log_save(st.save());
    }

    /// Saves the state within [`super::state::SAVE_EVERY`] (progress a crash may cost, never an object).
    fn save_soon(&self, st: &mut StateFile) {
        log_save(st.save_soon());
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<Remote>, object_store::Error> {
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.object.get_opts(path, opts).await {
            Ok(r) => {
                let meta = |k: &'static str| {
                    r.attributes
                        .get(&Attribute::Metadata(k.into()))
                        .map(|v| v.to_string())
                };
                Ok(Some(Remote {
                    size: r.meta.size,
                    etag: r.meta.e_tag.clone(),
                    sha256: meta("sha256"),
                    sid: meta("sid"),
                    server_id: meta("server_id"),
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn attributes(&self, file: &str, sha256: &str, meta: &Meta) -> Attributes {
        let mut a = Attributes::new();
        if !self.attributes {
            return a;
        }
        a.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type(file)),
        );
        let mut m = |k: &'static str, v: String| {
            a.insert(Attribute::Metadata(k.into()), AttributeValue::from(v));
        };
        m("sha256", sha256.to_string());
        m("sid", meta.sid.clone());
        m("server_id", meta.server_id.clone());
        if let Some(u) = &meta.user {
            // Header values must be visible ASCII: a user name that is not is left out rather than mangled.
            if u.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                m("user", u.clone());
            }
        }
        m("incomplete", meta.incomplete.to_string());
        a
    }

    /// Uploads the file at `path` (named `file`) to `key` (full), verified; see the module doc.
    pub async fn upload(
        &self,
        path: &Path,
        file: &str,
        key: &str,
        meta: &Meta,
    ) -> Result<Uploaded, UploadError> {
        let url = self.store.url_of(key);
        let local = |cause: String| UploadError::Local {
            path: path.to_path_buf(),
            cause,
        };
        let store_err = |source: object_store::Error| UploadError::Store {
            path: path.to_path_buf(),
            url: url.clone(),
            source,
        };
        let p = path.to_path_buf();
        let (f, size, mtime) = blocking(move || open_regular(&p)).await.map_err(local)?;
        let f = Arc::new(f);
        let opath = ObjectPath::parse(key).map_err(|e| store_err(e.into()))?;
        let path_key = path.to_string_lossy().into_owned();
        let (ours, stale_upload) = {
            let st = self.lock();
            let fs = st.state.files.get(&path_key);
            (
                fs.filter(|s| s.key == key).and_then(|s| s.our_etag.clone()),
                fs.and_then(|s| s.upload.clone()),
            )
        };
        // A small file is read whole, and stays in memory until its PUT is done: it holds its size of the
        // budget from before the read. A large one is read here only for its digests; its parts take the
        // budget as they are read again to be sent.
        let whole = size < self.threshold;
        let held = if whole {
            Some(self.budget.hold(size).await)
        } else {
            None
        };
        let mut part_sizes = vec![self.part_size];
        if let Some(u) = stale_upload
            .as_ref()
            .filter(|u| u.part_size != self.part_size)
        {
            part_sizes.push(u.part_size);
        }
        let f2 = f.clone();
        let first = blocking(move || first_read(&f2, size, whole, &part_sizes))
            .await
            .map_err(|e| local(format!("cannot read: {e}")))?
            .ok_or_else(|| UploadError::Changed {
                path: path.to_path_buf(),
                detail: "it shrank while it was read".into(),
            })?;
        let sha256 = first.sha256.clone();
        // A small file the state file knows nothing of goes straight to a conditional PUT
        // (`If-None-Match: *`): S3 answers 412 if the key exists, and only then is the HEAD needed to tell
        // this file already uploaded from foreign content. That saves a round trip per new file; multipart
        // uploads keep the HEAD first, since their completion is not conditional here.
        let mut probe = !(size < self.threshold && ours.is_none() && stale_upload.is_none());
        let (etag, sent, replaced) = loop {
            let remote = if probe {
                self.head(&opath).await.map_err(store_err)?
            } else {
                None
            };
            let mut replaced = false;
            if let Some(r) = &remote {
                if r.size == size
                    && (r.sha256.as_deref() == Some(sha256.as_str())
                        || !self.attributes && r.etag.is_some() && r.etag == ours)
                {
                    // Already there (uploaded before a crash let us record it): clean up a leftover upload.
                    if let (Some(u), Some(mp)) = (&stale_upload, &self.store.multipart) {
                        let _ = mp.abort_multipart(&opath, &u.id).await;
                    }
                    let etag = r.etag.clone().unwrap_or_default();
                    {
                        let mut st = self.lock();
                        let e = st.state.files.entry(path_key.clone()).or_default();
                        e.key = key.to_string();
                        e.upload = None;
                        e.our_etag = Some(etag.clone());
                        self.save_soon(&mut st);
                    }
                    return self
                        .verify(
                            path, file, key, &url, &opath, size, mtime, &sha256, &etag, 0, true,
                            false,
                        )
                        .await;
                }
                let named_ours = self.attributes
                    && r.sid.as_deref() == Some(meta.sid.as_str())
                    && r.server_id.as_deref() == Some(meta.server_id.as_str());
                if r.etag.is_some() && r.etag == ours || named_ours {
                    replaced = true;
                } else {
                    return Err(UploadError::Conflict {
                    path: path.to_path_buf(),
                    url: url.clone(),
                    detail: format!(
                        "the object has {} bytes and sha256 {}, the file {size} bytes and sha256 {sha256}",
                        r.size,
                        r.sha256.as_deref().unwrap_or("(none recorded)")
                    ),
                });
                }
            }
            let attrs = self.attributes(file, &sha256, meta);
            let (etag, sent) = if size < self.threshold {
                let bytes = first.body.clone().expect("a small file is read whole");
                self.throttle(size).await;
                let opts = PutOptions {
                    mode: if replaced {
                        PutMode::Overwrite
                    } else {
                        PutMode::Create
                    },
                    attributes: attrs,
                    ..PutOptions::default()
                };
                let r = match self
                    .store
                    .object
                    .put_opts(&opath, PutPayload::from(bytes), opts)
                    .await
                {
                    Ok(r) => r,
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) if !probe => {
                        // The key exists: HEAD it and decide as for a known key.
                        probe = true;
                        continue;
                    }
                    Err(e) => return Err(store_err(e)),
                };
                (r.e_tag.unwrap_or_default(), size)
            } else {
                match &self.store.multipart {
                    Some(mp) => {
                        self.multipart(
                            mp.clone(),
                            path,
                            key,
                            &url,
                            &opath,
                            f.clone(),
                            size,
                            &sha256,
                            &first.crcs,
                            attrs,
                            stale_upload,
                        )
                        .await?
                    }
                    None => {
                        self.streamed(path, &url, &opath, f.clone(), size, &first.crcs, attrs)
                            .await?
                    }
                }
            };
            break (etag, sent, replaced);
        };
        drop(held);
        {
            let mut st = self.lock();
            let e = st.state.files.entry(path_key).or_default();
            e.key = key.to_string();
            e.upload = None;
            e.our_etag = Some(etag.clone());
            self.save_soon(&mut st);
        }
        self.verify(
            path, file, key, &url, &opath, size, mtime, &sha256, &etag, sent, false, replaced,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify(
        &self,
        path: &Path,
        file: &str,
        key: &str,
        url: &str,
        opath: &ObjectPath,
        size: u64,
        mtime: i128,
        sha256: &str,
        etag: &str,
        sent: u64,
        already_present: bool,
        replaced: bool,
    ) -> Result<Uploaded, UploadError> {
        let bad = |detail: String| UploadError::Verify {
            path: path.to_path_buf(),
            url: url.to_string(),
            detail,
        };
        let r = self
            .head(opath)
            .await
            .map_err(|source| UploadError::Store {
                path: path.to_path_buf(),
                url: url.to_string(),
                source,
            })?
            .ok_or_else(|| bad("the object is not there after its upload".into()))?;
        if r.size != size {
            return Err(bad(format!("it has {} bytes, the file {size}", r.size)));
        }
        if self.attributes && r.sha256.as_deref() != Some(sha256) {
            return Err(bad(format!(
                "its sha256 metadata is {}, the file's {sha256}",
                r.sha256.as_deref().unwrap_or("missing")
            )));
        }
        if !etag.is_empty() && r.etag.as_deref().is_some_and(|e| e != etag) {
            return Err(bad(format!(
                "its ETag is {}, the upload's {etag}",
                r.etag.as_deref().unwrap_or("")
            )));
        }
        let m = std::fs::symlink_metadata(path).map_err(|e| UploadError::Changed {
            path: path.to_path_buf(),
            detail: format!("it can no longer be read: {e}"),
        })?;
        if m.len() != size || mtime_ns(&m) != mtime {
            return Err(UploadError::Changed {
                path: path.to_path_buf(),
                detail: format!("{size} bytes when read, {} now, or a new mtime", m.len()),
            });
        }
        Ok(Uploaded {
            path: path.to_path_buf(),
            file: file.to_string(),
            key: key.to_string(),
            url: url.to_string(),
            size,
            sha256: sha256.to_string(),
            etag: r.etag.unwrap_or_else(|| etag.to_string()),
            mtime_ns: mtime,
            sent,
            already_present,
            replaced,
        })
    }

    /// A resumable multipart upload; returns (ETag, bytes sent now).
    #[allow(clippy::too_many_arguments)]
    async fn multipart(
        &self,
        mp: Arc<dyn MultipartStore>,
        path: &Path,
        key: &str,
        url: &str,
        opath: &ObjectPath,
        f: Arc<File>,
        size: u64,
        sha256: &str,
        crcs: &[(u64, Vec<u32>)],
        attrs: Attributes,
        previous: Option<Multipart>,
    ) -> Result<(String, u64), UploadError> {
        let store_err = |source: object_store::Error| UploadError::Store {
            path: path.to_path_buf(),
            url: url.to_string(),
            source,
        };
        let path_key = path.to_string_lossy().into_owned();
        // Continue the recorded upload when it was for exactly this content; else abort it (it is ours and
        // would otherwise linger, billed, until a lifecycle rule removes it) and start over.
        let mut upload = match previous {
            Some(u)
                if u.size == size
                    && u.sha256 == sha256
                    && u.part_size >= super::config::MIN_PART_SIZE =>
            {
                tracing::info!(file = %path.display(), upload_id = %u.id, parts_done = u.parts.iter().filter(|p| p.is_some()).count(), "continuing the multipart upload");
                u
            }
            other => {
                if let Some(old) = other {
                    let _ = mp.abort_multipart(opath, &old.id).await;
                }
                let id = mp
                    .create_multipart_opts(
                        opath,
                        PutMultipartOptions {
                            attributes: attrs,
                            ..PutMultipartOptions::default()
                        },
                    )
                    .await
                    .map_err(store_err)?;
                let n = size.div_ceil(self.part_size).max(1) as usize;
                let u = Multipart {
                    id,
                    part_size: self.part_size,
                    size,
                    sha256: sha256.to_string(),
                    parts: vec![None; n],
                };
                let mut st = self.lock();
                let e = st.state.files.entry(path_key.clone()).or_default();
                e.key = key.to_string();
                e.upload = Some(u.clone());
                // Before the first part: a crash must find the id, to continue or abort it.
                self.save_now(&mut st);
                u
            }
        };
        let part_size = upload.part_size;
        let n = upload.parts.len();
        let crcs = part_crcs(crcs, part_size, n);
        let mut tasks: JoinSet<(usize, Result<PartId, object_store::Error>, u64)> = JoinSet::new();
        let mut changed = None;
        let mut sent = 0u64;
        let mut failure: Option<object_store::Error> = None;
        let record = |i: usize, etag: String| {
            let mut st = self.lock();
            if let Some(u) = st
                .state
                .files
                .get_mut(&path_key)
                .and_then(|e| e.upload.as_mut())
            {
                if let Some(slot) = u.parts.get_mut(i) {
                    *slot = Some(etag);
                }
            }
            self.save_soon(&mut st);
        };
        for i in 0..n {
            // A part sent before (this run or before a crash) is not read again.
            if upload.parts[i].is_some() {
                continue;
            }
            let offset = i as u64 * part_size;
            let len = part_size.min(size - offset) as usize;
            while tasks.len() >= self.part_concurrency {
                let (j, r, b) = tasks
                    .join_next()
                    .await
                    .expect("not empty")
                    .expect("a part task does not panic");
                match r {
                    Ok(p) => {
                        sent += b;
                        upload.parts[j] = Some(p.content_id.clone());
                        record(j, p.content_id);
                    }
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            if failure.is_some() {
                break;
            }
            let held = self.budget.hold(len as u64).await;
            let f2 = f.clone();
            let bytes = blocking(move || read_exact_at(&f2, offset, len))
                .await
                .map_err(|e| UploadError::Local {
                    path: path.to_path_buf(),
                    cause: format!("cannot read at byte {offset}: {e}"),
                })?;
            if crcs.get(i) != Some(&crc32c::crc32c(&bytes)) {
                changed = Some(format!(
                    "part {} (from byte {offset}) differs from its first read",
                    i + 1
                ));
                break;
            }
            self.throttle(len as u64).await;
            let (mp2, op, id) = (mp.clone(), opath.clone(), upload.id.clone());
            tasks.spawn(async move {
                let r = mp2.put_part(&op, &id, i, PutPayload::from(bytes)).await;
                drop(held);
                (i, r, len as u64)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (j, r, b) = done.expect("a part task does not panic");
            match r {
                Ok(p) => {
                    sent += b;
                    upload.parts[j] = Some(p.content_id.clone());
                    record(j, p.content_id);
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            if matches!(e, object_store::Error::NotFound { .. }) {
                // The store no longer knows the upload id (aborted by a lifecycle rule, or a store that was
                // reset): start over next time.
                let mut st = self.lock();
                if let Some(entry) = st.state.files.get_mut(&path_key) {
                    entry.upload = None;
                }
                self.save_soon(&mut st);
            }
            return Err(store_err(e));
        }
        if let Some(detail) = changed {
            let _ = mp.abort_multipart(opath, &upload.id).await;
            let mut st = self.lock();
            if let Some(entry) = st.state.files.get_mut(&path_key) {
                entry.upload = None;
            }
            self.save_soon(&mut st);
            return Err(UploadError::Changed {
                path: path.to_path_buf(),
                detail,
            });
        }
        let parts: Vec<PartId> = upload
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone().expect("every part is done"),
            })
            .collect();
        let r = match mp.complete_multipart(opath, &upload.id, parts).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, object_store::Error::NotFound { .. }) {
                    let mut st = self.lock();
                    if let Some(entry) = st.state.files.get_mut(&path_key) {
                        entry.upload = None;
                    }
                    self.save_soon(&mut st);
                }
                return Err(store_err(e));
            }
        };
        Ok((r.e_tag.unwrap_or_default(), sent))
    }

    /// A large file to a store without resumable multipart (`file://`): one streamed upload.
    #[allow(clippy::too_many_arguments)]
    async fn streamed(
        &self,
        path: &Path,
        url: &str,
        opath: &ObjectPath,
        f: Arc<File>,
        size: u64,
        crcs: &[(u64, Vec<u32>)],
        attrs: Attributes,
    ) -> Result<(String, u64), UploadError> {
        let store_err = |source: object_store::Error| UploadError::Store {
            path: path.to_path_buf(),
            url: url.to_string(),
            source,
        };
        let mut up = self
            .store
            .object
            .put_multipart_opts(
                opath,
                PutMultipartOptions {
                    attributes: attrs,
                    ..PutMultipartOptions::default()
                },
            )
            .await
            .map_err(store_err)?;
        let crcs = part_crcs(crcs, self.part_size, size.div_ceil(self.part_size) as usize);
        let mut offset = 0u64;
        while offset < size {
            let len = self.part_size.min(size - offset) as usize;
            let held = self.budget.hold(len as u64).await;
            let f2 = f.clone();
            let bytes = match blocking(move || read_exact_at(&f2, offset, len)).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = up.abort().await;
                    return Err(UploadError::Local {
                        path: path.to_path_buf(),
                        cause: format!("cannot read at byte {offset}: {e}"),
                    });
                }
            };
            let i = (offset / self.part_size) as usize;
            if crcs.get(i) != Some(&crc32c::crc32c(&bytes)) {
                let _ = up.abort().await;
                return Err(UploadError::Changed {
                    path: path.to_path_buf(),
                    detail: format!(
                        "part {} (from byte {offset}) differs from its first read",
                        i + 1
                    ),
                });
            }
            self.throttle(len as u64).await;
            if let Err(e) = up.put_part(PutPayload::from(bytes)).await {
                let _ = up.abort().await;
                return Err(store_err(e));
            }
            drop(held);
            offset += len as u64;
        }
        let r = up.complete().await.map_err(store_err)?;
        Ok((r.e_tag.unwrap_or_default(), size))
    }
}

/// Reads the session's user from the first `session.start` in its events file (first 64 KiB only).
pub fn user_from_events(path: &Path) -> Option<String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    f.take(64 << 10).read_to_end(&mut buf).ok()?;
    buf.split(|&b| b == b'\n').find_map(|line| {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        (v.get("event")?.as_str()? == "session.start")
            .then(|| v.get("user")?.as_str().map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("f"), b"abc").unwrap();
        std::os::unix::fs::symlink(d.join("f"), d.join("l")).unwrap();
        std::fs::create_dir(d.join("dir")).unwrap();
        let (f, size, _) = open_regular(&d.join("f")).unwrap();
        assert_eq!(size, 3);
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let whole = first_read(&f, 3, true, &[]).unwrap().unwrap();
        assert_eq!(whole.sha256, abc);
        assert_eq!(whole.body.as_deref(), Some(&b"abc"[..]));
        assert_eq!(first_read(&f, 3, false, &[8]).unwrap().unwrap().sha256, abc);
        assert!(
            first_read(&f, 4, true, &[]).unwrap().is_none(),
            "shorter than expected"
        );
        assert!(
            first_read(&f, 4, false, &[8]).unwrap().is_none(),
            "shorter than expected"
        );
        assert!(open_regular(&d.join("l")).unwrap_err().contains("symlink"));
        assert!(open_regular(&d.join("dir"))
            .unwrap_err()
            .contains("regular"));
        assert!(open_regular(&d.join("missing"))
            .unwrap_err()
            .contains("cannot open"));
    }

    #[test]
    fn the_first_read_gives_each_parts_crc_for_every_part_size_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // Not a multiple of the read buffer (256 KiB) nor of either part size.
        let data: Vec<u8> = (0..(700 << 10) + 13)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let (f, size, _) = open_regular(&p).unwrap();
        let sizes = [100 << 10, 300 << 10, 700 << 10];
        let r = first_read(&f, size, false, &sizes).unwrap().unwrap();
        assert_eq!(r.sha256, hex::encode(Sha256::digest(&data)));
        assert!(r.body.is_none());
        for (part, crcs) in &r.crcs {
            let want: Vec<u32> = data.chunks(*part as usize).map(crc32c::crc32c).collect();
            assert_eq!(crcs, &want, "part size {part}");
            assert_eq!(part_crcs(&r.crcs, *part, want.len()), want);
        }
        // Exactly one part of the whole size plus 13 bytes: two parts, the second short.
        assert_eq!(r.crcs[2].1.len(), 2);
        // A part size not asked for, or a different count, gives no CRCs: every part then "differs".
        assert!(part_crcs(&r.crcs, 200 << 10, 4).is_empty());
        assert!(part_crcs(&r.crcs, 100 << 10, 3).is_empty());
        // A file that is an exact multiple of the part size has no empty last part.
        let (f, _, _) = open_regular(&p).unwrap();
        let r = first_read(&f, 600 << 10, false, &[300 << 10])
            .unwrap()
            .unwrap();
        assert_eq!(r.crcs[0].1.len(), 2);
    }

    #[test]
    fn what_counts_towards_quarantine() {
        let p = PathBuf::from("/r/x.raw");
        assert!(UploadError::Local {
            path: p.clone(),
            cause: "x".into()
        }
        .counts());
        assert!(UploadError::Conflict {
            path: p.clone(),
            url: "u".into(),
            detail: "d".into()
        }
        .counts());
        assert!(!UploadError::Changed {
            path: p.clone(),
            detail: "d".into()
        }
        .counts());
        let down = object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        };
        assert!(!UploadError::Store {
            path: p,
            url: "u".into(),
            source: down
        }
        .counts());
    }

    #[tokio::test]
    async fn the_limiter_holds_the_rate() {
        let (l, burst) = limiter(1 << 20);
        let u = Uploader {
            store: super::super::store::Store {
                object: Arc::new(object_store::memory::InMemory::new()),
                multipart: None,
                prefix: String::new(),
                base: "memory://".into(),
            },
            threshold: 16 << 20,
            part_size: 8 << 20,
            part_concurrency: 1,
            limiter: Some(l),
            burst_kib: burst,
            state: Arc::new(Mutex::new(
                StateFile::open(tempfile::tempdir().unwrap().path()).unwrap(),
            )),
            attributes: true,
            budget: Budget::new(64 << 20),
        };
        let t = std::time::Instant::now();
        // The burst goes at once; the rest at 1 MiB/s: 512 KiB take about half a second.
        u.throttle(512 << 10).await;
        let e = t.elapsed().as_secs_f64();
        assert!((0.35..0.8).contains(&e), "{e}");
    }

    #[test]
    fn the_user_comes_from_session_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.events.ndjson");
        std::fs::write(
            &p,
            b"{\"event\":\"x\"}\nnot json\n{\"event\":\"session.start\",\"user\":\"alice\"}\n",
        )
        .unwrap();
        assert_eq!(user_from_events(&p).as_deref(), Some("alice"));
        assert_eq!(user_from_events(&dir.path().join("none")), None);
    }
}
