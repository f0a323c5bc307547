//! The file store: firmware images and configuration files an organization uploads and Roost
//! serves to its devices (`download` tasks naming `"file"`).
//!
//! Contents live behind [`FileStorage`], four calls an object store can answer as well as a
//! directory: the data directory's `files/` ([`LocalFiles`]) is the one backend today. Uploads
//! are streamed to the backend as they arrive, measured and hashed on the way, so an image of
//! any size never sits in memory. The rules (names, file types, byte ranges) are plain functions
//! here; the routes are `api/files.rs` and `cwmp/files.rs`, the rows `store/files.rs`.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

/// Why an upload stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the file is larger than the {0} bytes a file may have")]
    TooLarge(u64),
    #[error("the upload was cut short: {0}")]
    Body(String),
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// Bytes as they arrive from a client.
pub type Incoming<'a> = BoxStream<'a, Result<Bytes, String>>;

/// Bytes as a backend hands them out.
pub type Outgoing = BoxStream<'static, std::io::Result<Bytes>>;

/// Where file contents live, by key (Roost makes the keys: letters, digits and `-`).
pub trait FileStorage: Send + Sync {
    /// Stores `body` under `key` as it arrives, at most `max` bytes. On any error nothing is
    /// left under `key`.
    fn write<'a>(&'a self, key: &'a str, body: Incoming<'a>, max: u64) -> BoxFuture<'a, Result<Written, WriteError>>;

    /// The bytes of `range` of what is stored under `key`.
    fn read<'a>(&'a self, key: &'a str, range: ByteRange) -> BoxFuture<'a, anyhow::Result<Outgoing>>;

    /// Removes what is stored under `key`; removing nothing is no error.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Files in a directory, one per key; an upload is written beside its final name and renamed
/// into place once complete.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    dir: PathBuf,
}

/// What a read hands out at a time.
const CHUNK: usize = 64 * 1024;

/// Uploads that may stream at once, per server.
pub const CONCURRENT_UPLOADS: usize = 4;

/// How long an upload may go without sending a byte before it is given up.
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// What Roost still reads, and throws away, of an upload it refused as too large, so that a
/// client still sending gets the answer instead of a connection reset (a socket closed on
/// unread bytes resets). Past either bound the connection is closed all the same.
pub const REFUSED_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
pub const REFUSED_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops what is left of `body`, up to `max_bytes` or `max_time`, whichever ends first.
/// Returns the bytes dropped.
pub async fn discard<S>(body: &mut S, max_bytes: u64, max_time: std::time::Duration) -> u64
where
    S: futures::Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut dropped = 0u64;
    let drain = async {
        while dropped < max_bytes {
            match body.next().await {
                Some(Ok(chunk)) => dropped += chunk.len() as u64,
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(max_time, drain).await;
    dropped
}

impl LocalFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "not a storage key: {key:?}"
        );
        Ok(self.dir.join(key))
    }

    async fn write_to(&self, key: &str, mut body: Incoming<'_>, max: u64) -> Result<Written, WriteError> {
        let path = self.path(key)?;
        tokio::fs::create_dir_all(&self.dir).await.with_context(|| format!("creating {}", self.dir.display()))?;
        let partial = path.with_extension("partial");
        let mut file =
            tokio::fs::File::create(&partial).await.with_context(|| format!("creating {}", partial.display()))?;
        let written: Result<Written, WriteError> = async {
            let (mut size, mut hasher) = (0u64, Sha256::new());
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(WriteError::Body)?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(WriteError::TooLarge(max));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.context("writing an upload")?;
            }
            file.flush().await.context("writing an upload")?;
            file.sync_all().await.context("writing an upload")?;
            Ok(Written { size, sha256: hex::encode(hasher.finalize()) })
        }
        .await;
        drop(file);
        match written {
            Ok(written) => {
                tokio::fs::rename(&partial, &path).await.with_context(|| format!("storing {}", path.display()))?;
                Ok(written)
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(error)
            }
        }
    }

    async fn read_from(&self, key: &str, range: ByteRange) -> anyhow::Result<Outgoing> {
        let path = self.path(key)?;
        let mut file = tokio::fs::File::open(&path).await.with_context(|| format!("opening {}", path.display()))?;
        file.seek(std::io::SeekFrom::Start(range.start)).await.context("seeking in a stored file")?;
        let chunks = futures::stream::unfold((file, range.len()), |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buffer = vec![0u8; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
            match file.read(&mut buffer).await {
                Ok(0) => {
                    let short = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the stored file is shorter");
                    Some((Err(short), (file, 0)))
                }
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), (file, left - n as u64)))
                }
                Err(error) => Some((Err(error), (file, 0))),
            }
        });
        Ok(chunks.boxed())
    }
}

impl FileStorage for LocalFiles {
    fn write<'a>(&'a self, key: &'a str, body: Incoming<'a>, max: u64) -> BoxFuture<'a, Result<Written, WriteError>> {
        self.write_to(key, body, max).boxed()
    }

    fn read<'a>(&'a self, key: &'a str, range: ByteRange) -> BoxFuture<'a, anyhow::Result<Outgoing>> {
        self.read_from(key, range).boxed()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(error).with_context(|| format!("removing {}", path.display()))
                }
                _ => Ok(()),
            }
        }
        .boxed()
    }
}

/// Bytes `start` to `end` of a file, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The whole of a file of `size` bytes (`None`: an empty file has no bytes to range over).
    pub fn whole(size: u64) -> Option<Self> {
        (size > 0).then(|| Self { start: 0, end: size - 1 })
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never: a range holds at least its first byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a request's `Range` header asks of a file (RFC 9110 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one the server may ignore (another unit, several ranges, bad syntax): the
    /// whole file, 200.
    Whole,
    /// One satisfiable range: 206.
    Part(ByteRange),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// The answer to a `Range` header for a file of `size` bytes. One range is served (a device
/// resuming a download asks for the rest); several are answered with the whole file, which
/// the RFC allows.
pub fn range_request(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeRequest::Whole };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeRequest::Whole };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(suffix)) => match suffix {
            0 => RangeRequest::Unsatisfiable,
            _ if size == 0 => RangeRequest::Unsatisfiable,
            _ => RangeRequest::Part(ByteRange { start: size.saturating_sub(suffix), end: size - 1 }),
        },
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            match end {
                Some(end) if end < start => RangeRequest::Whole,
                Some(end) => RangeRequest::Part(ByteRange { start, end: end.min(size - 1) }),
                None => RangeRequest::Part(ByteRange { start, end: size - 1 }),
            }
        }
        _ => RangeRequest::Whole,
    }
}

/// A file's name: what operators know it by, unique in its organization. It becomes part of
/// no path (contents are stored by key), but is shown and may be given to devices.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("name: 1 to 255 bytes".into());
    }
    if name.chars().any(|c| c.is_control() || c == '/' || c == '\\') || name == "." || name == ".." {
        return Err("name: no control characters, no / or \\, not . or ..".into());
    }
    Ok(())
}

/// The URL a device downloads a stored file from: `base` (where the device reaches this server),
/// the download's token, then the file's name, since some firmware checks the name (its
/// extension, its model prefix) before it flashes an image.
pub fn device_url(base: &str, token: &str, name: &str) -> String {
    let mut url = format!("{base}{}{token}/", crate::api::files::DEVICE_PATH);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// The file type of an upload that names none.
pub const DEFAULT_FILE_TYPE: &str = "1 Firmware Upgrade Image";

/// The CWMP file types a device may be given in a Download (TR-069 A.3.2.8): `1 Firmware Upgrade
/// Image`, `2 Web Content`, `3 Vendor Configuration File`, `4 Tone File`, `5 Ringer File`,
/// `6 Stored Firmware Image`, and a vendor's own `X <OUI> <name>`.
pub fn check_file_type(file_type: &str) -> Result<(), String> {
    const STANDARD: [&str; 6] = [
        "1 Firmware Upgrade Image",
        "2 Web Content",
        "3 Vendor Configuration File",
        "4 Tone File",
        "5 Ringer File",
        "6 Stored Firmware Image",
    ];
    if STANDARD.contains(&file_type) {
        return Ok(());
    }
    let vendor = file_type.strip_prefix("X ").and_then(|rest| rest.split_once(' '));
    match vendor {
        Some((oui, name))
            if oui.len() == 6
                && oui.bytes().all(|b| b.is_ascii_hexdigit())
                && !name.trim().is_empty()
                && file_type.len() <= 64
                && !file_type.chars().any(char::is_control) =>
        {
            Ok(())
        }
        _ => Err(format!("file_type: one of {}, or `X <OUI> <name>` (TR-069 A.3.2.8)", STANDARD.join(", "))),
    }
}

/// An optional label of a file (`oui`, `product_class`, `version`): at most 64 bytes, no
/// control characters; an OUI is six hex digits.
pub fn check_label(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        return Err(format!("{field}: 1 to 64 bytes, no control characters"));
    }
    if field == "oui" && !(value.len() == 6 && value.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err("oui: six hex digits (the device's ManufacturerOUI)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_url_ends_with_the_file_name_escaped() {
        assert_eq!(
            device_url("http://acs:7547", "tok", "HG8245H V3R017.bin"),
            "http://acs:7547/files/tok/HG8245H%20V3R017.bin"
        );
        assert_eq!(device_url("http://acs", "t", "fw-2.1_x~.img"), "http://acs/files/t/fw-2.1_x~.img");
    }

    fn part(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Part(ByteRange { start, end })
    }

    #[test]
    fn one_range_is_served_and_the_rest_is_the_whole_file() {
        let size = 1000;
        assert_eq!(range_request(None, size), RangeRequest::Whole);
        assert_eq!(range_request(Some("bytes=0-99"), size), part(0, 99));
        assert_eq!(range_request(Some("bytes=500-"), size), part(500, 999), "a resumed download");
        assert_eq!(range_request(Some("bytes=-100"), size), part(900, 999));
        assert_eq!(range_request(Some("bytes=-5000"), size), part(0, 999), "more than the file: all of it");
        assert_eq!(range_request(Some("bytes=900-5000"), size), part(900, 999), "the end clamped");
        assert_eq!(range_request(Some("bytes=999-999"), size), part(999, 999));
        assert_eq!(range_request(Some("bytes=1000-"), size), RangeRequest::Unsatisfiable);
        assert_eq!(range_request(Some("bytes=1000-2000"), size), RangeRequest::Unsatisfiable);
        assert_eq!(range_request(Some("bytes=-0"), size), RangeRequest::Unsatisfiable);
        assert_eq!(range_request(Some("bytes=0-"), 0), RangeRequest::Unsatisfiable, "an empty file");
        // What a server may ignore: answered with the whole file.
        for ignored in ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=a-b", "bytes=", "bytes=-", "0-1"] {
            assert_eq!(range_request(Some(ignored), size), RangeRequest::Whole, "{ignored}");
        }
    }

    #[test]
    fn a_byte_range_counts_both_ends() {
        assert_eq!(ByteRange { start: 10, end: 19 }.len(), 10);
        assert_eq!(ByteRange::whole(3), Some(ByteRange { start: 0, end: 2 }));
        assert_eq!(ByteRange::whole(0), None);
    }

    #[test]
    fn file_types_are_the_standards_and_vendors_own() {
        for good in ["1 Firmware Upgrade Image", "3 Vendor Configuration File", "X 00259E Bootloader"] {
            assert_eq!(check_file_type(good), Ok(()), "{good}");
        }
        for bad in ["1 Firmware", "firmware", "X 0025 Boot", "X 00259E ", "X ZZZZZZ Boot", "7 Something", ""] {
            assert!(check_file_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_labels_are_checked() {
        assert_eq!(check_name("HG8245H_V3R017C10S115.bin"), Ok(()));
        for bad in ["", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_label("oui", "00259E"), Ok(()));
        assert!(check_label("oui", "Huawei").is_err());
        assert_eq!(check_label("product_class", "HG8245H"), Ok(()));
        assert!(check_label("version", &"1".repeat(65)).is_err());
        assert!(check_label("version", "").is_err());
    }

    #[tokio::test]
    async fn a_local_file_is_written_measured_hashed_and_read_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path().join("files"));
        let chunks: Vec<Result<Bytes, String>> =
            vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
        let written = files.write("k-1", futures::stream::iter(chunks).boxed(), 100).await.unwrap();
        assert_eq!(written.size, 11);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(b"hello world")));
        let files = &files;
        let read = |range| async move {
            let stream = files.read("k-1", range).await.unwrap();
            let parts: Vec<Bytes> = stream.map(Result::unwrap).collect().await;
            parts.concat()
        };
        assert_eq!(read(ByteRange { start: 6, end: 10 }).await, b"world");
        assert_eq!(read(ByteRange::whole(11).unwrap()).await, b"hello world");

        // Past the limit, or cut short: nothing stays, not even the partial file.
        let big: Vec<Result<Bytes, String>> = vec![Ok(Bytes::from(vec![0u8; 60])), Ok(Bytes::from(vec![0u8; 60]))];
        let error = files.write("k-2", futures::stream::iter(big).boxed(), 100).await.unwrap_err();
        assert!(matches!(error, WriteError::TooLarge(100)), "{error}");
        let cut: Vec<Result<Bytes, String>> = vec![Ok(Bytes::from_static(b"abc")), Err("reset".into())];
        assert!(matches!(files.write("k-3", futures::stream::iter(cut).boxed(), 100).await, Err(WriteError::Body(_))));
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("files"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["k-1"]);

        files.remove("k-1").await.unwrap();
        files.remove("k-1").await.unwrap();
        assert!(files.read("k-1", ByteRange { start: 0, end: 0 }).await.is_err());
        assert!(files.write("../escape", futures::stream::empty().boxed(), 1).await.is_err());
    }
}
