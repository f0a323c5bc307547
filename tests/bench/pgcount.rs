//! Counting what Roost asks of PostgreSQL: a TCP proxy between Roost and the database that
//! reads the frontend side of the wire protocol and writes one trace line per message that
//! matters, and the report that sums a time window of that trace.
//!
//! Why a proxy: Roost turns sqlx's statement logging off and the database may not preload
//! `pg_stat_statements`; the wire shows exactly what crossed it, round trips included (a
//! statement over the extended protocol is Bind/Execute/Sync, one round trip; a transaction's
//! `BEGIN` and `COMMIT` are simple queries, one each; sqlx's pool pings a connection with a
//! bare Sync before handing it out).
//!
//! Trace lines: `<unix ms>\t<connection>\t<kind>\t<sql>`, kind one of `query` (simple
//! query), `parse`, `execute`, and `sync-execute` / `sync-prepare` / `sync-ping` for the
//! round trip a Sync ends (after executes, after only a Parse/Describe, after nothing).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Startup-phase request codes a client may send before the StartupMessage.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

type Trace = Arc<Mutex<std::fs::File>>;

pub async fn proxy(listen: SocketAddr, upstream: String, trace_path: PathBuf) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&trace_path)
        .with_context(|| format!("opening {}", trace_path.display()))?;
    let trace: Trace = Arc::new(Mutex::new(file));
    println!("roost-bench pg-count listening on {} for {upstream}", listener.local_addr()?);
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, _) = accepted.context("accepting a connection")?;
                next_id += 1;
                let (id, upstream, trace) = (next_id, upstream.clone(), trace.clone());
                tokio::spawn(async move {
                    if let Err(error) = relay(id, client, &upstream, trace).await {
                        eprintln!("roost-bench pg-count: connection {id}: {error:#}");
                    }
                });
            }
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn record(trace: &Trace, id: u64, kind: &str, sql: &str) {
    let sql: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = format!("{}\t{id}\t{kind}\t{sql}\n", now_ms());
    let mut file = match trace.lock() {
        Ok(file) => file,
        Err(poisoned) => poisoned.into_inner(),
    };
    // A lost trace line shows up as a wrong count; it must not break the connection.
    let _ = file.write_all(line.as_bytes());
}

/// The NUL-terminated string at the start of `bytes`, and what follows it.
fn cstring(bytes: &[u8]) -> (String, &[u8]) {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => (String::from_utf8_lossy(&bytes[..end]).into_owned(), &bytes[end + 1..]),
        None => (String::from_utf8_lossy(bytes).into_owned(), &[]),
    }
}

async fn read_body(stream: &mut (impl AsyncReadExt + Unpin), len: u32) -> Result<Vec<u8>> {
    let Some(body_len) = (len as usize).checked_sub(4) else { bail!("message length {len} is below 4") };
    let mut body = vec![0; body_len];
    stream.read_exact(&mut body).await.context("reading a message body")?;
    Ok(body)
}

async fn relay(id: u64, client: TcpStream, upstream: &str, trace: Trace) -> Result<()> {
    let server = TcpStream::connect(upstream).await.with_context(|| format!("connecting to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();

    // Startup: untyped messages. Encryption requests are refused here, so that what follows
    // stays readable (the client then carries on in plain text, as `sslmode=prefer` allows).
    loop {
        let len = from_client.read_u32().await.context("reading the startup message")?;
        let body = read_body(&mut from_client, len).await?;
        let code = body.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            to_client.write_all(b"N").await?;
            continue;
        }
        to_server.write_all(&len.to_be_bytes()).await?;
        to_server.write_all(&body).await?;
        break;
    }
    let downstream = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });

    let mut prepared: HashMap<String, String> = HashMap::new();
    let mut portals: HashMap<String, String> = HashMap::new();
    let (mut executes, mut parses) = (0u32, 0u32);
    loop {
        let tag = match from_client.read_u8().await {
            Ok(tag) => tag,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error).context("reading from the client"),
        };
        let len = from_client.read_u32().await.context("reading a message length")?;
        let body = read_body(&mut from_client, len).await?;
        match tag {
            b'Q' => record(&trace, id, "query", &cstring(&body).0),
            b'P' => {
                let (name, rest) = cstring(&body);
                let (sql, _) = cstring(rest);
                record(&trace, id, "parse", &sql);
                prepared.insert(name, sql);
                parses += 1;
            }
            b'B' => {
                let (portal, rest) = cstring(&body);
                let (name, _) = cstring(rest);
                let sql = prepared.get(&name).cloned().unwrap_or_else(|| format!("<statement {name:?}>"));
                portals.insert(portal, sql);
            }
            b'E' => {
                let (portal, _) = cstring(&body);
                let sql = portals.get(&portal).map_or("<unknown portal>", String::as_str);
                record(&trace, id, "execute", sql);
                executes += 1;
            }
            b'S' => {
                let kind = match (executes, parses) {
                    (0, 0) => "sync-ping",
                    (0, _) => "sync-prepare",
                    _ => "sync-execute",
                };
                record(&trace, id, kind, "");
                (executes, parses) = (0, 0);
            }
            b'C' if body.first() == Some(&b'S') => {
                prepared.remove(&cstring(&body[1..]).0);
            }
            _ => {}
        }
        let mut message = Vec::with_capacity(body.len() + 5);
        message.push(tag);
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(&body);
        to_server.write_all(&message).await.context("writing to the server")?;
        if tag == b'X' {
            break;
        }
    }
    to_server.shutdown().await.ok();
    downstream.abort();
    Ok(())
}

/// Sums the trace between two instants, per session.
pub fn report(trace_path: &Path, from_ms: u128, to_ms: u128, sessions: u64) -> Result<()> {
    let text = std::fs::read_to_string(trace_path).with_context(|| format!("reading {}", trace_path.display()))?;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut statements: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.splitn(4, '\t');
        let (Some(at), Some(_conn), Some(kind), sql) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(at) = at.parse::<u128>() else { continue };
        if at < from_ms || at > to_ms {
            continue;
        }
        *kinds.entry(kind.to_owned()).or_default() += 1;
        if matches!(kind, "query" | "execute" | "parse") {
            *statements.entry((kind.to_owned(), sql.unwrap_or("").to_owned())).or_default() += 1;
        }
    }
    let get = |k: &str| kinds.get(k).copied().unwrap_or(0);
    let per = |n: u64| n as f64 / sessions.max(1) as f64;
    let executed = get("query") + get("execute");
    let round_trips = get("query") + get("sync-execute") + get("sync-prepare") + get("sync-ping");
    println!(
        "roost-bench ops sessions={sessions} statements_per_session={:.2} round_trips_per_session={:.2} \
         (simple_queries={:.2} extended_executes={:.2} pings={:.2} prepares={:.2})",
        per(executed),
        per(round_trips),
        per(get("query")),
        per(get("execute")),
        per(get("sync-ping")),
        per(get("sync-prepare")),
    );
    for ((kind, sql), n) in &statements {
        println!("  {:>8.2} {kind:<8} {sql}", per(*n));
    }
    Ok(())
}
