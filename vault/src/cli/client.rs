//! The operator's mTLS client, and error messages that say what to do next.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use super::Connection;

/// A client for one vault.
pub struct VaultClient {
    http: reqwest::Client,
    base: String,
}

fn required(value: &Option<PathBuf>, flag: &str, env: &str) -> anyhow::Result<PathBuf> {
    value.clone().ok_or_else(|| {
        anyhow!("{flag} is not set: pass it, set {env}, or `. .dev/strongbox.env` in development")
    })
}

impl VaultClient {
    /// Builds the client from flags or env-file keys.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        let base = connection.vault_url.clone().ok_or_else(|| {
            anyhow!(
                "--vault-url is not set: pass it, set STRONGBOX_VAULT_URL, or \
                 `. .dev/strongbox.env` in development"
            )
        })?;
        strongbox_shared::tls::check_https_url(&base)
            .map_err(|reason| anyhow!("--vault-url {reason}"))?;
        let ca = required(&connection.ca_cert, "--ca-cert", "STRONGBOX_TLS_CA")?;
        let cert = required(&connection.client_cert, "--client-cert", "STRONGBOX_OPERATOR_CERT")?;
        let key = required(&connection.client_key, "--client-key", "STRONGBOX_OPERATOR_KEY")?;
        let tls = strongbox_shared::tls::mtls_client_config(&ca, &cert, &key)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            // Unlock and rekey run argon2 on the server, possibly queued behind others.
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTPS client")?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `POST path` with a JSON body, or none.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("UNKNOWN");
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{}", advice(status.as_u16(), code, message, retry_after.as_deref()))
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(e) = source {
            chain.push_str(&format!(": {e}"));
            source = e.source();
        }
        let hint = if chain.contains("certificate")
            || chain.contains("handshake")
            || chain.contains("alert")
        {
            "check that STRONGBOX_TLS_CA signed the vault's certificate and that the operator \
             certificate is current and from the CA the vault trusts"
        } else if error.is_timeout() {
            "the vault did not answer in time; is it overloaded or behind a firewall?"
        } else {
            "is the vault running, and is STRONGBOX_VAULT_URL right?"
        };
        anyhow!("cannot reach the vault at {}{chain}\n  hint: {hint}", self.base)
    }
}

/// A message for each error code the vault returns, with what to do next.
fn advice(status: u16, code: &str, message: &str, retry_after: Option<&str>) -> String {
    let next = match code {
        "VAULT_LOCKED" => "unlock it: strongbox-vault unlock".to_owned(),
        "NOT_INITIALIZED" => {
            "initialize it first: strongbox-vault initialize --generate".to_owned()
        }
        "ALREADY_INITIALIZED" => {
            "it is set up already; after a restart use: strongbox-vault unlock".to_owned()
        }
        "WRONG_KEY" => {
            "check the key in your password manager (with shares: one was wrong, and each holder \
             gives theirs again); wrong keys are slowed down after a few tries"
                .to_owned()
        }
        "INVALID_SHARE" => {
            "check the share for typos (it is case-sensitive); it was not counted, and the shares \
             given so far are kept"
                .to_owned()
        }
        "TOO_MANY_ATTEMPTS" => format!(
            "wait {} seconds, then try again with the right key",
            retry_after.unwrap_or("a few")
        ),
        "WEAK_KEY" => "choose a longer key, or let the vault make one: --generate".to_owned(),
        "FORBIDDEN" => {
            "use the operator certificate (STRONGBOX_OPERATOR_CERT and STRONGBOX_OPERATOR_KEY)"
                .to_owned()
        }
        "CONFLICT" => "another change happened at the same time; check status and retry".to_owned(),
        "KEYRING_NOT_FOUND" => "check the keyring name (the api uses the workspace id)".to_owned(),
        "KEYRING_DELETED" => "this keyring was crypto-shredded; it cannot be used again".to_owned(),
        "INVALID_VERSION" => "see `strongbox-vault keyring show` for the versions".to_owned(),
        "INTEGRITY_ERROR" => {
            "stored key material failed authentication: treat as tampering, see the runbook"
                .to_owned()
        }
        _ => "see the vault's log for details".to_owned(),
    };
    format!("{message} ({code}, HTTP {status})\n  next: {next}")
}
