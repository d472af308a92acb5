//! Development certificates: a short-lived CA and the vault, api, rewrap and operator
//! certificates it signs (`strongbox-vault certs dev`). Production deployments bring their own
//! PKI (cert-manager, for example); these exist so that development and tests use real mTLS.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// The client roles, each with its own certificate and SPIFFE id `spiffe://<td>/<role>`.
pub const CLIENT_ROLES: [&str; 3] = ["api", "rewrap", "operator"];

/// A certificate authority that can issue server and client certificates.
pub struct DevCa {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// An issued certificate and its private key, PEM-encoded.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// Its serial number, for revocation.
    pub serial: u64,
}

/// The validity window of a certificate, relative to now.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start, relative to now (negative for the past).
    pub from: Duration,
    /// End, relative to now.
    pub until: Duration,
}

impl Validity {
    /// Valid from an hour ago (clock skew) for `days` days.
    pub fn days(days: i64) -> Self {
        Self { from: Duration::hours(-1), until: Duration::days(days) }
    }
}

fn serial() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    crate::crypto::random_fill(&mut bytes)?;
    // Positive and non-zero, as RFC 5280 asks.
    Ok((u64::from_be_bytes(bytes) >> 1) | 1)
}

fn params(common_name: &str, validity: Validity, serial: u64) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    let now = OffsetDateTime::now_utc();
    params.not_before = now + validity.from;
    params.not_after = now + validity.until;
    params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

impl DevCa {
    /// A new CA for `trust_domain`.
    pub fn generate(trust_domain: &str, validity: Validity) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut ca = params(&format!("Strongbox dev CA ({trust_domain})"), validity, serial()?)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.use_authority_key_identifier_extension = false;
        let cert_pem = ca.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            issuer: Issuer::new(ca, key),
            cert_pem,
            key_pem,
        })
    }

    /// The CA certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The SPIFFE id of `role` in this CA's trust domain.
    pub fn spiffe_id(&self, role: &str) -> String {
        format!("spiffe://{}/{role}", self.trust_domain)
    }

    /// A server certificate for `hosts` (DNS names or IP addresses) that also carries the
    /// SPIFFE id of `role`.
    pub fn issue_server(
        &self,
        role: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        let serial = serial()?;
        let mut p = params(&format!("strongbox {role}"), validity, serial)?;
        for host in hosts {
            p.subject_alt_names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into()?),
            });
        }
        p.subject_alt_names.push(SanType::URI(self.spiffe_id(role).as_str().try_into()?));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p, serial)
    }

    /// A client certificate whose single URI SAN is the SPIFFE id of `role`.
    pub fn issue_client(&self, role: &str, validity: Validity) -> anyhow::Result<Issued> {
        self.issue_client_with_uris(role, &[self.spiffe_id(role)], validity)
    }

    /// A client certificate with exactly these URI SANs (tests use several, or none).
    pub fn issue_client_with_uris(
        &self,
        common_name: &str,
        uris: &[String],
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        let serial = serial()?;
        let mut p = params(&format!("strongbox {common_name}"), validity, serial)?;
        for uri in uris {
            p.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p, serial)
    }

    fn sign(&self, params: CertificateParams, serial: u64) -> anyhow::Result<Issued> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial })
    }

    /// A CRL revoking `serials`, valid for a day.
    pub fn crl(&self, serials: &[u64]) -> anyhow::Result<String> {
        self.crl_until(serials, OffsetDateTime::now_utc() + Duration::days(1))
    }

    /// A CRL revoking `serials` whose nextUpdate is `next_update` (in the past, it is stale:
    /// the vault then refuses every client until a fresh one is published).
    pub fn crl_until(
        &self,
        serials: &[u64],
        next_update: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now.min(next_update) - Duration::minutes(5),
            next_update,
            crl_number: SerialNumber::from(serial()?.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(s.to_be_bytes().to_vec()),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(crl.signed_by(&self.issuer)?.pem()?)
    }
}

/// Writes `content` to `path`; private keys get mode 0600.
pub fn write_file(path: &Path, content: &str, private: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(content.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The files `certs dev` writes into `out`. The vault's certificate names `localhost`, the
/// loopback addresses and `hosts` (such as the compose service name `vault`).
pub fn write_dev_set(
    out: &Path,
    trust_domain: &str,
    days: i64,
    hosts: &[String],
) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let validity = Validity::days(days);
    let ca = DevCa::generate(trust_domain, validity)?;
    let mut written = Vec::new();
    let mut put = |name: &str, content: &str, private: bool| -> anyhow::Result<()> {
        write_file(&out.join(name), content, private)?;
        written.push(name.to_owned());
        Ok(())
    };
    put("ca.pem", ca.cert_pem(), false)?;
    put("ca-key.pem", &ca.key_pem, true)?;
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    names.extend(hosts.iter().map(String::as_str));
    let vault = ca.issue_server("vault", &names, validity)?;
    put("vault.pem", &vault.cert_pem, false)?;
    put("vault-key.pem", &vault.key_pem, true)?;
    for role in CLIENT_ROLES {
        let issued = ca.issue_client(role, validity)?;
        put(&format!("{role}.pem"), &issued.cert_pem, false)?;
        put(&format!("{role}-key.pem"), &issued.key_pem, true)?;
    }
    Ok(written)
}
