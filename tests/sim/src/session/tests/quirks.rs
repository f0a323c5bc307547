//! The firmware habits of [`crate::quirks`] seen over loopback: by the scripted ACS, or by a raw
//! TCP client for what an HTTP library would hide (headers hyper adds, a socket closing).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::auth::md5_hex;
use crate::{CrAuth, Quirks};

const INFORM_RESPONSE: &str = "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>";

/// Sends one GET on a fresh connection and reads the answer's head (every answer of the
/// listener has an empty body). Returns the stream, still open on our side, and the head.
async fn raw_get(url: &str, authorization: Option<&str>) -> (TcpStream, String) {
    let url = reqwest::Url::parse(url).unwrap();
    let authority = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = TcpStream::connect(&authority).await.unwrap();
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: raw-acs\r\n", url.path());
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "connection closed mid-answer: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether the peer closes the connection within `within` (end of stream or a reset).
async fn closes(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

#[tokio::test]
async fn open_listener_accepts_a_bare_connection_request() {
    let (acs, base) = Acs::start().await;
    let mut config = config(&base);
    config.cr_username = Some("cr-user".into());
    config.cr_password = Some("cr-pass".into());
    config.quirks = Quirks { cr_auth: CrAuth::None, ..Quirks::default() };
    config.cr_min_interval = THROTTLED_FOR;
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    let url = device.connection_request_url().to_owned();

    let mark = device.session_count();
    acs.inform_response();
    let answer = get(&url, None).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("www-authenticate").is_none());
    let woken = device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
    assert!(woken.is_ok(), "{:?}", woken.error);

    // Still throttled, and still nothing to authenticate: not even a bogus header is checked.
    assert_eq!(get(&url, None).await.status(), 503);
    tokio::time::sleep(THROTTLED_FOR + Duration::from_millis(100)).await;
    let mark = device.session_count();
    acs.inform_response();
    assert_eq!(get(&url, Some(r#"Digest username="nobody""#.into())).await.status(), 200);
    device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
    // Unknown paths are still unknown.
    let unknown = format!("{}/NOSUCHDEVICE", &url[..url.rfind('/').unwrap()]);
    assert_eq!(get(&unknown, None).await.status(), 404);
}

#[tokio::test]
async fn standard_listener_keeps_the_connection_open_after_its_challenge() {
    let (_acs, base) = Acs::start().await;
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let (mut stream, head) = raw_get(fleet.device(0).connection_request_url(), None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let challenge = header_of(&head, "www-authenticate").unwrap();
    assert!(challenge.contains(", "), "the standard challenge separates its parameters: {challenge}");
    assert!(!closes(&mut stream, Duration::from_millis(300)).await, "kept alive");
}

#[tokio::test]
async fn challenge_then_closed_socket_then_retry_on_a_new_connection() {
    let (acs, base) = Acs::start().await;
    let mut config = config(&base);
    config.cr_username = Some("cr-user".into());
    config.cr_password = Some("cr-pass".into());
    config.quirks = Quirks { cr_close_after_challenge: true, ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    let url = device.connection_request_url().to_owned();
    let path = reqwest::Url::parse(&url).unwrap().path().to_owned();

    let (mut stream, head) = raw_get(&url, None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(header_of(&head, "connection"), None, "no Connection header at all: {head}");
    assert_eq!(header_of(&head, "content-length"), Some("0"));
    let challenge = header_of(&head, "www-authenticate").unwrap().to_owned();
    assert!(challenge.starts_with(r#"Digest qop="auth" nonce=""#), "{challenge}");
    assert!(challenge.ends_with(r#"" realm="roost-sim""#), "{challenge}");
    assert!(!challenge.contains(','), "no commas between the parameters: {challenge}");
    // The socket looks alive after the 401, so a pooling client reuses it…
    assert!(!closes(&mut stream, Duration::from_millis(200)).await, "still open after the 401");
    // …and the request sent on it is dropped unanswered.
    tokio::io::AsyncWriteExt::write_all(&mut stream, format!("GET {path} HTTP/1.1\r\nHost: cpe\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert!(closes(&mut stream, WAIT).await, "closed without an answer");

    // The authenticated retry on a new connection is accepted.
    let mut parsed = Challenge::select([challenge.as_str()]).unwrap();
    let authorization = parsed.authorization("GET", &path, "cr-user", "cr-pass");
    let mark = device.session_count();
    acs.inform_response();
    let (_stream, head) = raw_get(&url, Some(&authorization)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let woken = device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
    assert!(woken.is_ok(), "{:?}", woken.error);

    // An ACS doing it with a fresh connection per request gets through as well.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mark = device.session_count();
    acs.inform_response();
    let (status, _) = connection_request(&url, "cr-user", "cr-pass").await;
    assert_eq!(status, 200);
    device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
}

/// The Authorization an RFC 2069 client with `uri=""` sends for a POST.
fn rfc2069(user: &str, password: &str, realm: &str, nonce: &str) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{}", md5_hex("POST:")));
    format!(r#"Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="", response="{response}""#)
}

#[tokio::test]
async fn sessions_open_with_an_empty_post_asking_for_a_challenge() {
    let (acs, base) = Acs::start().await;
    let bare = |r: &Recorded| r.body.is_empty() && r.header("authorization").is_none();
    let challenge = |nonce: &str| {
        Reply::status(401).with("www-authenticate", &format!(r#"Digest realm="acs", qop="auth", nonce="{nonce}""#))
    };
    let first = rfc2069("cpe-SIM000000", "pw", "acs", "n-1");
    acs.script(move |r| if bare(r) { challenge("n-1") } else { Reply::status(400) });
    acs.script(move |r| {
        if r.header("authorization") == Some(first.as_str()) && !r.body.is_empty() {
            Reply::soap(soap(&r.id(), INFORM_RESPONSE))
        } else {
            Reply::status(403)
        }
    });
    acs.script(move |r| {
        if bare(r) {
            Reply::soap(soap("rpc-1", "<cwmp:GetRPCMethods></cwmp:GetRPCMethods>"))
        } else {
            Reply::status(400)
        }
    });
    let first = rfc2069("cpe-SIM000000", "pw", "acs", "n-1");
    acs.script(
        move |r| {
            if r.header("authorization") == Some(first.as_str()) { Reply::status(204) } else { Reply::status(403) }
        },
    );
    let mut config = config(&base);
    config.acs_username = Some("cpe-{serial}".into());
    config.acs_password = Some("pw".into());
    config.quirks = Quirks { challenge_with_empty_post: true, ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);

    let report = device.inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.http_statuses, [401, 200, 200, 204]);
    assert_eq!(report.methods(), ["GetRPCMethods"]);
    let posts = acs.posts();
    assert_eq!(posts[0].header("content-length"), Some("0"));
    assert_eq!(posts[0].header("content-type"), None);
    let authorization = posts[1].header("authorization").unwrap();
    for absent in ["qop", "nc=", "cnonce"] {
        assert!(!authorization.contains(absent), "{absent} in {authorization}");
    }
    assert!(matches!(posts[1].decoded(), CpeBody::Request(CpeRequest::Inform(_))));
    assert!(posts.iter().all(|p| p.peer == posts[0].peer), "one connection for the session");

    // Every session asks again, whatever the last challenge was.
    let second = rfc2069("cpe-SIM000000", "pw", "acs", "n-2");
    acs.script(move |r| if bare(r) { challenge("n-2") } else { Reply::status(400) });
    acs.script(move |r| {
        if r.header("authorization") == Some(second.as_str()) {
            Reply::soap(soap(&r.id(), INFORM_RESPONSE))
        } else {
            Reply::status(403)
        }
    });
    acs.script(move |r| if bare(r) { Reply::status(204) } else { Reply::status(400) });
    let report = device.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.http_statuses, [401, 200, 204]);
    assert_eq!(acs.pending_steps(), 0);
}

#[tokio::test]
async fn an_empty_post_that_draws_no_challenge_fails_the_session() {
    let (acs, base) = Acs::start().await;
    acs.script(|_| Reply::status(204));
    let mut config = config(&base);
    config.acs_username = Some("cpe".into());
    config.acs_password = Some("pw".into());
    config.quirks = Quirks { challenge_with_empty_post: true, ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert_eq!(report.error, Some(SessionError::NoChallenge(204)));
    assert_eq!(report.http_statuses, [204]);
    assert!(acs.informs().is_empty(), "no Inform without a challenge");
    // A 401 with only Basic is no Digest challenge either.
    acs.script(|_| Reply::status(401).with("www-authenticate", r#"Basic realm="acs""#));
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert_eq!(report.error, Some(SessionError::NoChallenge(401)));
    assert!(fleet.device(0).pending_events().iter().any(|e| e.code == "0 BOOTSTRAP"), "nothing was delivered");

    // Without ACS credentials in the fleet the quirk stays out of the way.
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    let mut config = super::config(&base);
    config.quirks = Quirks { challenge_with_empty_post: true, ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.http_statuses, [200, 204]);
    assert!(acs.posts()[0].header("authorization").is_none());
}

fn gpv(id: &str, count: usize) -> (String, String) {
    let names: String =
        ["Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.HardwareVersion", "Device.RootDataModelVersion"]
            .iter()
            .cycle()
            .take(count)
            .map(|n| format!("<string>{n}</string>"))
            .collect();
    let body = format!(
        r#"<cwmp:GetParameterValues><ParameterNames soapenc:arrayType="xsd:string[{count}]">{names}</ParameterNames></cwmp:GetParameterValues>"#
    );
    (id.to_owned(), body)
}

#[tokio::test]
async fn a_large_gpv_crashes_the_agent_and_the_retry_uses_a_new_connection() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    let (id, body) = gpv("gpv-small", 2);
    acs.request(&id, &body);
    let (id, body) = gpv("gpv-big", 3);
    acs.request(&id, &body);
    // The retry.
    acs.inform_response();
    let mut config = config(&base);
    config.retry = true;
    config.retry_min_wait = Duration::from_millis(50);
    config.quirks = Quirks { gpv_crash_at: Some(3), ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);

    let crashed = device.inform_now(&[]).await.unwrap();
    assert_eq!(crashed.error, Some(SessionError::AgentCrashed));
    assert_eq!(crashed.methods(), ["GetParameterValues"], "the small batch was answered, the big one not");
    assert!(
        matches!(&crashed.rpcs[0].response, CpeBody::Response(CpeResponse::GetParameterValues { parameters }) if parameters.len() == 2)
    );
    assert_eq!(crashed.http_statuses, [200, 200, 200]);

    let retried = device.wait_for_session(1, WAIT, |_| true).await.unwrap();
    assert!(retried.is_ok(), "{:?}", retried.error);
    assert_eq!(retried.retry_count, 1);
    let posts = acs.posts();
    assert_eq!(posts.len(), 5, "Inform, empty POST, small GPV answer; then the retry's Inform and empty POST");
    assert!(posts.iter().all(|p| p.id() != "gpv-big"), "the big batch is never answered");
    assert!(posts[..3].iter().all(|p| p.peer == posts[0].peer));
    assert_ne!(posts[3].peer, posts[0].peer, "the crashed connection is not reused");
    assert!(matches!(posts[3].decoded(), CpeBody::Request(CpeRequest::Inform(_))));
    let stats = fleet.stats().total();
    assert_eq!((stats.sessions, stats.failures), (1, 1));
}

/// Reads one HTTP request (head and Content-Length body); `None` when the peer closes first.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = header_of(&text[..end], "content-length").map_or(0, |v| v.parse::<usize>().unwrap());
            if buffer.len() >= end + 4 + length {
                return Some((text[..end].to_owned(), text[end + 4..].to_owned()));
            }
        }
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap() {
            Ok(0) | Err(_) => {
                assert!(buffer.is_empty(), "closed mid-request: {text}");
                return None;
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn http_200(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn the_crashed_agent_drops_the_acs_connection() {
    // A raw ACS, to see the socket itself: Inform → InformResponse, empty POST → a big GPV,
    // then the CPE must hang up without a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = config(&base);
    config.quirks = Quirks { gpv_crash_at: Some(1), ..Quirks::default() };
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    let session = tokio::spawn(async move { device.inform_now(&[]).await.unwrap() });

    let (mut stream, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let (_, inform) = read_request(&mut stream).await.unwrap();
    let id = decode_cpe_message(inform.as_bytes()).unwrap().header.id.unwrap();
    stream.write_all(http_200(&soap(&id, INFORM_RESPONSE)).as_bytes()).await.unwrap();
    let (head, empty) = read_request(&mut stream).await.unwrap();
    assert!(head.starts_with("POST ") && empty.is_empty(), "{head}");
    let (_, body) = gpv("big", 1);
    stream.write_all(http_200(&soap("big", &body)).as_bytes()).await.unwrap();
    assert_eq!(read_request(&mut stream).await, None, "the CPE hangs up without answering");
    let report = session.await.unwrap();
    assert_eq!(report.error, Some(SessionError::AgentCrashed));
}
