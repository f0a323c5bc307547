//! Events leaving Roost: a webhook receiver on loopback that fails, then hangs, then recovers,
//! with a server restart in between, gets every event of its organization exactly once, in order
//! per device, each signed; its delivery log shows the attempts; a delivery and a time range are
//! replayed. A receiver that never recovers has its webhook disabled, with an event and an audit
//! entry. The same events are published to the machine's NATS JetStream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roost::config::{Config, CpeAuthMode};
use roost_tests::on_both_backends;

use super::*;

const SECRET: &str = "a-receiver-secret-of-some-length";

fn quick(config: &mut Config) {
    config.events.poll = Duration::from_millis(100);
    // Long enough for an answer on a loaded machine (a receiver that took a delivery and was
    // timed out would get it twice); the hanging phase waits it out once per probe.
    config.events.timeout = Duration::from_secs(3);
    config.events.retry_base = Duration::from_millis(200);
    config.events.retry_max = Duration::from_secs(1);
    config.events.breaker_failures = 3;
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Fail = 0,
    Hang = 1,
    Accept = 2,
}

/// What the receiver took (answered 2xx to), in arrival order.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    kind: String,
    subject: String,
    org: Option<String>,
}

struct Receiver {
    url: String,
    mode: Arc<AtomicU8>,
    taken: Arc<Mutex<Vec<Received>>>,
    /// Requests whose signatures did not verify.
    forged: Arc<Mutex<Vec<String>>>,
    /// Requests of any outcome.
    requests: Arc<std::sync::atomic::AtomicU64>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    async fn start(mode: Mode) -> Self {
        Self::start_with(mode, None).await
    }

    /// An https receiver presenting `cert` and `key`.
    async fn start_tls(mode: Mode, cert: &std::path::Path, key: &std::path::Path) -> Self {
        Self::start_with(mode, Some((cert, key))).await
    }

    async fn start_with(mode: Mode, tls: Option<(&std::path::Path, &std::path::Path)>) -> Self {
        use axum::extract::State;
        use axum::http::HeaderMap;
        type Shared =
            (Arc<AtomicU8>, Arc<Mutex<Vec<Received>>>, Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicU64>);

        async fn hook(
            State((mode, taken, forged, requests)): State<Shared>,
            headers: HeaderMap,
            body: bytes::Bytes,
        ) -> StatusCode {
            requests.fetch_add(1, Ordering::Relaxed);
            match mode.load(Ordering::Relaxed) {
                0 => return StatusCode::INTERNAL_SERVER_ERROR,
                1 => {
                    // Longer than any delivery waits: Roost gives up first.
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return StatusCode::OK;
                }
                _ => {}
            }
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let event: JsonValue = serde_json::from_slice(&body).unwrap();
            // Both signatures, as a receiver computes them.
            let expected = {
                use hmac_sha256 as h;
                format!("sha256={}", hex::encode(h::mac(SECRET.as_bytes(), &body)))
            };
            let standard = {
                use base64::Engine;
                let signed =
                    [header("webhook-id").as_bytes(), b".", header("webhook-timestamp").as_bytes(), b".", &body]
                        .concat();
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(hmac_sha256::mac(SECRET.as_bytes(), &signed))
                )
            };
            let fresh = header("webhook-timestamp").parse::<i64>().is_ok_and(|t| {
                (t - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64).abs()
                    < 300
            });
            if header("x-roost-signature") != expected
                || header("webhook-signature") != standard
                || !fresh
                || header("webhook-id") != event["id"].as_str().unwrap_or_default()
            {
                forged.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                return StatusCode::UNAUTHORIZED;
            }
            taken.lock().unwrap().push(Received {
                id: event["id"].as_str().unwrap().to_owned(),
                kind: event["type"].as_str().unwrap().to_owned(),
                subject: event["subject"].as_str().unwrap().to_owned(),
                org: event["org"].as_str().map(str::to_owned),
            });
            StatusCode::NO_CONTENT
        }

        let shared: Shared = (Arc::new(AtomicU8::new(mode as u8)), Arc::default(), Arc::default(), Arc::default());
        let router = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(shared.clone());
        let (url, stop) = match tls {
            None => {
                let (addr, stop) = serve_loopback(router).await;
                (format!("http://{addr}/hook"), stop)
            }
            Some((cert, key)) => {
                let (addr, stop) = serve_loopback_tls(router, cert, key).await;
                (format!("https://{addr}/hook"), stop)
            }
        };
        Self { url, mode: shared.0, taken: shared.1, forged: shared.2, requests: shared.3, _stop: stop }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    fn taken(&self) -> Vec<Received> {
        self.taken.lock().unwrap().clone()
    }
}

/// HMAC-SHA256 by its definition (RFC 2104), so the receiver checks Roost's signatures with
/// code of its own.
mod hmac_sha256 {
    use sha2::{Digest, Sha256};

    pub fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::digest([pad(0x36), message.to_vec()].concat());
        Sha256::digest([pad(0x5c), inner.to_vec()].concat()).to_vec()
    }
}

async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes a webhook of `org` to `url` for `events` (a pattern), signed with [`SECRET`]: its id.
async fn webhook(h: &Harness, url: &str, events: &str, org: &str) -> String {
    let (status, made) =
        h.post("/api/v1/webhooks", json!({"url": url, "secret": SECRET, "events": [events], "org": org})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

/// Devices onboarded into `org` through its URL, informed once.
async fn fleet(h: &Harness, org: &str, count: usize, prefix: &str) -> Fleet {
    let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
    let mut config = FleetConfig::new(format!("{}cwmp/{org}", h.cwmp_url()), model);
    config.devices = count;
    config.serial_prefix = prefix.to_owned();
    config.start = StartMode::Manual;
    config.retry = false;
    let fleet = Fleet::start(config).await.unwrap();
    for device in fleet.devices() {
        assert!(device.inform_now(&[]).await.unwrap().is_ok());
    }
    fleet
}

/// The events of `families` recorded under `org`, by id.
async fn recorded(h: &Harness, org: &str, families: &[&str]) -> Vec<roost::store::events::Event> {
    let org_id = roost::store::orgs::by_slug(&h.app().store, org).await.unwrap().unwrap().id;
    let scope = roost::store::orgs::Scope::Orgs(vec![org_id]);
    let mut all = Vec::new();
    loop {
        let after = all.last().map(|e: &roost::store::events::Event| e.id);
        let page = roost::store::events::list(&h.app().store, &scope, None, after, 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    all.into_iter().filter(|e| families.iter().any(|f| e.r#type.starts_with(f))).collect()
}

on_both_backends! {
    async fn a_receiver_that_fails_hangs_and_recovers_gets_every_event_once_in_order(backend: Backend) {
        let mut h = Harness::start_configured(backend, CpeAuthMode::Open, quick).await;
        h.org("isp-hooks", None).await;
        h.org("isp-other", None).await;
        let receiver = Receiver::start(Mode::Fail).await;

        // Wrong requests: 422, nothing made.
        let own = h.url("/api/v1/devices");
        for (body, detail) in [
            (json!({"url": "ftp://192.0.2.1/x", "secret": SECRET}), "not http"),
            (json!({"url": own, "secret": SECRET}), "this server"),
            (json!({"url": receiver.url, "secret": SECRET, "events": ["nope.*"]}), "no event type"),
            (json!({"url": receiver.url, "secret": "short"}), "at least 16"),
            (json!({"url": receiver.url, "events": []}), "at least one"),
        ] {
            let (status, problem) = h.post("/api/v1/webhooks", body).await;
            assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_webhook")), "{problem}");
            assert!(problem["detail"].as_str().unwrap().contains(detail), "{detail}: {problem}");
        }
        let (status, made) = h
            .post("/api/v1/webhooks", json!({"url": receiver.url, "secret": SECRET, "events": ["device.*", "task.*"], "org": "isp-hooks"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        assert_eq!((made["secret"].as_str(), made["enabled"].as_bool()), (Some(SECRET), Some(true)), "{made}");
        let id = made["id"].as_str().unwrap().to_owned();
        let (_, shown) = h.get(&format!("/api/v1/webhooks/{id}")).await;
        assert!(shown.get("secret").is_none(), "the secret is shown once: {shown}");
        let (_, generated) = h.post("/api/v1/webhooks", json!({"url": receiver.url, "org": "isp-other", "events": ["rollout.*"]})).await;
        assert!(generated["secret"].as_str().unwrap().starts_with("whsec_"), "{generated}");

        // Events while the receiver fails: four devices join, each runs three tasks; another
        // organization's device is none of this webhook's business.
        let cpes = fleet(&h, "isp-hooks", 4, "HOOK").await;
        let other = fleet(&h, "isp-other", 1, "OTHR").await;
        for cpe in cpes.devices() {
            for _ in 0..3 {
                let path = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
                let task = json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.UpTime"]});
                let (status, queued) = h.post(&path, task).await;
                assert!(status.is_success(), "{queued}");
            }
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        }
        other.device(0).inform_now(&[]).await.unwrap();
        let expected = recorded(&h, "isp-hooks", &["device.", "task."]).await;
        assert_eq!(expected.iter().filter(|e| e.r#type == "task.done").count(), 12, "{expected:?}");

        // Failing, its circuit opens: attempts stop piling up.
        let opened = wait_for("the circuit to open", Duration::from_secs(20), async || {
            let (_, hook) = h.get(&format!("/api/v1/webhooks/{id}")).await;
            (hook["failures"].as_u64().unwrap_or(0) >= 3 && hook["open_until"].is_string()).then_some(hook)
        })
        .await;
        assert_eq!(opened["enabled"], true, "{opened}");
        let (_, log) = h.get(&format!("/api/v1/webhooks/{id}/deliveries?state=pending")).await;
        let failed = log["items"].as_array().unwrap().iter().find(|d| d["attempts"].as_u64() > Some(0)).cloned().unwrap();
        assert_eq!(failed["last_status"], 500, "{failed}");
        assert!(failed["last_error"].as_str().unwrap().contains("500"), "{failed}");

        // It hangs; the server restarts under the pending deliveries.
        receiver.set(Mode::Hang);
        let hung = wait_for("an attempt to time out", Duration::from_secs(20), async || {
            let (_, log) = h.get(&format!("/api/v1/webhooks/{id}/deliveries?state=pending")).await;
            log["items"].as_array().unwrap().iter().find(|d| d["last_error"].as_str().is_some_and(|e| e.contains("no answer"))).cloned()
        })
        .await;
        assert!(hung["last_status"].is_null(), "{hung}");
        h.restart().await;

        // It recovers: everything arrives, once, in order per device, signed.
        receiver.set(Mode::Accept);
        wait_for("every delivery", Duration::from_secs(30), async || {
            let (_, log) = h.get(&format!("/api/v1/webhooks/{id}/deliveries?state=pending")).await;
            log["items"].as_array().unwrap().is_empty().then_some(())
        })
        .await;
        let taken = receiver.taken();
        assert!(receiver.forged.lock().unwrap().is_empty(), "every signature verifies");
        let mut seen: HashMap<String, usize> = HashMap::new();
        for received in &taken {
            *seen.entry(received.id.clone()).or_default() += 1;
        }
        let wanted: HashMap<String, usize> = expected.iter().map(|e| (e.id.to_string(), 1)).collect();
        assert_eq!(seen, wanted, "each event exactly once: {taken:?}");
        assert!(taken.iter().all(|r| r.org.as_deref() == Some("isp-hooks")));
        let mut by_subject: HashMap<&str, Vec<i64>> = HashMap::new();
        for received in &taken {
            by_subject.entry(received.subject.as_str()).or_default().push(received.id.parse().unwrap());
        }
        for (subject, ids) in &by_subject {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{subject}'s events in order: {ids:?}");
        }
        assert!(by_subject.values().any(|ids| ids.len() >= 4), "a device's registration and its tasks: {by_subject:?}");
        let (_, healed) = h.get(&format!("/api/v1/webhooks/{id}")).await;
        assert_eq!((healed["failures"].as_u64(), healed.get("open_until")), (Some(0), None), "{healed}");
        let (_, log) = h.get(&format!("/api/v1/webhooks/{id}/deliveries?state=delivered&limit=1000")).await;
        let delivered = log["items"].as_array().unwrap();
        assert_eq!(delivered.len(), expected.len());
        assert!(delivered.iter().all(|d| d["last_status"] == 204 && d["delivered_at"].is_string()));
        assert!(delivered.iter().any(|d| d["attempts"].as_u64() > Some(1)), "retried ones among them");
        let kinds: Vec<&str> = taken.iter().map(|r| r.kind.as_str()).collect();
        assert!(kinds.contains(&"device.registered") && kinds.contains(&"task.done"), "{kinds:?}");

        // Replays: one delivery, then a time range (what the webhook subscribes to in it).
        let first = delivered.last().unwrap();
        let (status, replayed) =
            h.post(&format!("/api/v1/webhooks/{id}/deliveries/{}/replay", first["id"].as_str().unwrap()), json!({})).await;
        assert_eq!((status, replayed["queued"].as_u64()), (StatusCode::ACCEPTED, Some(1)), "{replayed}");
        let again = first["event_id"].as_str().unwrap().to_owned();
        wait_for("the replay", Duration::from_secs(10), async || {
            (receiver.taken().iter().filter(|r| r.id == again).count() == 2).then_some(())
        })
        .await;
        let (status, ranged) = h.post(&format!("/api/v1/webhooks/{id}/replay"), json!({"from": "2020-01-01T00:00:00Z"})).await;
        assert_eq!((status, ranged["queued"].as_u64()), (StatusCode::ACCEPTED, Some(expected.len() as u64)), "{ranged}");
        let (status, bad) = h.post(&format!("/api/v1/webhooks/{id}/replay"), json!({"from": "yesterday"})).await;
        assert_eq!((status, bad["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_webhook")), "{bad}");
        wait_for("the range replay", Duration::from_secs(20), async || {
            (receiver.taken().len() == 2 * expected.len() + 1).then_some(())
        })
        .await;

        // Deleted, it is sent nothing more.
        let (status, _) = h.request(reqwest::Method::DELETE, &format!("/api/v1/webhooks/{id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        cpes.stop().await;
        other.stop().await;
        h.finish().await;
    }

    async fn a_receiver_that_never_recovers_has_its_webhook_disabled(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            quick(config);
            config.events.breaker_failures = 2;
            config.events.disable_after = Duration::from_secs(2);
        })
        .await;
        h.org("isp-dead", None).await;
        let receiver = Receiver::start(Mode::Fail).await;
        let (status, made) = h.post("/api/v1/webhooks", json!({"url": receiver.url, "secret": SECRET, "org": "isp-dead"})).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let id = made["id"].as_str().unwrap().to_owned();
        let cpes = fleet(&h, "isp-dead", 3, "DEAD").await;
        let disabled = wait_for("the webhook to be disabled", Duration::from_secs(30), async || {
            let (_, hook) = h.get(&format!("/api/v1/webhooks/{id}")).await;
            (hook["enabled"] == false).then_some(hook)
        })
        .await;
        assert!(disabled["disabled_reason"].as_str().unwrap().contains("in a row"), "{disabled}");
        // Said by an event (of its organization) and in the audit log.
        let said = recorded(&h, "isp-dead", &["webhook."]).await;
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].subject, id);
        let (_, audit) = h.get("/api/v1/audit?action=webhook.disable").await;
        let entry = audit["items"].as_array().unwrap().iter().find(|e| e["target"] == format!("/api/v1/webhooks/{id}")).cloned();
        assert!(entry.is_some_and(|e| e["actor"] == "system"), "{audit}");
        // Disabled, it is sent nothing; its pending deliveries wait for it.
        let requests = receiver.requests.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(receiver.requests.load(Ordering::Relaxed), requests);
        // Enabled again with the receiver back, what waited arrives.
        receiver.set(Mode::Accept);
        let (status, enabled) = h.request(reqwest::Method::PATCH, &format!("/api/v1/webhooks/{id}"), Some(json!({"enabled": true}))).await;
        assert_eq!((status, enabled["enabled"].as_bool(), enabled["failures"].as_u64()), (StatusCode::OK, Some(true), Some(0)), "{enabled}");
        let registered = recorded(&h, "isp-dead", &["device.registered"]).await.len();
        assert_eq!(registered, 3);
        wait_for("what waited", Duration::from_secs(20), async || {
            (receiver.taken().iter().filter(|r| r.kind == "device.registered").count() == registered).then_some(())
        })
        .await;
        cpes.stop().await;
        h.finish().await;
    }

    async fn events_are_published_to_nats_jetstream(backend: Backend) {
        let stream = format!("ROOST_TEST_{}", uuid::Uuid::now_v7().simple());
        let prefix = format!("rt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let (named, prefixed) = (stream.clone(), prefix.clone());
        let h = Harness::start_configured(backend, CpeAuthMode::Open, move |config| {
            quick(config);
            config.events.nats_url = Some("nats://127.0.0.1:4222".into());
            config.events.nats_stream = named.clone();
            config.events.nats_prefix = prefixed.clone();
        })
        .await;
        h.org("isp-nats", None).await;
        let cpes = fleet(&h, "isp-nats", 3, "NATS").await;
        let expected = recorded(&h, "isp-nats", &["device."]).await;
        assert!(expected.len() >= 3, "{expected:?}");

        // Another consumer reads them from the stream: each once, on its subject, with its id.
        let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let found = wait_for("the stream", Duration::from_secs(20), async || jetstream.get_stream(&stream).await.ok()).await;
        let consumer = found
            .create_consumer(async_nats::jetstream::consumer::pull::Config { durable_name: None, ..Default::default() })
            .await
            .unwrap();
        let mut got: Vec<(String, JsonValue, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < expected.len() && Instant::now() < deadline {
            use futures::StreamExt;
            let mut batch = consumer.fetch().max_messages(100).expires(Duration::from_millis(500)).messages().await.unwrap();
            while let Some(Ok(message)) = batch.next().await {
                let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned()).unwrap_or_default();
                let body: JsonValue = serde_json::from_slice(&message.payload).unwrap();
                got.push((message.subject.to_string(), body, id));
                message.ack().await.unwrap();
            }
        }
        let org_events: Vec<_> = got.iter().filter(|(_, body, _)| body["org"] == "isp-nats").collect();
        let ids: Vec<String> = org_events.iter().map(|(_, body, _)| body["id"].as_str().unwrap().to_owned()).collect();
        let wanted: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort_by_key(|id| id.parse::<i64>().unwrap());
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "each once: {ids:?}");
        assert!(wanted.iter().all(|id| ids.contains(id)), "{wanted:?} in {ids:?}");
        for (subject, body, msg_id) in &org_events {
            assert_eq!(subject, &format!("{prefix}.isp-nats.{}", body["type"].as_str().unwrap()));
            assert_eq!(msg_id, body["id"].as_str().unwrap(), "deduplicated by the event's id");
        }
        jetstream.delete_stream(&stream).await.unwrap();
        cpes.stop().await;
        h.finish().await;
    }
}

/// A thousand devices on SQLite alone: the point is the webhook's isolation from sessions, which
/// the store does not change, and a thousand bootstraps twice would cost the suite minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_holds_up_no_session_and_loses_no_event() {
    let backend = Backend::Sqlite;
    let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
        quick(config);
        config.events.timeout = Duration::from_secs(3);
        config.events.concurrency = 32;
    })
    .await;
    h.org("isp-hang", None).await;
    let receiver = Receiver::start(Mode::Hang).await;
    let hook = json!({"url": receiver.url, "secret": SECRET, "org": "isp-hang", "events": ["device.registered"]});
    let (status, made) = h.post("/api/v1/webhooks", hook).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();

    // A thousand devices join (an event each) while every delivery hangs: each session ends
    // on its own, none waits for a delivery.
    let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
    let mut config = FleetConfig::new(format!("{}cwmp/isp-hang", h.cwmp_url()), model);
    config.devices = 1000;
    config.serial_prefix = "HANG".into();
    config.start = StartMode::Manual;
    config.retry = false;
    let fleet = Fleet::start(config).await.unwrap();
    let hung_before = receiver.requests.load(Ordering::Relaxed);
    use futures::StreamExt;
    futures::stream::iter(fleet.devices().iter().cloned())
        .for_each_concurrent(32, |cpe| async move { assert!(cpe.inform_now(&[]).await.unwrap().is_ok()) })
        .await;
    let registered = recorded(&h, "isp-hang", &["device.registered"]).await;
    assert_eq!(registered.len(), 1000);
    let (_, log) = h.get(&format!("/api/v1/webhooks/{id}/deliveries?state=delivered")).await;
    assert!(log["items"].as_array().unwrap().is_empty(), "nothing got through the hanging receiver: {log}");
    wait_for("deliveries under way to the hanging receiver", Duration::from_secs(20), async || {
        (receiver.requests.load(Ordering::Relaxed) > hung_before).then_some(())
    })
    .await;

    // Back, it gets all thousand, once each.
    receiver.set(Mode::Accept);
    wait_for("every delivery", Duration::from_secs(90), async || (receiver.taken().len() >= 1000).then_some(())).await;
    let taken = receiver.taken();
    let mut ids: Vec<&str> = taken.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((taken.len(), ids.len()), (1000, 1000));
    fleet.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn deliveries_go_over_https_to_receivers_whose_certificate_is_trusted() {
    // The CRM's certificate comes from the ISP's own CA, which Roost is told to trust.
    let crm_ca = Pki::new("crm");
    let (cert, key) = crm_ca.issue("crm", false);
    let trusted = crm_ca.ca();
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Open, move |config| {
        quick(config);
        config.events.ca_file = Some(trusted.clone());
    })
    .await;
    h.org("isp-tls", None).await;
    let crm = Receiver::start_tls(Mode::Accept, &cert, &key).await;
    assert!(crm.url.starts_with("https://127.0.0.1:"), "{}", crm.url);
    // A receiver whose certificate a CA nobody trusts signed: a man in the middle, say.
    let unknown_ca = Pki::new("unknown");
    let (cert, key) = unknown_ca.issue("impostor", false);
    let impostor = Receiver::start_tls(Mode::Accept, &cert, &key).await;
    // The CRM by name (the name its certificate has, sent as SNI), the impostor by address.
    let by_name = crm.url.replace("127.0.0.1", "localhost");
    let ids =
        [webhook(&h, &by_name, "device.*", "isp-tls").await, webhook(&h, &impostor.url, "device.*", "isp-tls").await];

    let cpes = fleet(&h, "isp-tls", 2, "TLSH").await;
    let registered = wait_for("both registrations over https", Duration::from_secs(20), async || {
        let taken = crm.taken();
        (taken.iter().filter(|r| r.kind == "device.registered").count() == 2).then_some(taken)
    })
    .await;
    assert!(registered.iter().all(|r| r.org.as_deref() == Some("isp-tls")), "{registered:?}");
    assert!(crm.forged.lock().unwrap().is_empty(), "signed as over http");

    // The impostor gets no request: the handshake fails, and the delivery log says why.
    let refused = wait_for("a refused handshake in the log", Duration::from_secs(20), async || {
        let (_, log) = h.get(&format!("/api/v1/webhooks/{}/deliveries?state=pending", ids[1])).await;
        log["items"].as_array().unwrap().iter().find_map(|d| d["last_error"].as_str().map(str::to_owned))
    })
    .await;
    assert!(refused.contains("the receiver's certificate was refused"), "{refused}");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert_eq!(impostor.requests.load(Ordering::Relaxed), 0, "nothing was sent to it");
    cpes.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_a_2xx_with_a_slow_body_is_delivered() {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Open, quick).await;
    h.org("isp-edge", None).await;
    // Where a redirect points: signed events must not follow it there.
    let elsewhere = Receiver::start(Mode::Accept).await;
    let location = elsewhere.url.clone();
    let router = axum::Router::new()
        .route(
            "/moved",
            axum::routing::post(move || {
                let location = location.clone();
                async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response() }
            }),
        )
        .route(
            "/slow",
            axum::routing::post(|| async {
                // The status at once, then a body that never ends: past `[events] timeout` (3 s).
                let chunks = futures::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"ok")) })
                    .chain(futures::stream::pending());
                (StatusCode::OK, axum::body::Body::from_stream(chunks)).into_response()
            }),
        );
    let (addr, _stop) = serve_loopback(router).await;
    let mut ids = Vec::new();
    for path in ["moved", "slow"] {
        ids.push(webhook(&h, &format!("http://{addr}/{path}"), "device.registered", "isp-edge").await);
    }
    let cpes = fleet(&h, "isp-edge", 1, "EDGE").await;

    let moved = wait_for("the redirect's answer in the log", Duration::from_secs(20), async || {
        let (_, log) = h.get(&format!("/api/v1/webhooks/{}/deliveries?state=pending", ids[0])).await;
        log["items"].as_array().unwrap().iter().find(|d| d["last_status"] == 307).cloned()
    })
    .await;
    assert!(moved["last_error"].as_str().unwrap().contains("answered 307"), "{moved}");
    assert_eq!(elsewhere.requests.load(Ordering::Relaxed), 0, "the redirect was not followed");

    // The 2xx counts though its body never ends: delivered once, not timed out and sent again.
    let delivered = wait_for("the slow receiver's delivery", Duration::from_secs(20), async || {
        let (_, log) = h.get(&format!("/api/v1/webhooks/{}/deliveries?state=delivered", ids[1])).await;
        log["items"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(
        (delivered["last_status"].as_u64(), delivered["attempts"].as_u64()),
        (Some(200), Some(1)),
        "{delivered}"
    );
    cpes.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn webhooks_subscribed_to_the_same_events_each_get_every_one() {
    // A CRM and a billing system on the same organization's events: each event has a delivery
    // to each, claimed in the same round.
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Open, quick).await;
    h.org("isp-both", None).await;
    let (crm, billing) = (Receiver::start(Mode::Accept).await, Receiver::start(Mode::Accept).await);
    for receiver in [&crm, &billing] {
        webhook(&h, &receiver.url, "device.registered", "isp-both").await;
    }
    let cpes = fleet(&h, "isp-both", 3, "BOTH").await;
    let expected = recorded(&h, "isp-both", &["device.registered"]).await;
    assert_eq!(expected.len(), 3);
    for (name, receiver) in [("the CRM", &crm), ("billing", &billing)] {
        wait_for(&format!("{name} to get all three"), Duration::from_secs(20), async || {
            (receiver.taken().len() >= 3).then_some(())
        })
        .await;
        let mut ids: Vec<String> = receiver.taken().iter().map(|r| r.id.clone()).collect();
        ids.sort();
        let mut wanted: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
        wanted.sort();
        assert_eq!(ids, wanted, "{name}");
    }
    cpes.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn an_unreadable_webhook_ca_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    for (file, says) in [(dir.path().join("missing.pem"), "reading the CA certificates"), (not_pem, "no usable CA")] {
        let mut config = Config::for_loopback(dir.path().to_path_buf(), None);
        config.events.ca_file = Some(file.clone());
        let Err(error) = roost::app::App::open(config, None).await else { panic!("{} was taken", file.display()) };
        assert!(format!("{error:#}").contains(says), "{}: {error:#}", file.display());
    }
}

#[test]
fn the_receivers_hmac_is_the_standard_one() {
    // RFC 4231, test case 2.
    assert_eq!(
        hex::encode(hmac_sha256::mac(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
