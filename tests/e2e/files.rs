//! The file store over REST and to devices: an upload streamed and checksummed, listed and
//! refused when wrong; a `download` task of a stored file carried out by a simulated device
//! through a per-device token URL on the CWMP listener; byte ranges for resumed downloads;
//! deletion that takes the URL with it.

use std::time::Duration;

use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost_tests::on_both_backends;
use sha2::Digest;

use super::*;

/// Bytes that do not repeat in any short period, so a range served from the wrong offset shows.
fn image(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

async fn upload(h: &Harness, query: &str, body: Vec<u8>) -> (StatusCode, JsonValue) {
    let response = h
        .http
        .post(h.url(&format!("/api/v1/files?{query}")))
        .bearer_auth(&h.token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(JsonValue::Null))
}

/// Sends `head`, then `body` piece by piece while the answer is read; returns the answer's
/// first bytes. A reset before any answer fails the test.
async fn raw_request(h: &Harness, head: String, body: impl Iterator<Item = Vec<u8>> + Send + 'static) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(h.url("").trim_start_matches("http://")).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        for piece in body {
            // The server may stop reading once it has answered.
            if writer.write_all(&piece).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut answer = vec![0u8; 4096];
    let read =
        tokio::time::timeout(Duration::from_secs(20), reader.read(&mut answer)).await.expect("an answer in time");
    let read = read.expect("an answer, not a reset");
    sender.abort();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// A store smaller than the default, yet larger than the API's limit of a buffered body (4 MiB):
/// an upload between the two shows it streams past that limit.
fn small_store(config: &mut roost::config::Config) {
    config.files.max_bytes = 6 * 1024 * 1024;
    assert!(config.api.max_body_bytes < 5 * 1024 * 1024);
}

on_both_backends! {
    async fn files_are_stored_listed_and_refused_when_wrong(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, small_store).await;
        let bytes = image(3 * 1024 * 1024 + 17);
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let query = format!(
            "name=HG8245H-V3R017.bin&oui=00259E&product_class=HG8245H&version=V3R017C10S115&size={}&sha256={sha256}",
            bytes.len()
        );
        let (status, stored) = upload(&h, &query, bytes.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        assert_eq!(stored["size"], bytes.len() as u64);
        assert_eq!(stored["sha256"], sha256.as_str());
        assert_eq!(stored["file_type"], "1 Firmware Upgrade Image", "the default type");
        assert_eq!((stored["product_class"].as_str(), stored["version"].as_str()), (Some("HG8245H"), Some("V3R017C10S115")));
        let id = stored["id"].as_str().unwrap().to_owned();
        let (status, shown) = h.get(&format!("/api/v1/files/{id}")).await;
        assert_eq!((status, &shown["sha256"]), (StatusCode::OK, &stored["sha256"]));
        let (_, listed) = h.get("/api/v1/files?name=HG8245H-V3R017.bin").await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");

        // Refused, with nothing kept: a name taken, a type CWMP does not have, a size or a
        // checksum that is not what arrived, a file past the store's limit.
        let (status, taken) = upload(&h, "name=HG8245H-V3R017.bin", image(10)).await;
        assert_eq!((status, taken["code"].as_str()), (StatusCode::CONFLICT, Some("file_exists")), "{taken}");
        let (status, typed) = upload(&h, "name=x.bin&file_type=firmware", image(10)).await;
        assert_eq!((status, typed["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_file")), "{typed}");
        let (status, sized) = upload(&h, "name=x.bin&size=11", image(10)).await;
        assert_eq!((status, sized["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_file")), "{sized}");
        let wrong = "0".repeat(64);
        let (status, hashed) = upload(&h, &format!("name=x.bin&sha256={wrong}"), image(10)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{hashed}");
        // Past the store's limit, whether declared up front or found on the way, the answer
        // reaches a client still sending (past what socket buffers hold): the rest is read and
        // dropped, not reset.
        let (status, large) = upload(&h, "name=large.bin", image(40 * 1024 * 1024)).await;
        assert_eq!((status, large["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")), "{large}");
        assert!(large["detail"].as_str().unwrap().contains("6291456 bytes a file may have"), "the store's limit: {large}");
        let chunked = format!(
            "POST /api/v1/files?name=chunked.bin HTTP/1.1\r\nHost: roost\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            h.token
        );
        let chunk = [format!("{:x}\r\n", 1024 * 1024).into_bytes(), image(1024 * 1024), b"\r\n".to_vec()].concat();
        let answer = raw_request(&h, chunked, std::iter::repeat_n(chunk, 40).chain([b"0\r\n\r\n".to_vec()])).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "the refusal, not a reset: {answer}");
        // A client that waits on `Expect: 100-continue` is refused before it sends a byte.
        let expecting = format!(
            "POST /api/v1/files?name=expecting.bin HTTP/1.1\r\nHost: roost\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 104857600\r\nExpect: 100-continue\r\n\r\n",
            h.token
        );
        let answer = raw_request(&h, expecting, std::iter::empty()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "refused without a 100 Continue: {answer}");
        let (_, listed) = h.get("/api/v1/files").await;
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "nothing else kept: {listed}");
        let kept = std::fs::read_dir(h.app().config.data_dir.join("files")).unwrap().count();
        assert_eq!(kept, 1, "only the stored file's contents are on disk");
        // Larger than any body the API buffers, within the store's limit: streamed, stored.
        let (status, streamed) = upload(&h, "name=streamed.bin", image(5 * 1024 * 1024)).await;
        assert_eq!((status, streamed["size"].as_u64()), (StatusCode::CREATED, Some(5 * 1024 * 1024)), "{streamed}");

        // An organization holding files is not deleted from under them.
        h.org("isp-files", None).await;
        let (status, theirs) = upload(&h, "name=config.xml&file_type=3 Vendor Configuration File&org=isp-files", image(64)).await;
        assert_eq!((status, theirs["org"].as_str()), (StatusCode::CREATED, Some("isp-files")), "{theirs}");
        let (status, kept) = h.request(reqwest::Method::DELETE, "/api/v1/orgs/isp-files", None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{kept}");
        assert!(kept["detail"].as_str().unwrap().contains("1 file"), "{kept}");
        h.finish().await;
    }

    async fn a_stored_file_reaches_its_device_by_token_and_ranges(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 2, "FILES").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let bytes = image(2 * 1024 * 1024 + 5);
        let (status, stored) = upload(&h, "name=EG8145V5-V5R021C00S100.bin&version=V5R021C00S100", bytes.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        let file = stored["id"].as_str().unwrap().to_owned();

        // A url and a file at once, or a file nobody stored: refused before anything is queued.
        let both = json!({"name": "download", "file": file, "url": "http://192.0.2.1/x.bin"});
        let (status, refused) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&id)), both).await;
        assert_eq!((status, refused["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_task")), "{refused}");
        let none = json!({"name": "download", "file": "999999"});
        let (status, _) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&id)), none).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // The device downloads it from Roost's CWMP listener, the size checked against the
        // FileSize it was given, and reports the transfer complete.
        let mark = cpe.session_count();
        let task = h.run_task(&id, json!({"name": "download", "file": file})).await;
        let task_id = task["id"].as_str().unwrap().to_owned();
        // The task shows the file and blanks the token, which fetches it; the device is sent
        // the sealed original.
        let files_base = format!("{}/files/", h.cwmp_url().trim_end_matches('/'));
        assert_eq!(task["request"]["url"], format!("{files_base}********/EG8145V5-V5R021C00S100.bin").as_str(), "{task}");
        assert_eq!(task["request"]["file"], file.as_str(), "{task}");
        assert_eq!(task["request"]["fileSize"], bytes.len() as u64, "{task}");
        assert_eq!(task["request"]["fileType"], "1 Firmware Upgrade Image", "{task}");
        let row = roost::store::tasks::by_id(&h.app().store, task_id.parse().unwrap()).await.unwrap().unwrap();
        let sealed: JsonValue =
            serde_json::from_str(&h.app().secrets.open_string(row.sealed_body.as_deref().unwrap()).unwrap()).unwrap();
        let url = sealed["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&files_base) && !url.contains("********"), "{url}");
        assert!(url.ends_with("/EG8145V5-V5R021C00S100.bin"), "firmware checks the name it is given: {url}");
        if task["status"] == "pending" {
            cpe.wait_for_session(mark, Duration::from_secs(20), |r| r.has_event("7 TRANSFER COMPLETE")).await.unwrap();
        }
        let done = h.wait_task(&task_id).await;
        assert_eq!(done["status"], "done", "{done}");

        // What a device resuming a download asks: the rest, from an offset.
        let client = reqwest::Client::new();
        let whole = client.get(&url).send().await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK);
        assert_eq!(whole.headers()["accept-ranges"], "bytes");
        assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let rest = client.get(&url).header("Range", "bytes=1048576-").send().await.unwrap();
        assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
        let total = bytes.len();
        assert_eq!(rest.headers()["content-range"], format!("bytes 1048576-{}/{total}", total - 1).as_str());
        assert_eq!(rest.bytes().await.unwrap().as_ref(), &bytes[1_048_576..]);
        let past = client.get(&url).header("Range", format!("bytes={total}-")).send().await.unwrap();
        assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(past.headers()["content-range"], format!("bytes */{total}").as_str());
        let head = client.head(&url).header("Range", "bytes=0-9").send().await.unwrap();
        assert_eq!((head.status(), head.headers()["content-length"].to_str().unwrap()), (StatusCode::OK, total.to_string().as_str()));

        // A file is named by its name too (as GenieACS clients do); a tenant's file goes to that
        // tenant's devices only, not to this unclaimed one.
        let by_name = json!({"name": "download", "file": "EG8145V5-V5R021C00S100.bin"});
        let (status, queued) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&id)), by_name).await;
        assert_eq!((status, queued["request"]["file"].as_str()), (StatusCode::CREATED, Some(file.as_str())), "{queued}");
        h.org("isp-fw", None).await;
        let (status, theirs) = upload(&h, "name=tenant.bin&org=isp-fw", image(64)).await;
        assert_eq!(status, StatusCode::CREATED, "{theirs}");
        let foreign = json!({"name": "download", "file": theirs["id"]});
        let (status, refused) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&id)), foreign).await;
        assert_eq!((status, refused["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_task")), "{refused}");

        // Another token, or the file deleted: nothing to fetch.
        let forged = format!("{}/files/{}", h.cwmp_url().trim_end_matches('/'), roost::secrets::random_token(""));
        assert_eq!(client.get(&forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
        let (status, _) = h.request(reqwest::Method::DELETE, &format!("/api/v1/files/{file}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
        assert_eq!(std::fs::read_dir(h.app().config.data_dir.join("files")).unwrap().count(), 1, "the tenant's file");
        fleet.stop().await;
        h.finish().await;
    }
}
