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
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split_inclusive("\r\n") {
        match line.split_once(':') {
            Some((name, _))
                if name.trim().eq_ignore_ascii_case("content-length")
                    || name.trim().eq_ignore_ascii_case("transfer-encoding") => {}
            _ if line == "\r\n" => out.push_str(&format!("Content-Length: {length}\r\n\r\n")),
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// A refused request as the HTTP server is to see it: its head with no body, and
/// `Connection: close` when the connection ends after it.
fn bodiless(head: &[u8], close: bool) -> Vec<u8> {
    let mut out = rewrite_head(head, 0);
    if close {
        let text = String::from_utf8_lossy(&out).into_owned();
        let kept: String = text
            .split_inclusive("\r\n")
            .filter(|line| !line.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("connection")))
            .collect();
        out = kept.replacen("Content-Length: 0\r\n", "Content-Length: 0\r\nConnection: close\r\n", 1).into_bytes();
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
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Admitted,
        Refused,
        TooLarge,
        Busy,
    }

    impl Verdict for Seen {
        fn admits(&self) -> bool {
            *self == Seen::Admitted
        }
        fn too_large() -> Self {
            Seen::TooLarge
        }
        fn busy() -> Self {
            Seen::Busy
        }
    }

    /// Admits requests that carry an Authorization header, as the CWMP gate does for
    /// credentials that verify.
    fn gate() -> Gate<Seen> {
        Arc::new(|head: RequestHead| {
            Box::pin(async move { if head.authorization.is_some() { Seen::Admitted } else { Seen::Refused } })
        })
    }

    fn settings(max_body: usize) -> Settings {
        Settings {
            max_body,
            idle: Duration::from_secs(5),
            request_deadline: Duration::from_secs(5),
            budget: None,
            strict: false,
        }
    }

    async fn frame_with(input: &[u8], settings: Settings) -> (Vec<u8>, Vec<Seen>) {
        let mut out = Vec::new();
        let verdicts: Verdicts<Seen> = Arc::default();
        serve_requests(input, &mut out, settings, gate(), verdicts.clone()).await.unwrap();
        let seen = verdicts.lock().unwrap().drain(..).collect();
        (out, seen)
    }

    async fn frame(input: &[u8]) -> Vec<u8> {
        frame_with(input, settings(1 << 20)).await.0
    }

    fn request(body: &str, content_length: usize) -> Vec<u8> {
        format!("POST / HTTP/1.1\r\nHost: acs\r\nAuthorization: x\r\nContent-Length: {content_length}\r\n\r\n{body}")
            .into_bytes()
    }

    const ENVELOPE: &str =
        "<soap:Envelope><soap:Body><cwmp:Inform><SSID>Café Wi-Fi ☕</SSID></cwmp:Inform></soap:Body></soap:Envelope>";

    #[tokio::test]
    async fn a_character_counted_length_is_corrected() {
        let chars = ENVELOPE.chars().count();
        assert!(chars < ENVELOPE.len());
        let mut input = request(ENVELOPE, chars);
        input.extend(request("", 0));
        let out = String::from_utf8(frame(&input).await).unwrap();
        let expected = format!(
            "POST / HTTP/1.1\r\nHost: acs\r\nAuthorization: x\r\nContent-Length: {}\r\n\r\n{ENVELOPE}POST / HTTP/1.1\r\nHost: acs\r\nAuthorization: x\r\nContent-Length: 0\r\n\r\n",
            ENVELOPE.len()
        );
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn correct_requests_pass_untouched() {
        let mut input = request(ENVELOPE, ENVELOPE.len());
        input.extend(request("<a>ascii only</a>", 17));
        input.extend(request("", 0));
        let (out, seen) = frame_with(&input, settings(1 << 20)).await;
        assert_eq!(out, input);
        assert_eq!(seen, vec![Seen::Admitted; 3]);
    }

    #[tokio::test]
    async fn chunked_bodies_are_passed_on_with_a_length() {
        let input = b"POST / HTTP/1.1\r\nAuthorization: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\nPOST / HTTP/1.1\r\nAuthorization: x\r\nContent-Length: 0\r\n\r\n".to_vec();
        let (out, seen) = frame_with(&input, settings(1 << 20)).await;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nAuthorization: x\r\nContent-Length: 11\r\n\r\nhello worldPOST / HTTP/1.1\r\nAuthorization: x\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(seen, vec![Seen::Admitted; 2]);
        // A chunked body larger than the limit is refused, and the connection ends.
        let big = b"POST / HTTP/1.1\r\nAuthorization: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".to_vec();
        let (out, seen) = frame_with(&big, settings(100)).await;
        assert_eq!(seen, vec![Seen::TooLarge]);
        assert!(String::from_utf8(out).unwrap().contains("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_refused_request_reaches_the_server_without_its_body() {
        let refused = b"POST /acs HTTP/1.1\r\nHost: acs\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        let mut input = refused.clone();
        input.extend(request("<a/>", 4));
        let (out, seen) = frame_with(&input, settings(1 << 20)).await;
        let expected = "POST /acs HTTP/1.1\r\nHost: acs\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nHost: acs\r\nAuthorization: x\r\nContent-Length: 4\r\n\r\n<a/>";
        assert_eq!(String::from_utf8(out).unwrap(), expected, "the small body is dropped and the connection kept");
        assert_eq!(seen, vec![Seen::Refused, Seen::Admitted]);
    }

    #[tokio::test]
    async fn a_large_refused_body_is_never_read() {
        // An 8 MB body announced without credentials: the reader is handed only its head.
        let head = b"POST / HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n".to_vec();
        let (cpe, framer) = tokio::io::duplex(64 * 1024);
        let (_, mut cpe_writes) = tokio::io::split(cpe);
        let (framer_reads, _) = tokio::io::split(framer);
        cpe_writes.write_all(&head).await.unwrap();
        cpe_writes.write_all(&[b'x'; 32 * 1024]).await.unwrap();
        let mut out = Vec::new();
        let verdicts: Verdicts<Seen> = Arc::default();
        let framed = serve_requests(framer_reads, &mut out, settings(16 << 20), gate(), verdicts.clone());
        tokio::time::timeout(Duration::from_secs(5), framed).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(verdicts.lock().unwrap().pop_front(), Some(Seen::Refused));
    }

    #[tokio::test]
    async fn bodies_wait_for_room_in_the_budget() {
        let budget = Settings::budget_of(4 * 1024);
        let held = budget.clone().acquire_many_owned(4).await.unwrap();
        let input = request(&"a".repeat(2048), 2048);
        let (out, seen) = frame_with(&input, Settings { budget: Some(budget.clone()), ..settings(1 << 20) }).await;
        assert_eq!(seen, vec![Seen::Busy], "no room: 503");
        assert!(String::from_utf8(out).unwrap().contains("Connection: close"));
        drop(held);
        let (out, seen) = frame_with(&input, Settings { budget: Some(budget.clone()), ..settings(1 << 20) }).await;
        assert_eq!((out, seen), (input, vec![Seen::Admitted]));
        assert_eq!(budget.available_permits(), 4, "given back");
    }

    #[tokio::test]
    async fn a_trickled_request_is_cut_at_its_deadline() {
        let (cpe, framer) = tokio::io::duplex(1024);
        let (_, mut cpe_writes) = tokio::io::split(cpe);
        let (framer_reads, _) = tokio::io::split(framer);
        let trickle = tokio::spawn(async move {
            for byte in b"POST / HTTP/1.1\r\nHost: acs\r\n" {
                if cpe_writes.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = Instant::now();
        let settings = Settings { request_deadline: Duration::from_millis(200), ..settings(1024) };
        let mut out = Vec::new();
        serve_requests(framer_reads, &mut out, settings, gate(), Arc::default()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "closed at the deadline, not when the sender stopped");
        assert!(out.is_empty(), "nothing of the incomplete request was passed on");
        trickle.abort();
    }

    #[tokio::test]
    async fn the_server_side_is_closed_when_the_cpe_closes_or_goes_quiet() {
        use tokio::io::AsyncReadExt;
        // The CPE closes: the HTTP server's side must read EOF, or the connection lives forever.
        let (server, framer) = tokio::io::duplex(1024);
        let (mut server_reads, _server_writes) = tokio::io::split(server);
        let (_framer_reads, framer_writes) = tokio::io::split(framer);
        let input = request("", 0);
        serve_requests(&input[..], framer_writes, settings(1024), gate(), Arc::default()).await.unwrap();
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), server_reads.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "the server side never saw the connection end");
        assert_eq!(seen, input);

        // The CPE goes quiet with the connection open: given up after the idle time.
        let (_cpe, quiet) = tokio::io::duplex(1024);
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let settings = Settings { idle: Duration::from_millis(50), ..settings(1024) };
        serve_requests(quiet, &mut out, settings, gate(), Arc::default()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn heads_that_cannot_be_framed_end_the_connection_when_strict() {
        // A bare LF: another parser would see a chunked request here.
        let input = b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nX: a\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
        let (out, seen) = frame_with(&input, Settings { strict: true, ..settings(1 << 20) }).await;
        assert!(out.is_empty() && seen.is_empty(), "nothing passed on, connection ended");
        let (out, _) = frame_with(&input, settings(1 << 20)).await;
        assert_eq!(out, input, "passed through when not strict");
    }

    #[tokio::test]
    async fn blank_lines_before_a_request_are_skipped() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend(request("<a/>", 4));
        let (out, seen) = frame_with(&input, settings(1 << 20)).await;
        assert_eq!(out, request("<a/>", 4));
        assert_eq!(seen, vec![Seen::Admitted]);
    }

    #[tokio::test]
    async fn hostile_chunk_sizes_are_refused_without_panicking() {
        let input =
            b"POST / HTTP/1.1\r\nAuthorization: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\nffffffffffffffff\r\n"
                .to_vec();
        let (_, seen) = frame_with(&input, settings(1 << 20)).await;
        assert_eq!(seen, vec![Seen::TooLarge]);
        let mut trailers = b"POST / HTTP/1.1\r\nAuthorization: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for i in 0..2000 {
            trailers.extend(format!("X-Trailer-{i}: aaaaaaaa\r\n").as_bytes());
        }
        let (_, seen) = frame_with(&trailers, settings(1 << 20)).await;
        assert_eq!(seen, vec![Seen::TooLarge], "trailers are bounded");
    }

    #[tokio::test]
    async fn a_connection_closed_mid_body_forwards_what_arrived() {
        let input = request("<soap:Envelope>", 100);
        assert_eq!(frame(&input).await, input);
    }
}
