//! Devices behind NAT (TR-069 Annex G, TR-111 part 2): the `stun` preset turns the device's STUN
//! client on, the STUN server records the public address a signed Binding Request proves, and a
//! connection request whose HTTP listener cannot be reached goes over UDP through that NAT.
//! The simulated NAT lets in only what comes from the STUN server's address, as a
//! port-restricted NAT does.

use std::time::Duration;

use reqwest::StatusCode;
use roost_sim::stun::{Answer, binding_request, read_answer};
use roost_tests::on_both_backends;
use tokio::net::UdpSocket;

use super::observability::{sample, scrape};
use super::*;

/// Devices of a real export (`tests/data/cpe/`) behind NAT, each informed once (its bootstrap).
async fn fleet_behind_nat(h: &Harness, export: &str, devices: usize, prefix: &str) -> roost_sim::Fleet {
    fleet_of(h, export, devices, prefix, true).await
}

/// [`fleet_behind_nat`], or with a reachable listener and no STUN client running (`nat` false).
async fn fleet_of(h: &Harness, export: &str, devices: usize, prefix: &str, nat: bool) -> roost_sim::Fleet {
    let model = roost_sim::DataModel::load(roost_sim::data_dir().join(export)).unwrap();
    let mut config = roost_sim::FleetConfig::new(h.cwmp_url(), std::sync::Arc::new(model));
    config.devices = devices;
    config.serial_prefix = prefix.to_owned();
    config.start = roost_sim::StartMode::Manual;
    config.retry = false;
    config.cr_min_interval = Duration::ZERO;
    config.nat = nat;
    let fleet = roost_sim::Fleet::start(config).await.unwrap();
    for device in fleet.devices() {
        let report = device.inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
    }
    fleet
}

/// Waits until the device's STUN client says its binding is known to the server.
async fn bound(cpe: &roost_sim::DeviceHandle) -> std::net::SocketAddr {
    for _ in 0..100 {
        let status = cpe.stun_status();
        if status.bound {
            return status.public_address.expect("a bound client knows its address");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the STUN binding was never made: {:?}", cpe.stun_status());
}

async fn wakes_devices_behind_nat(backend: Backend, export: &str) {
    let h = Harness::start(backend).await;
    let before = scrape(&h).await;
    let fleet = fleet_behind_nat(&h, export, 2, "NAT").await;
    let stun = h.stun_addr().expect("the STUN server runs");
    for cpe in fleet.devices() {
        let root = cpe.root();
        let value = |name: &str| cpe.value(&format!("{root}ManagementServer.{name}")).unwrap_or_default();
        // The bootstrap session pointed the STUN client at Roost, with credentials of its own.
        assert!(matches!(value("STUNEnable").as_str(), "1" | "true"), "{}", value("STUNEnable"));
        assert_eq!(value("STUNServerAddress"), "127.0.0.1", "the host the device reaches the ACS at");
        assert_eq!(value("STUNServerPort"), stun.port().to_string());
        assert_eq!(value("STUNUsername"), cpe.device_id());
        assert_eq!(value("STUNPassword").len(), 24);
        let public = bound(cpe).await;
        assert_ne!(public, stun);
        let device = h.device(&cpe.device_id()).await;
        assert_eq!(device["connection_request"]["udp_address"], public.to_string(), "{device}");
        assert!(device["connection_request"]["udp_binding_at"].is_string(), "{device}");
    }
    let (first, second) = (fleet.device(0), fleet.device(1));
    assert_ne!(first.stun_status().public_address, second.stun_status().public_address, "a port per device");

    // Its HTTP listener is unreachable: the request goes over UDP, through its own binding.
    let mark = first.session_count();
    let path = format!("/api/v1/devices/{}/connection-request", encode_id(&first.device_id()));
    let (status, outcome) = h.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    assert_eq!(outcome["outcome"], "udp_sent", "{outcome}");
    assert_eq!(outcome["address"], first.stun_status().public_address.unwrap().to_string());
    let woken = first.wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST")).await;
    assert!(woken.is_ok(), "{woken:?}");
    // The copies of one message (same id) start one session; the other device heard nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(first.stun_status().udp_connection_requests, 1, "{:?}", first.stun_status());
    assert_eq!(second.stun_status().udp_connection_requests, 0);
    assert_eq!(first.stun_status().refused, 0, "every datagram came from the STUN server's address");

    // A task that wakes the device waits for its session whichever way the request went.
    let tasks = format!("/api/v1/devices/{}/tasks?connection_request=true", encode_id(&second.device_id()));
    let name = format!("{}DeviceInfo.SoftwareVersion", second.root());
    let (status, task) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [name]})).await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["connection_request"]["outcome"], "udp_sent", "{task}");
    assert_eq!(task["status"], "done", "{task}");

    let after = scrape(&h).await;
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(grew("roost_connection_requests_total{transport=\"udp\",outcome=\"sent\"}"), 2.0, "{after}");
    assert!(grew("roost_stun_requests_total{outcome=\"bound\"}") >= 2.0, "{after}");
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn a_zte_ont_behind_nat_is_woken_over_udp(backend: Backend) {
        wakes_devices_behind_nat(backend, "zte-zxhn-h199a_tr098_genieacs-export.csv").await
    }
}

#[tokio::test]
async fn a_tplink_tr181_router_behind_nat_is_woken_over_udp() {
    wakes_devices_behind_nat(Backend::Sqlite, "tplink-xx230v_tr181_genieacs-export.csv").await
}

#[tokio::test]
async fn a_device_without_a_stun_client_is_left_alone() {
    let h = Harness::start(Backend::Sqlite).await;
    // The Huawei EG8145V5 export has no ManagementServer.STUN* parameters.
    let fleet = fleet_behind_nat(&h, "huawei-eg8145v5_tr098_genieacs-export.csv", 1, "NOSTUN").await;
    let cpe = fleet.device(0);
    assert!(!cpe.exists(&format!("{}ManagementServer.STUNEnable", cpe.root())));
    assert_eq!(cpe.stun_status().public_address, None);
    // Its unreachable listener is all there is: the request fails and says so.
    let (status, outcome) =
        h.post(&format!("/api/v1/devices/{}/connection-request", encode_id(&cpe.device_id())), json!({})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{outcome}");
    assert_eq!(outcome["outcome"], "unreachable", "{outcome}");
    fleet.stop().await;
    h.finish().await;
}

/// How long to wait for an answer that must not come: on a quiet machine, an answer given
/// wrongly would come well within it.
const UNANSWERED: Duration = Duration::from_millis(500);
/// How long to wait for an answer that must come: a signed request's is sent once its binding
/// is written, which a loaded runner can take a while over.
const ANSWERED: Duration = Duration::from_secs(10);

/// Sends `message` and returns the answer, if one comes within `wait`.
async fn exchange(socket: &UdpSocket, to: std::net::SocketAddr, message: &[u8], wait: Duration) -> Option<Vec<u8>> {
    socket.send_to(message, to).await.unwrap();
    let mut buffer = [0u8; 1500];
    match tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await {
        Ok(Ok((length, _))) => Some(buffer[..length].to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn forged_malformed_and_oversized_stun_messages_change_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let fleet = fleet_behind_nat(&h, "nokia-g-1425g-a_tr098_genieacs-export.csv", 1, "NATX").await;
    let victim = fleet.device(0);
    let public = bound(&victim).await;
    let stun = h.stun_addr().unwrap();
    let before = scrape(&h).await;
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let id = victim.device_id();

    // Not STUN, a truncated header, more than a Binding Request ever needs: no answer.
    assert_eq!(exchange(&attacker, stun, b"GET / HTTP/1.1\r\n\r\n", UNANSWERED).await, None);
    assert_eq!(exchange(&attacker, stun, &[0, 1, 0], UNANSWERED).await, None);
    let mut oversized = binding_request([1; 16], None, false, None);
    oversized.resize(2000, 0);
    oversized[2..4].copy_from_slice(&1980u16.to_be_bytes());
    assert_eq!(exchange(&attacker, stun, &oversized, UNANSWERED).await, None);
    // The victim's username, signed with a password that is not its own: dropped unanswered.
    let forged = binding_request([2; 16], Some(&id), true, Some("not-the-password"));
    assert_eq!(exchange(&attacker, stun, &forged, UNANSWERED).await, None);
    // Unsigned, it is asked to sign (401), and nothing moves.
    let unsigned = binding_request([3; 16], Some(&id), true, None);
    let answer = exchange(&attacker, stun, &unsigned, ANSWERED).await.expect("a challenge");
    assert_eq!(read_answer(&answer, &[3; 16]), Some(Answer::Error(401)));

    let device = h.device(&id).await;
    assert_eq!(device["connection_request"]["udp_address"], public.to_string(), "the binding did not move");
    // The server still serves: plain address discovery, answered with the sender's address.
    let answer =
        exchange(&attacker, stun, &binding_request([4; 16], None, false, None), ANSWERED).await.expect("an answer");
    assert_eq!(read_answer(&answer, &[4; 16]), Some(Answer::Mapped(attacker.local_addr().unwrap())));
    // And the device is still woken through its own binding.
    let mark = victim.session_count();
    let (status, outcome) = h.post(&format!("/api/v1/devices/{}/connection-request", encode_id(&id)), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    assert!(
        victim.wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST")).await.is_ok()
    );

    // A signed request moves the binding wherever it comes from; the same bytes sent again
    // from elsewhere (a captured request replayed) are dropped, and the binding stays. Shown on
    // a device whose own STUN client is not running (it would move its binding back).
    let quiet = fleet_of(&h, "nokia-g-1425g-a_tr098_genieacs-export.csv", 1, "QUIET", false).await;
    let id = quiet.device(0).device_id();
    let password = quiet.device(0).value(&format!("{}ManagementServer.STUNPassword", quiet.device(0).root())).unwrap();
    let signed = binding_request([5; 16], Some(&id), true, Some(&password));
    let answer = exchange(&attacker, stun, &signed, ANSWERED).await.expect("a signed request is answered");
    assert_eq!(read_answer(&answer, &[5; 16]), Some(Answer::Mapped(attacker.local_addr().unwrap())));
    assert!(roost_sim::stun::response_signed(&answer, &password), "the answer is signed as the request was");
    let moved = attacker.local_addr().unwrap().to_string();
    for _ in 0..50 {
        if h.device(&id).await["connection_request"]["udp_address"] == moved.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.device(&id).await["connection_request"]["udp_address"], moved.as_str());
    let replayer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(exchange(&replayer, stun, &signed, UNANSWERED).await, None, "a replay from elsewhere is not answered");
    assert_eq!(
        h.device(&id).await["connection_request"]["udp_address"],
        moved.as_str(),
        "nor does it move the binding"
    );

    let after = scrape(&h).await;
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(grew("roost_stun_requests_total{outcome=\"replayed\"}"), 1.0, "{after}");
    assert_eq!(grew("roost_stun_requests_total{outcome=\"malformed\"}"), 3.0, "{after}");
    assert_eq!(grew("roost_stun_requests_total{outcome=\"bad_integrity\"}"), 1.0, "{after}");
    assert!(grew("roost_stun_requests_total{outcome=\"challenged\"}") >= 1.0, "{after}");
    quiet.stop().await;
    fleet.stop().await;
    h.finish().await;
}
