//! The null ACS: the least a server can do for a periodic-Inform session, as a yardstick for
//! Roost's ceiling (docs/BENCHMARKS.md). It answers an Inform with canned InformResponse bytes
//! and the empty POST with 204, on hyper like Roost, with no authentication, no parsing beyond
//! telling the two apart, no database. Driven by the same load generator on the same cores,
//! the ratio of Roost's sessions/s to its own says how much of the machine Roost's own work
//! takes.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The InformResponse of CWMP 1.0, as Roost encodes one (prefixes `SOAP-ENV` and `cwmp`).
const INFORM_RESPONSE: &str = concat!(
    "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" ",
    "xmlns:SOAP-ENC=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" ",
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:cwmp=\"urn:dslforum-org:cwmp-1-0\">",
    "<SOAP-ENV:Header></SOAP-ENV:Header><SOAP-ENV:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes>",
    "</cwmp:InformResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
);

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The body is read whole, as any server must before answering.
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let response = if body.is_empty() {
        let mut empty = Response::new(Full::new(Bytes::new()));
        *empty.status_mut() = StatusCode::NO_CONTENT;
        empty
    } else {
        let mut inform = Response::new(Full::new(Bytes::from_static(INFORM_RESPONSE.as_bytes())));
        if let Ok(value) = "text/xml; charset=utf-8".parse() {
            inform.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        inform
    };
    Ok(response)
}

/// Serves until the process is stopped.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!("null ACS on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_answer_is_an_inform_response_the_simulator_reads() {
        let envelope = roost_cwmp::decode_acs_message(INFORM_RESPONSE.as_bytes()).unwrap();
        assert!(
            matches!(envelope.body, roost_cwmp::AcsBody::Response(roost_cwmp::AcsResponse::Inform)),
            "{envelope:?}"
        );
    }
}
