//! TLS on the listeners (rustls): a certificate chain and key from PEM files, TLS 1.2 and 1.3
//! with the provider's suites (all AEAD with forward secrecy), session resumption, and on the
//! CWMP listener optionally client certificates checked against a CA (mTLS).
//! Also the configuration of Roost's one outbound TLS client, webhook deliveries
//! ([`client_config`]): the system's CAs and `[events] ca_file`, read at start.
//!
//! The files are read again when they change (looked at every `reload_interval`) or on SIGHUP:
//! a renewed certificate (an ACME client, a Kubernetes secret) is served from the next
//! handshake, without a restart. A pair that does not load — a missing file, a key that is not
//! the certificate's, an expired certificate — stops the server at start with the reason; on a
//! reload the old pair keeps serving and the reason is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// TLS 1.2 sessions a listener keeps for clients that resume by session id: a CPE's next
/// periodic Inform within the cache's reach skips the certificate and key exchange. TLS 1.3
/// (and TLS 1.2 clients that take tickets) resume from tickets the listener encrypts instead:
/// rustls's stateful TLS 1.3 tickets are single-use, and taking one out of this cache searches
/// its whole queue, which with 64 Ki entries took a third of the server's time and made a
/// resumed handshake slower than a full one (docs/BENCHMARKS.md).
const RESUMABLE_SESSIONS: usize = 64 * 1024;

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// Every client presents a certificate the CA signed; others fail the handshake.
    #[default]
    Required,
    /// A client may present one (it must then be the CA's); clients without one are let in
    /// and authenticate as usual.
    Optional,
}

/// What one listener's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) client certificates must chain to; none: no client certificates.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl ListenerTls {
    fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        files.extend(self.client_ca.as_deref());
        files
    }
}

/// Builds the server configuration of `tls`, checking what rustls does not: that the leaf
/// certificate is valid now.
pub fn server_config(tls: &ListenerTls, now: SystemTime) -> Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("reading the certificate {}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the certificate {}", tls.cert.display()))?;
    let Some(leaf) = chain.first() else {
        bail!("{} holds no certificate (PEM `BEGIN CERTIFICATE`)", tls.cert.display());
    };
    let (not_before, not_after) =
        validity(leaf).with_context(|| format!("reading the validity of the certificate in {}", tls.cert.display()))?;
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    if now < not_before {
        bail!("the certificate in {} is not valid before {not_before}", tls.cert.display());
    }
    if now >= not_after {
        bail!("the certificate in {} expired at {not_after}", tls.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("reading the private key {}", tls.key.display()))?;
    let provider = ring_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choosing the TLS versions")?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            add_cas(&mut roots, ca).context("the client CA")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match tls.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(verifier.build().context("building the client-certificate check")?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => anyhow!(
            "the private key in {} is not the key of the certificate in {}",
            tls.key.display(),
            tls.cert.display()
        ),
        other => anyhow!("{} and {}: {other}", tls.cert.display(), tls.key.display()),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
    // Keys of this process, rotated by rustls every few hours: a ticket another replica (or
    // this one before a restart or a reload) made is refused, and that CPE's handshake is a
    // full one.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("making the TLS ticket keys")?;
    Ok(Arc::new(config))
}

/// The configuration Roost's outbound TLS (webhook deliveries) checks servers with: the
/// system's trusted CAs (read where OpenSSL reads them; `SSL_CERT_FILE` and `SSL_CERT_DIR` say
/// elsewhere) and those in `extra_ca` (PEM), for receivers whose certificate a private CA signed.
/// TLS 1.2 and 1.3, as the listeners.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(system_roots().iter().cloned());
    if let Some(ca) = extra_ca {
        add_cas(&mut roots, ca)?;
    }
    if roots.is_empty() {
        tracing::warn!(
            "no trusted CA certificates: deliveries to https webhooks will fail their handshakes; install the \
             system's CA bundle (Debian's ca-certificates) or set [events] ca_file"
        );
    }
    Ok(rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choosing the TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The crypto of every TLS connection Roost makes or takes: ring, no C toolchain beyond what
/// ring builds itself. Its provider has no post-quantum key exchange, which rustls now flags;
/// aws-lc-rs has it, at the price of cmake.
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Adds the CA certificates in `file` (PEM) to `roots`: an error when none can be used.
fn add_cas(roots: &mut rustls::RootCertStore, file: &Path) -> Result<()> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("reading the CA certificates {}", file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the CA certificates {}", file.display()))?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        bail!("{} holds no usable CA certificate", file.display());
    }
    Ok(())
}

/// The system's trusted CAs, read once per process (a bundle of ~150 certificates, each parsed):
/// every server of a test process takes them from here. A CA added to the system, like a
/// changed `[events] ca_file`, takes a restart.
fn system_roots() -> &'static [rustls::pki_types::TrustAnchor<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::TrustAnchor<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("reading the system's trusted CA certificates: {error}");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (_, unusable) = roots.add_parsable_certificates(found.certs);
        if unusable > 0 {
            tracing::debug!("{unusable} of the system's CA certificates could not be parsed");
        }
        roots.roots
    })
}

/// One listener's TLS, read again when its files change or on [`Reloading::reload`].
#[derive(Debug)]
pub struct Reloading {
    tls: ListenerTls,
    current: RwLock<Arc<ServerConfig>>,
    /// What the files looked like when last read.
    seen: Mutex<Vec<Stamp>>,
    /// When the last read failed, if it did.
    failed: Mutex<Option<std::time::Instant>>,
}

/// What a file looks like: its modification time and length, and on Unix its inode and change
/// time (a file replaced, or its permissions mended, changes one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64, i64)>);

fn stamps(files: &[&Path]) -> Vec<Stamp> {
    files
        .iter()
        .map(|file| {
            // A Kubernetes secret is a symlink swapped for another: follow it.
            let Ok(meta) = std::fs::metadata(file) else { return Stamp(None) };
            #[cfg(unix)]
            let (inode, changed) = {
                use std::os::unix::fs::MetadataExt;
                (meta.ino(), meta.ctime_nsec() + meta.ctime() * 1_000_000_000)
            };
            #[cfg(not(unix))]
            let (inode, changed) = (0, 0);
            Stamp(meta.modified().ok().map(|modified| (modified, meta.len(), inode, changed)))
        })
        .collect()
}

/// A pair that failed to load is tried again this often even if its files look the same: a
/// certificate refused as not yet valid becomes valid with time alone.
const RETRY_FAILED: Duration = Duration::from_secs(60);

impl Reloading {
    /// Loads `tls` now: an error stops the server.
    pub fn load(tls: ListenerTls) -> Result<Arc<Self>> {
        let seen = stamps(&tls.files());
        let config = server_config(&tls, SystemTime::now())?;
        Ok(Arc::new(Self { tls, current: RwLock::new(config), seen: Mutex::new(seen), failed: Mutex::new(None) }))
    }

    /// The acceptor of the next handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }

    /// Reads the files again if they changed since last read (`forced`: whether or not). A
    /// pair that does not load leaves the current one serving, and says why.
    pub fn reload(&self, forced: bool) -> Result<bool> {
        let now = stamps(&self.tls.files());
        let retry = self.failed.lock().is_ok_and(|failed| failed.is_some_and(|at| at.elapsed() >= RETRY_FAILED));
        {
            let Ok(mut seen) = self.seen.lock() else { return Ok(false) };
            if !forced && !retry && *seen == now {
                return Ok(false);
            }
            // Looked at whether it loads or not: a broken file is reported once (then once a
            // minute), not every interval, and read again when it changes next.
            *seen = now;
        }
        let config = match server_config(&self.tls, SystemTime::now()) {
            Ok(config) => config,
            Err(error) => {
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = Some(std::time::Instant::now());
                }
                return Err(error);
            }
        };
        if let Ok(mut failed) = self.failed.lock() {
            *failed = None;
        }
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(true)
    }

    pub fn certificate(&self) -> &Path {
        &self.tls.cert
    }
}

/// Keeps `listeners` current until `stop`: their files looked at every `interval`, and read
/// again on SIGHUP whatever they look like.
pub async fn reload_loop(
    listeners: Vec<(&'static str, Arc<Reloading>)>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    if listeners.is_empty() {
        let _ = stop.wait_for(|stop| *stop).await;
        return Ok(());
    }
    let mut hangup = hangups();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = next_hangup(&mut hangup) => true,
            _ = stop.changed() => return Ok(()),
        };
        for (listener, tls) in &listeners {
            match tls.reload(forced) {
                Ok(true) => tracing::info!(listener, cert = %tls.certificate().display(), "TLS certificate reloaded"),
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(listener, "TLS certificate not reloaded, the previous one keeps serving: {error:#}")
                }
            }
        }
    }
}

#[cfg(unix)]
fn hangups() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!("cannot listen for SIGHUP (TLS files are still looked at): {error}");
            None
        }
    }
}

#[cfg(unix)]
async fn next_hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
fn hangups() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) -> Option<()> {
    std::future::pending().await
}

/// A certificate's validity (`notBefore`, `notAfter`), read from its DER: rustls checks the
/// peer's, never the server's own, and an expired certificate served is an outage at every
/// CPE that checks it.
pub fn validity(der: &[u8]) -> Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xA0;
    let (tag, certificate, _) = tlv(der).context("not DER")?;
    if tag != SEQUENCE {
        bail!("not a certificate");
    }
    let (tag, tbs, _) = tlv(certificate).context("no tbsCertificate")?;
    if tag != SEQUENCE {
        bail!("no tbsCertificate");
    }
    let mut rest = tbs;
    // [0] version (absent in v1), serialNumber, signature, issuer, then validity.
    let (tag, _, after) = tlv(rest).context("truncated tbsCertificate")?;
    if tag == VERSION {
        rest = after;
    }
    for field in ["serialNumber", "signature", "issuer"] {
        let (_, _, after) = tlv(rest).with_context(|| format!("no {field}"))?;
        rest = after;
    }
    let (tag, validity, _) = tlv(rest).context("no validity")?;
    if tag != SEQUENCE {
        bail!("no validity");
    }
    let (before_tag, before, rest) = tlv(validity).context("no notBefore")?;
    let (after_tag, after, _) = tlv(rest).context("no notAfter")?;
    Ok((time(before_tag, before).context("notBefore")?, time(after_tag, after).context("notAfter")?))
}

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let length = rest[..octets].iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[octets..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// An X.509 time: UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, content: &[u8]) -> Result<chrono::DateTime<chrono::Utc>> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let text = std::str::from_utf8(content).context("not text")?;
    let full = match tag {
        UTC_TIME => {
            let year: u32 = text.get(..2).and_then(|y| y.parse().ok()).context("no year")?;
            format!("{}{text}", if year >= 50 { "19" } else { "20" })
        }
        GENERALIZED_TIME => text.to_owned(),
        other => bail!("not a time (tag {other:#x})"),
    };
    let parsed = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%SZ")
        .with_context(|| format!("{text:?} is not a time"))?;
    Ok(parsed.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` valid from `from` to `to` (years), and its key,
    /// written into `dir` as `<name>.pem` and `<name>.key`.
    fn pair(dir: &Path, name: &str, from: i32, to: i32) -> ListenerTls {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        ListenerTls { cert: cert_path, key: key_path, client_ca: None, client_auth: ClientAuth::Required }
    }

    #[test]
    fn the_validity_of_a_real_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let tls = pair(dir.path(), "a", 2020, 2049);
        let der = CertificateDer::from_pem_file(&tls.cert).unwrap();
        let (from, to) = validity(&der).unwrap();
        assert_eq!(from.to_rfc3339(), "2020-01-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2049-01-01T00:00:00+00:00");
        assert!(validity(&der[..der.len() / 2]).is_err(), "cut short");
    }

    #[test]
    fn a_pair_that_cannot_serve_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = pair(dir.path(), "good", 2020, 2090);
        let config = server_config(&good, SystemTime::now()).unwrap();
        // Sessions resume from sealed tickets, not by taking entries out of the session cache
        // (slow at its size: see `RESUMABLE_SESSIONS`).
        assert!(config.ticketer.enabled(), "stateless tickets");
        let expired = pair(dir.path(), "expired", 2001, 2002);
        let error = server_config(&expired, SystemTime::now()).unwrap_err().to_string();
        assert!(error.contains("expired at 2002-01-01"), "{error}");
        let early = pair(dir.path(), "early", 2080, 2090);
        assert!(server_config(&early, SystemTime::now()).unwrap_err().to_string().contains("not valid before"));
        let other = pair(dir.path(), "other", 2020, 2090);
        let mismatched = ListenerTls { key: other.key.clone(), ..good.clone() };
        let error = format!("{:#}", server_config(&mismatched, SystemTime::now()).unwrap_err());
        assert!(error.contains("is not the key of the certificate"), "{error}");
        let missing = ListenerTls { cert: dir.path().join("nowhere.pem"), ..good.clone() };
        let error = format!("{:#}", server_config(&missing, SystemTime::now()).unwrap_err());
        assert!(error.contains("nowhere.pem"), "{error}");
        std::fs::write(dir.path().join("empty.pem"), "no PEM here\n").unwrap();
        let empty = ListenerTls { cert: dir.path().join("empty.pem"), ..good };
        let error = format!("{:#}", server_config(&empty, SystemTime::now()).unwrap_err());
        assert!(error.contains("holds no certificate"), "{error}");
    }

    #[test]
    fn a_changed_pair_is_read_again_and_a_broken_one_leaves_the_old_serving() {
        let dir = tempfile::tempdir().unwrap();
        let tls = pair(dir.path(), "live", 2020, 2090);
        let reloading = Reloading::load(tls.clone()).unwrap();
        assert!(!reloading.reload(false).unwrap(), "nothing changed");
        let before = Arc::as_ptr(&reloading.current.read().unwrap().clone());
        // A renewal: new files in place (the length of the PEM may match; the time differs).
        std::thread::sleep(Duration::from_millis(20));
        let renewed = pair(dir.path(), "renewed", 2020, 2091);
        std::fs::copy(&renewed.cert, &tls.cert).unwrap();
        std::fs::copy(&renewed.key, &tls.key).unwrap();
        assert!(reloading.reload(false).unwrap());
        let after = Arc::as_ptr(&reloading.current.read().unwrap().clone());
        assert_ne!(before, after, "a new configuration serves");
        // A broken write: the key of another certificate. The renewed pair keeps serving, and
        // the broken one is reported once, not at every look.
        std::thread::sleep(Duration::from_millis(20));
        let stray = pair(dir.path(), "stray", 2020, 2090);
        std::fs::copy(&stray.key, &tls.key).unwrap();
        assert!(reloading.reload(false).is_err());
        assert_eq!(Arc::as_ptr(&reloading.current.read().unwrap().clone()), after);
        assert!(!reloading.reload(false).unwrap(), "reported once");
        assert!(reloading.reload(true).is_err(), "SIGHUP reads it again");
    }

    #[test]
    fn der_elements_with_short_and_long_lengths() {
        assert_eq!(tlv(&[0x02, 0x01, 0x05, 0xff]), Some((0x02, &[0x05][..], &[0xff][..])));
        let long: Vec<u8> = [&[0x04, 0x81, 0x80][..], &[7u8; 128]].concat();
        assert_eq!(tlv(&long).map(|(_, c, r)| (c.len(), r.len())), Some((128, 0)));
        assert_eq!(tlv(&[0x04, 0x05, 1, 2]), None, "content shorter than its length");
        assert_eq!(tlv(&[0x04, 0x80]), None, "indefinite length is not DER");
    }

    #[test]
    fn both_time_forms() {
        let utc = time(0x17, b"491231235959Z").unwrap();
        assert_eq!(utc.to_rfc3339(), "2049-12-31T23:59:59+00:00");
        assert_eq!(time(0x17, b"500101000000Z").unwrap().to_rfc3339(), "1950-01-01T00:00:00+00:00");
        assert_eq!(time(0x18, b"20510101120000Z").unwrap().to_rfc3339(), "2051-01-01T12:00:00+00:00");
        assert!(time(0x17, b"49123123Z").is_err());
        assert!(time(0x02, b"491231235959Z").is_err());
    }
}
