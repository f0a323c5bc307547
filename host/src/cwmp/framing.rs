//! Repairs a framing bug of real CPE firmware before HTTP parsing: a `Content-Length` that
//! counts the body's *characters* instead of its bytes. With a non-ASCII body (an SSID with an
//! accent, a Cyrillic device name) such a request is cut short by any HTTP parser, and the bytes
//! left over are then read as a garbage request that kills the connection and the session.
//!
//! The framer reads each request head, then the body by its `Content-Length`. When that body
//! is a complete SOAP envelope, or contains only ASCII (where bytes and characters agree), it is
//! passed on untouched, so a correct CPE is never delayed. Otherwise it reads on until the body
//! holds `Content-Length` UTF-8 characters and passes the request on with the header corrected.
//! Requests with `Transfer-Encoding` (or anything unparsable) switch the connection to plain
//! pass-through.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Request heads larger than this are not inspected (the HTTP server refuses them anyway).
const MAX_HEAD: usize = 64 * 1024;

/// What the buffer shrinks back to between requests, so an idle connection holds little.
const IDLE_BUFFER: usize = 8 * 1024;

/// Copies requests from `from` to `to`, repairing character-counted lengths, until `from` ends
/// or stays silent for `idle` (a CPE that quiet is gone; it would otherwise hold the connection
/// and its buffers forever). A body is never buffered beyond `max_body` bytes. `to` is shut down
/// at the end so the HTTP server sees the connection close.
pub async fn repair_requests<R, W>(from: R, mut to: W, max_body: usize, idle: Duration) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = Idle { inner: from, idle };
    let result = frame(&mut from, &mut to, max_body).await;
    let _ = to.shutdown().await;
    result
}

/// A reader whose every read gives up after `idle`.
struct Idle<R> {
    inner: R,
    idle: Duration,
}

impl<R: AsyncRead + Unpin> Idle<R> {
    /// Reads into `buffer`; `false` at the end of the stream or after `idle` without a byte.
    async fn read_more(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut chunk = [0u8; 4 * 1024];
        match tokio::time::timeout(self.idle, self.inner.read(&mut chunk)).await {
            Ok(read) => {
                let n = read?;
                buffer.extend_from_slice(&chunk[..n]);
                Ok(n > 0)
            }
            Err(_) => Ok(false),
        }
    }
}

async fn frame<R, W>(from: &mut Idle<R>, to: &mut W, max_body: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer: Vec<u8> = Vec::with_capacity(IDLE_BUFFER);
    loop {
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end + 4;
            }
            if buffer.len() > MAX_HEAD || !from.read_more(&mut buffer).await? {
                to.write_all(&buffer).await?;
                return pass_through(from, to).await;
            }
        };
        let head = &buffer[..head_end];
        let Some(length) = plain_content_length(head) else {
            to.write_all(&buffer).await?;
            return pass_through(from, to).await;
        };
        if length > max_body {
            to.write_all(&buffer).await?;
            return pass_through(from, to).await;
        }
        while buffer.len() < head_end + length {
            if !from.read_more(&mut buffer).await? {
                to.write_all(&buffer).await?;
                return to.flush().await;
            }
        }
        let mut body_end = head_end + length;
        let declared = &buffer[head_end..body_end];
        let repair = !declared.is_ascii() && !is_complete_envelope(declared);
        if repair {
            // Read until the body holds `length` characters (or the limit is reached).
            while utf8_chars(&buffer[head_end..]) < length && buffer.len() - head_end < max_body {
                if !from.read_more(&mut buffer).await? {
                    break;
                }
            }
            body_end = head_end + byte_len_of_chars(&buffer[head_end..], length);
            let corrected = rewrite_content_length(&buffer[..head_end], body_end - head_end);
            to.write_all(&corrected).await?;
            to.write_all(&buffer[head_end..body_end]).await?;
            tracing::debug!("repaired a character-counted Content-Length ({length} characters)");
        } else {
            to.write_all(&buffer[..body_end]).await?;
        }
        to.flush().await?;
        buffer.drain(..body_end);
        if buffer.capacity() > 8 * IDLE_BUFFER {
            buffer.shrink_to(IDLE_BUFFER);
        }
    }
}

async fn pass_through<R, W>(from: &mut Idle<R>, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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

/// The Content-Length of a head without Transfer-Encoding; `None` otherwise.
fn plain_content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().ok()?);
        }
    }
    Some(length.unwrap_or(0))
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

fn rewrite_content_length(head: &[u8], length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split_inclusive("\r\n") {
        match line.split_once(':') {
            Some((name, _)) if name.trim().eq_ignore_ascii_case("content-length") => {
                out.push_str(&format!("Content-Length: {length}\r\n"));
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn frame(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        repair_requests(input, &mut out, 1 << 20, Duration::from_secs(5)).await.unwrap();
        out
    }

    fn request(body: &str, content_length: usize) -> Vec<u8> {
        format!("POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: {content_length}\r\n\r\n{body}").into_bytes()
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
            "POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: {}\r\n\r\n{ENVELOPE}POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 0\r\n\r\n",
            ENVELOPE.len()
        );
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn correct_requests_pass_untouched() {
        let mut input = request(ENVELOPE, ENVELOPE.len());
        input.extend(request("<a>ascii only</a>", 17));
        input.extend(request("", 0));
        assert_eq!(frame(&input).await, input);
    }

    #[tokio::test]
    async fn chunked_requests_switch_to_pass_through() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
        assert_eq!(frame(&input).await, input);
    }

    #[tokio::test]
    async fn the_server_side_is_closed_when_the_cpe_closes_or_goes_quiet() {
        use tokio::io::AsyncReadExt;
        // The CPE closes: the HTTP server's side must read EOF, or the connection lives forever.
        let (server, framer) = tokio::io::duplex(1024);
        let (mut server_reads, _server_writes) = tokio::io::split(server);
        let (_framer_reads, framer_writes) = tokio::io::split(framer);
        let input = request("", 0);
        repair_requests(&input[..], framer_writes, 1024, Duration::from_secs(5)).await.unwrap();
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), server_reads.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "the server side never saw the connection end");
        assert_eq!(seen, input);

        // The CPE goes quiet with the connection open: given up after the idle time.
        let (_cpe, quiet) = tokio::io::duplex(1024);
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        repair_requests(quiet, &mut out, 1024, Duration::from_millis(50)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_connection_closed_mid_body_forwards_what_arrived() {
        let input = request("<soap:Envelope>", 100);
        assert_eq!(frame(&input).await, input);
    }
}
