//! The CWMP listener's own reading of each request, before the HTTP parser sees it. It does
//! three things an off-the-shelf HTTP server cannot:
//!
//! 1. **Admission before the body.** Each request head is shown to a [`Gate`] (CPE
//!    authentication, the live sessions) before a byte of its body is read. A refused request
//!    reaches the HTTP server as its head alone (`Content-Length: 0`), carrying the gate's
//!    verdict, so the server answers it in order (401 and a challenge, 503); its body is
//!    discarded as it arrives when small, and the connection closed unread when large. The port
//!    faces the internet: memory goes only to requests that belong to a session or carry
//!    credentials that verified.
//! 2. **Bounded memory and time.** An admitted body is held only within a process-wide budget
//!    of bytes ([`Settings::budget`]); past it the request is answered 503. A request must be
//!    complete within [`Settings::request_deadline`] of its first byte, however slowly it
//!    trickles in, and a connection silent for [`Settings::idle`] between requests is closed.
//! 3. **Repairs.** Some firmware counts `Content-Length` in *characters*: with a non-ASCII body
//!    (an SSID with an accent, a Cyrillic device name) any HTTP parser cuts such a request
//!    short and reads the rest as a garbage request. When a body is a complete SOAP envelope,
//!    or only ASCII, it passes untouched; otherwise it is read on until it holds
//!    `Content-Length` characters and passed on with the header corrected. Chunked bodies are
//!    passed on de-chunked, with a `Content-Length`.
//!
//! Verdicts travel beside the bytes, in a queue the HTTP side pops one per request
//! ([`Verdicts`]): HTTP/1.1 answers a connection's requests in order, so the n-th verdict is
//! the n-th request's. A head that cannot be parsed switches the connection to plain
//! pass-through, without verdicts.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Request heads larger than this are not inspected (the HTTP server refuses them anyway).
const MAX_HEAD: usize = 64 * 1024;

/// What the buffer shrinks back to between requests, so an idle connection holds little.
const IDLE_BUFFER: usize = 8 * 1024;

/// A refused request's body up to this size is read and dropped, keeping the connection (the
/// CPE's next request, with credentials, comes on it); a larger one closes the connection.
const DISCARD_LIMIT: usize = 64 * 1024;

/// All trailers of a chunked body together, at most.
const MAX_TRAILERS: usize = 8 * 1024;

/// The budget counts kibibytes.
const BUDGET_UNIT: usize = 1024;

/// How long an admitted body may wait for room in the budget before it is answered 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// How the framer reads one connection.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The largest body accepted; a larger one is refused ([`Verdict::too_large`]) unread.
    pub max_body: usize,
    /// A connection silent this long between requests (or within one) is closed.
    pub idle: Duration,
    /// A request must be complete this long after its first byte.
    pub request_deadline: Duration,
    /// Bytes of bodies held at once, across connections, in [`BUDGET_UNIT`]s; `None`: no bound.
    pub budget: Option<Arc<Semaphore>>,
    /// Close a connection whose request head cannot be framed, rather than pass it through
    /// unexamined: on when the gate must see every request (CPE authentication on).
    pub strict: bool,
}

impl Settings {
    /// Permits for a process-wide budget of `bytes`.
    pub fn budget_of(bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(bytes.div_ceil(BUDGET_UNIT).min(Semaphore::MAX_PERMITS)))
    }
}

/// What the gate sees of a request: its head's fields that decide admission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub cookie: Option<String>,
    pub authorization: Option<String>,
    /// `X-Forwarded-For`, believed only from a trusted proxy.
    pub forwarded_for: Option<String>,
}

/// The gate's decision, carried to the HTTP side.
pub trait Verdict: Send + 'static {
    /// Whether the body is to be read and passed on.
    fn admits(&self) -> bool;
    /// The verdict for a body over [`Settings::max_body`].
    fn too_large() -> Self;
    /// The verdict for a body the budget had no room for.
    fn busy() -> Self;
}

/// Decides on a request from its head.
pub type Gate<V> = Arc<dyn Fn(RequestHead) -> Pin<Box<dyn Future<Output = V> + Send>> + Send + Sync>;

/// The verdicts of a connection's requests, in order.
pub type Verdicts<V> = Arc<Mutex<VecDeque<V>>>;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(usize),
    Chunked,
}

/// Frames requests from `from` into `to` until `from` ends, goes quiet, or misses a deadline;
/// `to` is shut down at the end so that the HTTP server sees the connection close.
pub async fn serve_requests<R, W, V>(
    from: R,
    mut to: W,
    settings: Settings,
    gate: Gate<V>,
    verdicts: Verdicts<V>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    V: Verdict,
{
    let mut from = Timed { inner: from, idle: settings.idle, deadline: None };
    let result = frame(&mut from, &mut to, &settings, &gate, &verdicts).await;
    let _ = to.shutdown().await;
    result
}

/// A reader whose every read gives up after `idle`, or at `deadline`.
struct Timed<R> {
    inner: R,
    idle: Duration,
    deadline: Option<Instant>,
}

impl<R: AsyncRead + Unpin> Timed<R> {
    /// Reads into `buffer`; `false` at the end of the stream, after `idle` without a byte, or
    /// past the deadline.
    async fn read_more(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
        let wait = match self.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left.min(self.idle),
                None => return Ok(false),
            },
            None => self.idle,
        };
        let mut chunk = [0u8; 4 * 1024];
        match tokio::time::timeout(wait, self.inner.read(&mut chunk)).await {
            Ok(read) => {
                let n = read?;
                buffer.extend_from_slice(&chunk[..n]);
                Ok(n > 0)
            }
            Err(_) => Ok(false),
        }
    }
}

async fn frame<R, W, V>(
    from: &mut Timed<R>,
    to: &mut W,
    settings: &Settings,
    gate: &Gate<V>,
    verdicts: &Verdicts<V>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    V: Verdict,
{
    let mut buffer: Vec<u8> = Vec::with_capacity(IDLE_BUFFER);
    loop {
        from.deadline = None;
        // Empty lines before a request are ignored (RFC 9112 §2.2).
        let blank = buffer.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        buffer.drain(..blank);
        if buffer.is_empty() && !from.read_more(&mut buffer).await? {
            return to.flush().await;
        }
        if matches!(buffer.first(), Some(b'\r' | b'\n')) {
            continue;
        }
        // A request's time runs from its first byte.
        from.deadline = Some(Instant::now() + settings.request_deadline);
        let mut scanned = 0;
        let head_end = loop {
            // Only what arrived since the last look is searched (with 3 bytes of overlap): a
            // head trickled in byte by byte costs linear time.
            if let Some(end) = find(&buffer[scanned..], b"\r\n\r\n") {
                break scanned + end + 4;
            }
            scanned = buffer.len().saturating_sub(3);
            if buffer.len() > MAX_HEAD {
                if settings.strict {
                    return to.flush().await;
                }
                to.write_all(&buffer).await?;
                return pass_through(from, to).await;
            }
            if !from.read_more(&mut buffer).await? {
                // Closed, silent or out of time before the head was complete: nothing to answer.
                return to.flush().await;
            }
        };
        let Some((body, head)) = parse_head(&buffer[..head_end]) else {
            // A head this framer cannot read the same way as the HTTP parser would: nothing
            // after it can be framed. Without authentication it passes on as it is; with it,
            // the connection ends (the gate must see every request).
            if settings.strict {
                return to.flush().await;
            }
            to.write_all(&buffer).await?;
            return pass_through(from, to).await;
        };
        let too_large = matches!(body, Body::Length(n) if n > settings.max_body);
        let verdict = if too_large { V::too_large() } else { gate(head).await };
        if !verdict.admits() {
            // The body is not worth memory: dropped as it comes when small, else never read.
            let keep_connection = match body {
                Body::Length(n) if n <= DISCARD_LIMIT => discard(from, &mut buffer, head_end + n).await?,
                _ => false,
            };
            push(verdicts, verdict);
            to.write_all(&bodiless(&buffer[..head_end], !keep_connection)).await?;
            to.flush().await?;
            if !keep_connection {
                return Ok(());
            }
            buffer.drain(..(head_end + body_length(body)).min(buffer.len()));
            continue;
        }
        let mut budget = Budget::new(settings.budget.clone());
        let read = match body {
            Body::Length(length) => read_length_body(from, &mut buffer, head_end, length, &mut budget).await?,
            Body::Chunked => dechunk(from, &mut buffer, head_end, settings.max_body, &mut budget).await?,
        };
        let request_end = match read {
            Read::Complete(end) => end,
            Read::Ended => {
                // The CPE closed or ran out of time mid-body: what arrived goes on, and the HTTP
                // server, seeing the connection end, drops the incomplete request.
                to.write_all(&buffer).await?;
                return to.flush().await;
            }
            refused @ (Read::NoRoom | Read::TooLarge) => {
                push(verdicts, if refused == Read::NoRoom { V::busy() } else { V::too_large() });
                to.write_all(&bodiless(&buffer[..head_end], true)).await?;
                return to.flush().await;
            }
        };
        push(verdicts, verdict);
        to.write_all(&buffer[..request_end]).await?;
        to.flush().await?;
        drop(budget);
        buffer.drain(..request_end);
        if buffer.capacity() > 8 * IDLE_BUFFER {
            buffer.shrink_to(IDLE_BUFFER);
        }
    }
}

/// How reading a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The request, rewritten where needed, is `buffer[..end]`.
    Complete(usize),
    /// The stream ended or the deadline passed first.
    Ended,
    /// The budget had no room in time.
    NoRoom,
    /// A chunked body outgrew the limit.
    TooLarge,
}

/// The share of the body budget one request holds; given back when dropped.
struct Budget {
    semaphore: Option<Arc<Semaphore>>,
    held: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl Budget {
    fn new(semaphore: Option<Arc<Semaphore>>) -> Self {
        Self { semaphore, held: None, units: 0 }
    }

    /// Holds room for `bytes` in all; false if there was none within [`BUDGET_WAIT`].
    async fn reserve(&mut self, bytes: usize) -> bool {
        let Some(semaphore) = &self.semaphore else { return true };
        let wanted = bytes.div_ceil(BUDGET_UNIT);
        if wanted <= self.units {
            return true;
        }
        let more = u32::try_from(wanted - self.units).unwrap_or(u32::MAX);
        match tokio::time::timeout(BUDGET_WAIT, semaphore.clone().acquire_many_owned(more)).await {
            Ok(Ok(permit)) => {
                match &mut self.held {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
                self.units = wanted;
                true
            }
            _ => false,
        }
    }
}

async fn read_length_body<R: AsyncRead + Unpin>(
    from: &mut Timed<R>,
    buffer: &mut Vec<u8>,
    head_end: usize,
    length: usize,
    budget: &mut Budget,
) -> std::io::Result<Read> {
    if !budget.reserve(head_end + length).await {
        return Ok(Read::NoRoom);
    }
    while buffer.len() < head_end + length {
        if !from.read_more(buffer).await? {
            return Ok(Read::Ended);
        }
    }
    let declared = &buffer[head_end..head_end + length];
    if declared.is_ascii() || is_complete_envelope(declared) {
        return Ok(Read::Complete(head_end + length));
    }
    // Read on until the body holds `length` characters (at most four bytes each).
    if !budget.reserve(head_end + 4 * length).await {
        return Ok(Read::NoRoom);
    }
    // Characters are counted as bytes arrive, each byte once.
    let mut counted = head_end;
    let mut chars = 0;
    loop {
        chars += utf8_chars(&buffer[counted..]);
        counted = buffer.len();
        if chars >= length || buffer.len() - head_end >= 4 * length || !from.read_more(buffer).await? {
            break;
        }
    }
    let body_len = byte_len_of_chars(&buffer[head_end..], length);
    let corrected = rewrite_head(&buffer[..head_end], body_len);
    tracing::debug!("repaired a character-counted Content-Length ({length} characters)");
    Ok(Read::Complete(splice_head(buffer, head_end, corrected) + body_len))
}

/// Reads a chunked body and rewrites the request with the body de-chunked and a
/// `Content-Length`.
async fn dechunk<R: AsyncRead + Unpin>(
    from: &mut Timed<R>,
    buffer: &mut Vec<u8>,
    head_end: usize,
    max_body: usize,
    budget: &mut Budget,
) -> std::io::Result<Read> {
    let mut body: Vec<u8> = Vec::new();
    let mut at = head_end;
    loop {
        let line_end = loop {
            if let Some(end) = find(&buffer[at..], b"\r\n") {
                break at + end;
            }
            if buffer.len() - at > 1024 || !from.read_more(buffer).await? {
                return Ok(Read::Ended);
            }
        };
        let size_text = std::str::from_utf8(&buffer[at..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else { return Ok(Read::Ended) };
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line; all of them together are small.
            let trailers_start = at;
            loop {
                if let Some(end) = find(&buffer[at..], b"\r\n") {
                    at += end + 2;
                    if end == 0 {
                        break;
                    }
                    if at - trailers_start > MAX_TRAILERS {
                        return Ok(Read::TooLarge);
                    }
                } else {
                    if buffer.len() - trailers_start > MAX_TRAILERS {
                        return Ok(Read::TooLarge);
                    }
                    if !from.read_more(buffer).await? {
                        return Ok(Read::Ended);
                    }
                }
            }
            break;
        }
        let Some(total) = body.len().checked_add(size).filter(|total| *total <= max_body) else {
            return Ok(Read::TooLarge);
        };
        if !budget.reserve(2 * total + at).await {
            return Ok(Read::NoRoom);
        }
        let chunk_end = at + size;
        while buffer.len() < chunk_end + 2 {
            if !from.read_more(buffer).await? {
                return Ok(Read::Ended);
            }
        }
        if &buffer[chunk_end..chunk_end + 2] != b"\r\n" {
            // Not chunked encoding after all: nothing more can be framed.
            return Ok(Read::Ended);
        }
        body.extend_from_slice(&buffer[at..chunk_end]);
        at = chunk_end + 2;
    }
    let head = rewrite_head(&buffer[..head_end], body.len());
    let head_len = head.len();
    buffer.splice(..at, head.into_iter().chain(body.iter().copied()));
    Ok(Read::Complete(head_len + body.len()))
}

/// Replaces `buffer[..head_end]` with `head`; returns the new head's length.
fn splice_head(buffer: &mut Vec<u8>, head_end: usize, head: Vec<u8>) -> usize {
    let len = head.len();
    buffer.splice(..head_end, head);
    len
}

/// Reads and drops the rest of a refused request, up to `end`; whether it all came.
async fn discard<R: AsyncRead + Unpin>(from: &mut Timed<R>, buffer: &mut Vec<u8>, end: usize) -> std::io::Result<bool> {
    while buffer.len() < end {
        if !from.read_more(buffer).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn push<V>(verdicts: &Verdicts<V>, verdict: V) {
    if let Ok(mut queue) = verdicts.lock() {
        queue.push_back(verdict);
    }
}

fn body_length(body: Body) -> usize {
    match body {
        Body::Length(n) => n,
        Body::Chunked => 0,
    }
}

async fn pass_through<R, W>(from: &mut Timed<R>, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Past the deadline of the request that could not be framed, only the idle time bounds it.
    from.deadline = None;
    let mut buffer = Vec::with_capacity(IDLE_BUFFER);
    while from.read_more(&mut buffer).await? {
        to.write_all(&buffer).await?;
        buffer.clear();
    }
    to.flush().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How the body is delimited, and what the gate needs; `None` for a head that is not text or
/// has a malformed length.
fn parse_head(head: &[u8]) -> Option<(Body, RequestHead)> {
    // A line ended by a bare LF is one line to some HTTP parsers and part of another here: the
    // two would frame the stream differently, so such a head is not framed at all.
    if head.iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r')) {
        return None;
    }
    // Header values in another encoding (a vendor's Latin-1 User-Agent) are not a reason to
    // give up: only the fields read here must make sense.
    let text = String::from_utf8_lossy(head);
    let mut length = None;
    let mut chunked = false;
    let mut fields = RequestHead::default();
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return None;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("cookie") {
            fields.cookie = Some(match fields.cookie.take() {
                Some(earlier) => format!("{earlier}; {value}"),
                None => value.to_owned(),
            });
        } else if name.eq_ignore_ascii_case("authorization") {
            fields.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            fields.forwarded_for = Some(value.to_owned());
        }
    }
    let body = if chunked { Body::Chunked } else { Body::Length(length.unwrap_or(0)) };
    Some((body, fields))
}

/// The head with its framing headers replaced by `Content-Length: length`.
fn rewrite_head(head: &[u8], length: usize) -> Vec<u8> {
    rebuilt_head(head, length, false)
}

/// A refused request as the HTTP server is to see it: its head with no body, and
/// `Connection: close` when the connection ends after it.
fn bodiless(head: &[u8], close: bool) -> Vec<u8> {
    rebuilt_head(head, 0, close)
}

/// The head, byte for byte, but for its framing headers (and its `Connection` when `close`),
/// with `Content-Length: length` (and `Connection: close`) before the blank line. Bytes, not
/// text: a header in another encoding (a vendor's Latin-1 User-Agent) reaches the HTTP server
/// as the gate saw it, and no longer. Heads reach here only when every line ends in CRLF
/// ([`parse_head`]).
fn rebuilt_head(head: &[u8], length: usize, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 40);
    for (i, line) in head.split_inclusive(|b| *b == b'\n').enumerate() {
        let named = |name: &str| {
            let field = line.split(|b| *b == b':').next().unwrap_or_default();
            // The request line is no header, whatever it holds.
            i > 0 && line.contains(&b':') && field.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
        };
        if line == b"\r\n" {
            out.extend_from_slice(format!("Content-Length: {length}\r\n").as_bytes());
            if close {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
        } else if !(named("content-length") || named("transfer-encoding") || (close && named("connection"))) {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Whether a body ends with the close of a SOAP Envelope, whatever its prefix.
fn is_complete_envelope(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii_end();
    let Some(start) = trimmed.iter().rposition(|b| *b == b'<') else { return false };
    let tag = &trimmed[start..];
    tag.starts_with(b"</") && tag.ends_with(b"Envelope>")
}

fn utf8_chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count()
}

/// The number of bytes that make up the first `chars` characters.
fn byte_len_of_chars(bytes: &[u8], chars: usize) -> usize {
    let mut seen = 0;
    for (i, b) in bytes.iter().enumerate() {
        if (b & 0xC0) != 0x80 {
            if seen == chars {
                return i;
            }
            seen += 1;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests;
