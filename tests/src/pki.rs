//! Certificates for tests: a dev CA and the certificates of every role, on disk, plus mTLS
//! clients that present them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strongbox_vault::certs::{DevCa, Validity, write_file};

use crate::TempDir;

/// The trust domain of test certificates.
pub const TRUST_DOMAIN: &str = "strongbox.test";

/// A CA and the vault, api, rewrap and operator certificates, as files.
pub struct TestPki {
    /// The CA, to issue more certificates in a test.
    pub ca: DevCa,
    dir: TempDir,
}

impl TestPki {
    /// Issues the standard set.
    pub fn new() -> Arc<Self> {
        let dir = TempDir::new("pki");
        let ca = DevCa::generate(TRUST_DOMAIN, Validity::days(1)).unwrap();
        write_file(&dir.path().join("ca.pem"), ca.cert_pem(), false).unwrap();
        let vault = ca
            .issue_server("vault", &["localhost", "127.0.0.1", "::1"], Validity::days(1))
            .unwrap();
        write_file(&dir.path().join("vault.pem"), &vault.cert_pem, false).unwrap();
        write_file(&dir.path().join("vault-key.pem"), &vault.key_pem, true).unwrap();
        for role in ["api", "rewrap", "operator"] {
            let issued = ca.issue_client(role, Validity::days(1)).unwrap();
            write_file(&dir.path().join(format!("{role}.pem")), &issued.cert_pem, false).unwrap();
            write_file(&dir.path().join(format!("{role}-key.pem")), &issued.key_pem, true).unwrap();
        }
        Arc::new(Self { ca, dir })
    }

    /// A file in the PKI folder (`ca.pem`, `operator-key.pem`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an extra file into the PKI folder and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        write_file(&path, content, name.ends_with("-key.pem")).unwrap();
        path
    }

    /// An HTTPS client that trusts this CA and presents `<role>.pem`.
    pub fn client(&self, role: &str) -> reqwest::Client {
        self.client_with(&self.path(&format!("{role}.pem")), &self.path(&format!("{role}-key.pem")))
    }

    /// An HTTPS client that trusts this CA and presents the given certificate.
    pub fn client_with(&self, cert: &std::path::Path, key: &std::path::Path) -> reqwest::Client {
        let tls =
            strongbox_shared::tls::mtls_client_config(&self.path("ca.pem"), cert, key).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// An HTTPS client that trusts this CA but presents no certificate.
    pub fn anonymous_client(&self) -> reqwest::Client {
        let roots = strongbox_shared::tls::load_roots(&self.path("ca.pem")).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(strongbox_shared::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap()
    }
}

/// The serial number of a DER certificate, as the dev CA issues them (up to 8 bytes).
pub fn serial_of(der: &[u8]) -> u64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let bytes = cert.raw_serial();
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}
