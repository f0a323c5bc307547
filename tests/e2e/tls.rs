//! TLS on the listeners: CWMP sessions over TLS with the simulator speaking HTTPS, Basic
//! credentials taken there (and only there), client certificates checked against a CA, a
//! renewed certificate served without a restart, and the API over TLS. The certificates are
//! made here, with their CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use roost::config::CpeAuthMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::*;

const XML: (&str, &str) = ("Content-Type", "text/xml; charset=utf-8");

fn https(url: &str) -> String {
    url.replacen("http://", "https://", 1)
}

/// Opens a TLS connection to `address` trusting `ca` (presenting `identity` if given): the
/// stream, and the certificate the server presented.
async fn connect(
    address: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, CertificateDer<'static>)> {
    let config = roost_sim::fleet::client_tls(ca, identity).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    Ok((stream, presented))
}

/// One HTTP/1.1 request over TLS: the status and the body.
async fn request(
    address: std::net::SocketAddr,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (stream, _) = connect(address, ca, None).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(path).header("Host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender.send_request(builder.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// What a plain-HTTP request to `address` gets back before the connection ends.
async fn plain_answer(address: std::net::SocketAddr) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stays open");
    answer
}

fn pem_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn device_fleet_config(h: &Harness, prefix: &str, tls: Arc<rustls::ClientConfig>) -> FleetConfig {
    let mut config = FleetConfig::new(
        https(&h.cwmp_url()),
        Arc::new(DataModel::bundled(DataModelKind::Tr181).expect("bundled model")),
    );
    config.serial_prefix = prefix.to_owned();
    config.start = StartMode::Manual;
    config.retry = false;
    config.tls = Some(tls);
    config
}

#[tokio::test]
async fn sessions_over_tls_take_basic_credentials_and_a_renewed_certificate_without_a_restart() {
    let pki = Pki::new("roost");
    let (cert, key) = pki.issue("acs-1", false);
    let (served_cert, served_key) = (cert.clone(), key.clone());
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Required, move |config| {
        config.tls.cwmp_cert = Some(served_cert.clone());
        config.tls.cwmp_key = Some(served_key.clone());
        config.tls.reload_interval = Duration::from_millis(200);
    })
    .await;
    let app = h.app().clone();
    roost::store::credentials::create(&app.store, Default::default(), "lab", app.secrets.seal(b"lab-password"))
        .await
        .unwrap();

    // A device speaking HTTPS, checking Roost's certificate against the CA, answering the
    // Digest challenge: its whole session runs over TLS.
    let mut config = device_fleet_config(&h, "TLS", roost_sim::fleet::client_tls(&pki.ca(), None).unwrap());
    config.acs_username = Some("lab".into());
    config.acs_password = Some("lab-password".into());
    let fleet = Fleet::start(config).await.unwrap();
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert!(h.device(&fleet.device(0).device_id()).await["discovered_at"].is_string());
    assert_eq!(report.tls_resumed.first(), Some(&false), "a first handshake is a full one");
    // The next session resumes the TLS session Roost offered: no key exchange, no certificate.
    let report = fleet.device(0).inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.tls_resumed.first(), Some(&true), "{:?}", report.tls_resumed);
    // What roost-sim's total line reports: the fleet's handshakes, from its sessions' reports.
    assert_eq!(fleet.stats().tls_handshakes(), (1, 1), "one full handshake, then one resumed");

    // Basic credentials are taken over TLS (refused on plain HTTP: cwmp_edges.rs).
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("lab:lab-password"));
    let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
    let (status, body) =
        request(h.cwmp_addr(), &pki.ca(), "POST", "/", &[XML, ("Authorization", &basic)], &inform).await;
    assert_eq!(status, 200, "Basic over TLS: {body}");
    let (status, _) = request(h.cwmp_addr(), &pki.ca(), "POST", "/", &[XML], &inform).await;
    assert_eq!(status, 401, "no credentials, no session");

    // Plain HTTP on the TLS port gets no HTTP answer, and its connection ends.
    let answer = plain_answer(h.cwmp_addr()).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // A renewed certificate, from the same CA, written over the old files: the next handshake
    // presents it, no restart.
    let (_, first) = connect(h.cwmp_addr(), &pki.ca(), None).await.unwrap();
    assert_eq!(first, pem_der(&cert));
    let (renewed_cert, renewed_key) = pki.issue("acs-2", false);
    std::fs::copy(&renewed_key, &key).unwrap();
    std::fs::copy(&renewed_cert, &cert).unwrap();
    let renewed = pem_der(&renewed_cert);
    let mut presented = first.clone();
    for _ in 0..100 {
        // A look may fall between the two writes (a key without its certificate): it is
        // refused, and the next look, once both changed, takes them.
        (_, presented) = connect(h.cwmp_addr(), &pki.ca(), None).await.unwrap();
        if presented == renewed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(presented, renewed, "the renewed certificate is served");
    let report = fleet.device(0).inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);

    // A broken renewal (the key of another certificate) is refused: the last good pair serves.
    let (_, stray_key) = pki.issue("stray", false);
    std::fs::copy(&stray_key, &key).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, still) = connect(h.cwmp_addr(), &pki.ca(), None).await.unwrap();
    assert_eq!(still, renewed, "the last good certificate keeps serving");
    let report = fleet.device(0).inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    fleet.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn client_certificates_of_the_configured_ca_only() {
    let pki = Pki::new("roost");
    let (cert, key) = pki.issue("acs", false);
    let ca = pki.ca();
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Open, move |config| {
        // The CWMP listener only: the harness talks to the API in plain HTTP.
        config.tls.cwmp_cert = Some(cert.clone());
        config.tls.cwmp_key = Some(key.clone());
        config.tls.client_ca = Some(ca.clone());
    })
    .await;
    let (device_cert, device_key) = pki.issue("device", true);
    let stranger = Pki::new("stranger");
    let (stranger_cert, stranger_key) = stranger.issue("device", true);
    let cases = [
        ("MTLSOK", Some((device_cert.as_path(), device_key.as_path())), true),
        ("MTLSNONE", None, false),
        ("MTLSSTRANGE", Some((stranger_cert.as_path(), stranger_key.as_path())), false),
    ];
    for (prefix, identity, admitted) in cases {
        let tls = roost_sim::fleet::client_tls(&pki.ca(), identity).unwrap();
        let fleet = Fleet::start(device_fleet_config(&h, prefix, tls)).await.unwrap();
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert_eq!(report.is_ok(), admitted, "{prefix}: {:?}", report.error);
        fleet.stop().await;
    }
    h.finish().await;
}

#[tokio::test]
async fn the_api_over_tls_and_pairs_that_cannot_serve_stop_the_start() {
    let pki = Pki::new("roost");
    let (cert, key) = pki.issue("api", false);
    let data = tempfile::tempdir().unwrap();
    let config = |cert: &Path, key: &Path| {
        let mut config = roost::config::Config::for_loopback(data.path().to_owned(), None);
        config.tls.cert = Some(cert.to_owned());
        config.tls.key = Some(key.to_owned());
        config
    };
    let server = roost::app::Server::start(config(&cert, &key)).await.unwrap();
    let (status, body) = request(server.http_addr, &pki.ca(), "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(server.http_addr, &pki.ca(), "GET", "/api/v1/devices", &[], "").await;
    assert_eq!(status, 401, "the API behind TLS still wants a credential: {body}");
    // Both listeners took the shared pair.
    let (_, presented) = connect(server.cwmp_addr, &pki.ca(), None).await.unwrap();
    assert_eq!(presented, pem_der(&cert));
    let answer = plain_answer(server.http_addr).await;
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP answered on the TLS port");
    server.shutdown().await.unwrap();

    // A key that is not the certificate's, a missing file: the server does not start, and
    // says which file and why.
    let (_, other_key) = pki.issue("other", false);
    let error = format!("{:#}", roost::app::Server::start(config(&cert, &other_key)).await.unwrap_err());
    assert!(error.contains("is not the key of the certificate"), "{error}");
    let missing = data.path().join("missing.pem");
    let error = format!("{:#}", roost::app::Server::start(config(&missing, &key)).await.unwrap_err());
    assert!(error.contains("missing.pem"), "{error}");
}
