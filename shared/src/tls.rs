//! TLS for both services: rustls with aws-lc-rs as the one provider, TLS 1.3 only, trust in
//! configured CA bundles only (never the system roots), and configurations that reload when
//! their files change or on SIGHUP, without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use tokio_util::sync::CancellationToken;

/// The crypto provider of every TLS configuration: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading a private key from {}", path.display()))
}

/// Reads a CA bundle into a root store.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).with_context(|| format!("adding a CA from {}", path.display()))?;
    }
    Ok(roots)
}

/// Reads CRLs from PEM files.
pub fn load_crls(paths: &[PathBuf]) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut crls = Vec::new();
    for path in paths {
        for crl in CertificateRevocationListDer::pem_file_iter(path)
            .with_context(|| format!("reading CRLs from {}", path.display()))?
        {
            crls.push(crl.with_context(|| format!("parsing a CRL in {}", path.display()))?);
        }
    }
    Ok(crls)
}

/// Files of a server that requires client certificates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsServerFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to. Nothing else is trusted.
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM). Empty means no revocation checking.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

impl MtlsServerFiles {
    /// Every file, for change detection.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone(), self.client_ca.clone()];
        paths.extend(self.crls.iter().cloned());
        paths
    }

    /// A TLS 1.3 server configuration that requires and verifies a client certificate.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        Ok(Arc::unwrap_or_clone(self.server()?.config))
    }

    /// The server configuration with the verifier it checks clients with, so that a
    /// connection opened earlier can be checked again after the CA or a CRL changes. A CRL past
    /// its nextUpdate fails verification (rustls would otherwise ignore its expiry).
    pub fn server(&self) -> anyhow::Result<MtlsServer> {
        let provider = provider();
        let roots = Arc::new(load_roots(&self.client_ca)?);
        let crls = load_crls(&self.crls)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            .enforce_revocation_expiration()
            .build()
            .context("building the client certificate verifier")?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("selecting TLS 1.3")?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(load_certs(&self.cert)?, load_key(&self.key)?)
            .with_context(|| {
                format!("pairing {} with {}", self.cert.display(), self.key.display())
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(MtlsServer { config: Arc::new(config), verifier })
    }
}

/// A server's TLS configuration and the verifier it checks client certificates with.
pub struct MtlsServer {
    /// For new connections.
    pub config: Arc<ServerConfig>,
    /// For checking a connection's client again, after a reload.
    pub verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl MtlsServer {
    /// Whether the client certificate chain `chain` (leaf first) still verifies now.
    pub fn still_trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).is_ok()
    }
}

/// A TLS 1.3 client configuration that trusts only `ca` and presents `cert`/`key`.
pub fn mtls_client_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("selecting TLS 1.3")?
        .with_root_certificates(load_roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .with_context(|| format!("pairing {} with {}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The URI subject alternative names of a DER certificate.
pub fn uri_sans(cert: &CertificateDer<'_>) -> anyhow::Result<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).context("parsing a certificate")?;
    let Some(san) = parsed.subject_alternative_name().context("reading its SAN extension")? else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect())
}

type Build<T> = dyn Fn() -> anyhow::Result<T> + Send + Sync;

/// A value built from files, rebuilt when any of them changes. Readers take the current value;
/// a rebuild that fails keeps the previous value and logs the error, so a half-written
/// certificate never takes a service down.
pub struct Reloading<T> {
    inner: Arc<ReloadInner<T>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct ReloadInner<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    build: Box<Build<T>>,
    current: RwLock<Arc<T>>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Counts successful reloads, for those who must act on one.
    reloads: tokio::sync::watch::Sender<u64>,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first value; an error here is a start-up error.
    pub fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let first_stamps = stamps(&files);
        let value = build().with_context(|| format!("loading the {what}"))?;
        Ok(Self {
            inner: Arc::new(ReloadInner {
                what,
                files,
                build: Box::new(build),
                current: RwLock::new(Arc::new(value)),
                stamps: Mutex::new(first_stamps),
                reloads: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds now. On error the previous value stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let new_stamps = stamps(&self.inner.files);
        let value = (self.inner.build)()?;
        *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
        *self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner()) = new_stamps;
        self.inner.reloads.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Wakes on every successful reload (for connections that must check their peer again).
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.reloads.subscribe()
    }

    /// Rebuilds if a file's modification time or size changed. Returns whether it did.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.inner.files);
        if *self.inner.stamps.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return false;
        }
        self.reload_logged("files changed")
    }

    fn reload_logged(&self, why: &'static str) -> bool {
        match self.reload() {
            Ok(()) => {
                tracing::info!(what = self.inner.what, why, "reloaded TLS material");
                true
            }
            Err(error) => {
                tracing::error!(
                    what = self.inner.what,
                    why,
                    error = format!("{error:#}"),
                    "TLS reload failed; keeping the previous configuration"
                );
                false
            }
        }
    }

    /// Polls the files every `interval` and reloads on SIGHUP, until `stop` is cancelled.
    pub fn spawn_watcher(&self, interval: Duration, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(signal) => Some(signal),
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for SIGHUP; polling only");
                        None
                    }
                };
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => { this.reload_if_changed(); }
                    Some(()) = async {
                        match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await }
                    } => { this.reload_logged("SIGHUP"); }
                }
            }
        });
    }
}

/// Refuses a vault URL that is not `https://` with a host: keys and the server key are sent to
/// the vault, and only ever over mutual TLS. Whitespace anywhere is refused rather than trimmed.
pub fn check_https_url(url: &str) -> Result<(), String> {
    const WHY: &str = "must be an https:// URL with a host: keys are sent to the vault, and only \
                       ever over mutual TLS";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WHY.to_owned());
    }
    match reqwest::Url::parse(url) {
        Ok(parsed)
            if parsed.scheme() == "https" && parsed.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(WHY.to_owned()),
    }
}

#[cfg(test)]
mod url_tests {
    use super::check_https_url;

    #[test]
    fn only_https_urls_with_a_host_pass() {
        for good in ["https://vault:8200", "HTTPS://vault.internal/", "https://10.0.0.1:8200"] {
            assert!(check_https_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://vault:8200",
            "https://",
            "https:// x",
            " https://vault",
            "https://vault\n",
            "ftp://vault",
            "vault:8200",
            "",
        ] {
            assert!(check_https_url(bad).is_err(), "{bad:?}");
        }
    }
}
