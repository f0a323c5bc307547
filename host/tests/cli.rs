//! The `roost` binary's command-line contract (DESIGN.md): the commands and flags integrators
//! and operators script against, a clean start on an empty data directory, and a clean exit on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOST: &str = env!("CARGO_BIN_EXE_roost");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(ROOST)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A minimal HTTP/1.0 exchange, so this test needs no client library.
fn http(port: u16, request: &str) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn serve_users_orgs_and_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();

    let created = run_with_stdin(&["org", "create", "--data-dir", data_dir, "--name", "ISP A", "--slug", "isp-a"], "");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let bad_slug =
        run_with_stdin(&["org", "create", "--data-dir", data_dir, "--name", "X", "--slug", "Not A Slug"], "");
    assert!(!bad_slug.status.success());
    assert!(String::from_utf8_lossy(&bad_slug.stderr).contains("slug"));

    let args = ["user", "create", "--data-dir", data_dir, "--org", "platform", "--email", "root@example.com"];
    let user = run_with_stdin(
        &[&args[..], &["--role", "platform-admin", "--password-stdin"]].concat(),
        "long-enough-password\n",
    );
    assert!(user.status.success(), "{}", String::from_utf8_lossy(&user.stderr));
    let short = run_with_stdin(&[&args[..], &["--role", "basic", "--password-stdin"]].concat(), "short\n");
    assert!(!short.status.success(), "short passwords are refused");
    let role =
        run_with_stdin(&[&args[..], &["--role", "emperor", "--password-stdin"]].concat(), "long-enough-password\n");
    assert!(String::from_utf8_lossy(&role.stderr).contains("unknown role"));

    let (cwmp, http_port) = (free_port(), free_port());
    let mut server = Command::new(ROOST)
        .args(["serve", "--data-dir", data_dir])
        .args(["--cwmp-listen", &format!("127.0.0.1:{cwmp}"), "--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--stun-listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some(response) = http(http_port, "GET /healthz HTTP/1.0\r\n\r\n") {
            break response;
        }
        assert!(Instant::now() < deadline, "roost serve did not answer /healthz within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.starts_with("HTTP/1.0 200") || ready.starts_with("HTTP/1.1 200"), "{ready}");
    let readiness = http(http_port, "GET /readyz HTTP/1.0\r\n\r\n").unwrap();
    assert!(readiness.contains(" 200 ") && readiness.ends_with("ready"), "{readiness}");

    let body = r#"{"email":"root@example.com","password":"long-enough-password"}"#;
    let login = http(
        http_port,
        &format!(
            "POST /api/v1/auth/login HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(login.contains("access_token"), "{login}");
    // CPE authentication is required by default: an unauthenticated Inform is challenged.
    let inform = "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:cwmp=\"urn:dslforum-org:cwmp-1-0\"><SOAP-ENV:Body><cwmp:Inform><DeviceId><OUI>A</OUI><SerialNumber>1</SerialNumber></DeviceId></cwmp:Inform></SOAP-ENV:Body></SOAP-ENV:Envelope>";
    let challenged =
        http(cwmp, &format!("POST / HTTP/1.0\r\nContent-Length: {}\r\n\r\n{inform}", inform.len())).unwrap();
    assert!(challenged.starts_with("HTTP/1.0 401") || challenged.starts_with("HTTP/1.1 401"), "{challenged}");

    let terminated = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "roost serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(data.path().join("roost.db").exists());
    assert!(data.path().join("master.key").exists());
}

#[test]
fn plugin_new_and_build_refuse_what_they_cannot_do() {
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| Command::new(ROOST).args(args).current_dir(work.path()).output().unwrap();
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let world = run(&["plugin", "new", "widget", "acme"]);
    assert!(!world.status.success());
    assert!(stderr(&world).contains("`adapter` or `provision`"), "{}", stderr(&world));
    let name = run(&["plugin", "new", "adapter", "1acme"]);
    assert!(stderr(&name).contains("cannot name a crate"), "{}", stderr(&name));
    let sdk = run(&["plugin", "new", "adapter", "acme", "--sdk", "."]);
    assert!(stderr(&sdk).contains("not Roost's plugin-sdk"), "{}", stderr(&sdk));

    let made = run(&["plugin", "new", "provision", "guest-wifi"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let manifest = std::fs::read_to_string(work.path().join("guest-wifi/Cargo.toml")).unwrap();
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk").canonicalize().unwrap();
    assert!(manifest.contains(&format!("roost-plugin-sdk = {{ path = \"{}\" }}", sdk.display())), "{manifest}");
    let again = run(&["plugin", "new", "provision", "guest-wifi"]);
    assert!(stderr(&again).contains("exists and is not empty"), "{}", stderr(&again));

    let nothing = run(&["plugin", "build", "nowhere"]);
    assert!(stderr(&nothing).contains("has no Cargo.toml"), "{}", stderr(&nothing));
}

/// One HTTP/1.0 request with a body and extra headers; the whole answer.
fn post(port: u16, headers: &str, body: &str) -> String {
    http(port, &format!("POST / HTTP/1.0\r\n{headers}Content-Length: {}\r\n\r\n{body}", body.len())).unwrap()
}

#[test]
fn json_logs_trace_a_session_and_a_backup_taken_while_serving_restores() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let refused =
        Command::new(ROOST).args(["serve", "--data-dir", data_dir]).env("ROOST_LOG_FORMAT", "xml").output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`text` or `json`"));

    let (cwmp, http_port) = (free_port(), free_port());
    let mut server = Command::new(ROOST)
        .args(["serve", "--data-dir", data_dir, "--cpe-auth", "open"])
        .args(["--cwmp-listen", &format!("127.0.0.1:{cwmp}"), "--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--stun-listen", "127.0.0.1:0"])
        .env("ROOST_LOG_FORMAT", "json")
        .env("ROOST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let probe = |url: &str| Command::new(ROOST).args(["probe", url]).output().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe(&format!("http://127.0.0.1:{http_port}/readyz")).status.success() {
        assert!(Instant::now() < deadline, "roost serve was not ready within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = probe(&format!("http://127.0.0.1:{}/healthz", free_port()));
    assert!(!closed.status.success() && String::from_utf8_lossy(&closed.stderr).contains("did not answer"));

    // One session: the Inform, then the empty POST that ends it, by its cookie.
    let inform = "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:cwmp=\"urn:dslforum-org:cwmp-1-0\"><SOAP-ENV:Body><cwmp:Inform><DeviceId><Manufacturer>M</Manufacturer><OUI>00AA11</OUI><ProductClass>Box</ProductClass><SerialNumber>LOG1</SerialNumber></DeviceId><Event><EventStruct><EventCode>2 PERIODIC</EventCode><CommandKey></CommandKey></EventStruct></Event><MaxEnvelopes>1</MaxEnvelopes><RetryCount>0</RetryCount><ParameterList></ParameterList></cwmp:Inform></SOAP-ENV:Body></SOAP-ENV:Envelope>";
    let answer = post(cwmp, "Content-Type: text/xml\r\n", inform);
    assert!(answer.contains(" 200 ") && answer.contains("InformResponse"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let end = post(cwmp, &format!("Cookie: {cookie}\r\n"), "");
    assert!(end.contains(" 204 ") || end.contains(" 200 "), "{end}");

    // A backup while it serves.
    let backup = data.path().join("backup.db");
    let taken =
        Command::new(ROOST).args(["backup", backup.to_str().unwrap(), "--data-dir", data_dir]).output().unwrap();
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    assert!(String::from_utf8_lossy(&taken.stdout).contains("1 devices"), "{}", String::from_utf8_lossy(&taken.stdout));
    let busy =
        Command::new(ROOST).args(["restore", backup.to_str().unwrap(), "--data-dir", data_dir]).output().unwrap();
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("in use"));

    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    let output = {
        use std::io::Read;
        let mut text = String::new();
        server.stderr.take().unwrap().read_to_string(&mut text).unwrap();
        text
    };
    assert!(server.wait().unwrap().success());
    // Every line is a JSON object; those of the session carry one trace id and the device.
    let lines: Vec<serde_json::Value> =
        output.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let traced: Vec<&serde_json::Value> = lines.iter().filter(|l| l["span"]["name"] == "cwmp_session").collect();
    assert!(!traced.is_empty(), "{output}");
    let trace = traced[0]["span"]["trace"].as_str().unwrap();
    assert_eq!(trace.len(), 16);
    assert!(traced.iter().all(|l| l["span"]["trace"] == trace && l["span"]["device"] == "00AA11-Box-LOG1"), "{output}");
    assert!(traced.iter().any(|l| l["fields"]["message"] == "new device registered"), "{output}");

    let restored =
        Command::new(ROOST).args(["restore", backup.to_str().unwrap(), "--data-dir", data_dir]).output().unwrap();
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(said.contains("1 devices") && said.contains("replaced-"), "{said}");
}
