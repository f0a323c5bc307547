//! The API's event stream (`GET /api/v1/events/stream`, Server-Sent Events): a caller sees its
//! own organizations' events as they happen — a task finished in a CPE's session arrives on the
//! stream — and never another tenant's; the platform sees every tenant's; types and a subject
//! narrow it; a caller holds at most eight at once; no credentials or an unknown type are
//! refused.

use std::time::Duration;

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

/// An open stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(h: &Harness, token: &str, query: &str) -> Self {
        let response =
            h.http.get(h.url(&format!("/api/v1/events/stream{query}"))).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next event (its `event:` and its `data:` as JSON) within `within`; None if none came.
    async fn next(&mut self, within: Duration) -> Option<(String, JsonValue)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()));
                // Keep-alive comments carry no event.
                if let (Some(kind), Some(data)) = (field("event:"), field("data:")) {
                    return Some((kind, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until none comes for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<(String, JsonValue)> {
        let mut events = Vec::new();
        while let Some(event) = self.next(quiet).await {
            events.push(event);
        }
        events
    }
}

async fn tenant_device(h: &Harness, org: &str) -> Fleet {
    h.org(org, None).await;
    h.informed_fleet(Some(org), DataModelKind::Tr098, 1, &org.to_uppercase(), |_| {}).await
}

on_both_backends! {
    async fn each_caller_streams_its_own_organizations_events_as_they_happen(backend: Backend) {
        let h = Harness::start(backend).await;
        let a = tenant_device(&h, "live-a").await;
        let b = tenant_device(&h, "live-b").await;
        let reader = h.user("live-a", "reader@live-a.example", "read-only").await;
        let (a_id, b_id) = (a.device(0).device_id(), b.device(0).device_id());

        let mut tenant = Stream::open(&h, &reader, "").await;
        let mut platform = Stream::open(&h, &h.token, "?types=task.*").await;
        let mut diagnostics = Stream::open(&h, &reader, "?types=diagnostics.completed").await;
        let mut one_device = Stream::open(&h, &h.token, &format!("?subject={}", encode_id(&b_id))).await;

        let read = json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.UpTime"]});
        for id in [&a_id, &b_id] {
            let task = h.run_task(id, read.clone()).await;
            assert_eq!(h.wait_task(task["id"].as_str().unwrap()).await["status"], "done");
        }

        let quiet = Duration::from_secs(3);
        let seen = tenant.drain(quiet).await;
        let done: Vec<&JsonValue> = seen.iter().filter(|(kind, _)| kind == "task.done").map(|(_, e)| e).collect();
        assert_eq!(done.len(), 1, "its own task, not the other tenant's: {seen:?}");
        assert_eq!(done[0]["subject"], a_id.as_str());
        assert_eq!(done[0]["org"], "live-a");
        assert_eq!(done[0]["payload"]["name"], "getParameterValues");
        assert!(seen.iter().all(|(_, e)| e["org"] == "live-a"), "nothing of another tenant: {seen:?}");

        let everyone: Vec<JsonValue> = platform.drain(quiet).await.into_iter().map(|(_, e)| e["subject"].clone()).collect();
        assert_eq!(everyone, [json!(a_id), json!(b_id)], "the platform's, in commit order");
        assert_eq!(diagnostics.drain(Duration::from_millis(500)).await, [], "only the types asked for");
        let about_b = one_device.drain(Duration::from_millis(500)).await;
        assert!(!about_b.is_empty() && about_b.iter().all(|(_, e)| e["subject"] == b_id.as_str()), "{about_b:?}");

        // A caller holds at most eight streams: the reader has two open; six more, then no more.
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(Stream::open(&h, &reader, "").await);
        }
        let ninth = h.http.get(h.url("/api/v1/events/stream")).bearer_auth(&reader).send().await.unwrap();
        assert_eq!(ninth.status(), StatusCode::TOO_MANY_REQUESTS);
        // Another caller still gets one (`open` asserts the 200).
        held.push(Stream::open(&h, &h.token, "?types=task.*").await);
        drop(held);

        // Refused: no credentials, a type that does not exist (named in `field`).
        let anonymous = h.http.get(h.url("/api/v1/events/stream")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let (status, problem) = h.get("/api/v1/events/stream?types=task.exploded").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["field"], "types", "{problem}");
        a.stop().await;
        b.stop().await;
        h.finish().await;
    }
}
