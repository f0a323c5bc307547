//! The framer against hand-made streams: repairs, admission, limits and time.

use super::*;

use crate::fuzzing::{Seen, gate};

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
async fn heads_pass_on_byte_for_byte_whatever_their_encoding() {
    // A Latin-1 User-Agent ("Modèle"), refused and then admitted with a repaired length.
    let latin1: &[u8] = b"User-Agent: Mod\xe8le\r\n";
    let mut refused = b"POST /acs HTTP/1.1\r\n".to_vec();
    refused.extend_from_slice(latin1);
    refused.extend_from_slice(b"Connection: keep-alive\r\nContent-Length: 99999999\r\n\r\n");
    let (out, seen) = frame_with(&refused, settings(1 << 20)).await;
    assert_eq!(seen, vec![Seen::TooLarge]);
    let mut expected = b"POST /acs HTTP/1.1\r\n".to_vec();
    expected.extend_from_slice(latin1);
    expected.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(out, expected);

    let mut admitted = b"POST / HTTP/1.1\r\nAuthorization: x\r\n".to_vec();
    admitted.extend_from_slice(latin1);
    admitted.extend_from_slice(format!("Content-Length: {}\r\n\r\n{ENVELOPE}", ENVELOPE.chars().count()).as_bytes());
    let (out, _) = frame_with(&admitted, settings(1 << 20)).await;
    let mut expected = b"POST / HTTP/1.1\r\nAuthorization: x\r\n".to_vec();
    expected.extend_from_slice(latin1);
    expected.extend_from_slice(format!("Content-Length: {}\r\n\r\n{ENVELOPE}", ENVELOPE.len()).as_bytes());
    assert_eq!(out, expected);
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
    assert_eq!(String::from_utf8(out).unwrap(), "POST / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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
