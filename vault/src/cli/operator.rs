//! Operator commands: lifecycle and keyring administration against a running vault.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::client::VaultClient;
use super::{Command, Connection, KeyringCommand, Output, SealCommand, SealTo};
use crate::service::lifecycle::MIN_KEY_CHARS;

/// Runs an operator command.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status(c) => {
            let status = VaultClient::new(&c)?.get("/v1/sys/status").await?;
            print(&c, &status, |s| {
                let mut text = format!(
                    "initialized:  {}\nunlocked:     {}\nstate:        {}\nroot version: {}\nkek version:  {}",
                    s["initialized"],
                    s["unlocked"],
                    s["state"].as_str().unwrap_or("?"),
                    s["root_version"],
                    s["kek_version"]
                );
                if s["seal"] == "shares" {
                    text.push_str(&format!(
                        "\nseal:         shares ({} needed)\nprogress:     {} given on this replica",
                        s["threshold"], s["progress"]
                    ));
                }
                if s["seal"] == "pkcs11" {
                    text.push_str(&format!(
                        "\nseal:         pkcs11 (each replica unlocks itself; token key {})",
                        s["token_key_label"]
                    ));
                    if let Some(k) = s["recovery_threshold"].as_u64() {
                        text.push_str(&format!("\nrecovery:     {k} recovery shares authorise"));
                    }
                }
                if let Some(why) = s["auto_unlock_error"].as_str() {
                    text.push_str(&format!("\nauto-unlock:  failing: {why}"));
                }
                text
            });
            Ok(if status["unlocked"] == true { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Initialize { connection, token: true, shares, threshold, .. } => {
            let client = VaultClient::new(&connection)?;
            let body = match (shares, threshold) {
                (Some(n), Some(k)) => json!({"shares": n, "threshold": k}),
                _ => json!({}),
            };
            let answer = client.post("/v1/sys/initialize", Some(&body)).await?;
            print_recovery(
                &connection,
                &answer,
                "The vault is initialized under its PKCS#11 token and unlocked. Every replica \
                 unlocks itself through the token.",
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Initialize { connection, shares: Some(n), threshold: Some(k), .. } => {
            let client = VaultClient::new(&connection)?;
            let answer = client
                .post("/v1/sys/initialize", Some(&json!({"shares": n, "threshold": k})))
                .await?;
            print_shares(&connection, &answer, k, "The vault is initialized and unlocked.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Initialize { connection, generate, key_stdin, .. } => {
            let client = VaultClient::new(&connection)?;
            let key = if generate { generated_key()? } else { new_key(key_stdin)? };
            client.post("/v1/sys/initialize", Some(&json!({"key": key.expose_secret()}))).await?;
            if generate {
                match connection.output {
                    Output::Json => println!(
                        "{}",
                        json!({"initialized": true, "unlocked": true, "server_key": key.expose_secret()})
                    ),
                    Output::Text => println!(
                        "The vault is initialized and unlocked.\n\nServer key (shown once; store it in your password manager now):\n\n    {}\n\nWithout it the vault cannot be unlocked and recoverable keys are lost.",
                        key.expose_secret()
                    ),
                }
            } else {
                done(
                    &connection,
                    json!({"initialized": true, "unlocked": true}),
                    "The vault is initialized and unlocked.",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unlock { connection, reset_shares: true, .. } => {
            let client = VaultClient::new(&connection)?;
            let answer = client.post("/v1/sys/unlock", Some(&json!({"reset": true}))).await?;
            print(&connection, &answer, |_| "The shares given so far are discarded.".to_owned());
            Ok(ExitCode::SUCCESS)
        }
        Command::Unlock { connection, share, share_stdin, .. } if share || share_stdin => {
            let client = VaultClient::new(&connection)?;
            let text = existing_share(share_stdin, "Share: ")?;
            let answer = client
                .post("/v1/sys/unlock", Some(&json!({"share": text.expose_secret()})))
                .await?;
            print(&connection, &answer, |a| {
                if a["unlocked"] == true {
                    "Unlocked.".to_owned()
                } else {
                    format!(
                        "Share accepted: {} of {}. The next holder gives theirs on this same replica.",
                        a["progress"], a["threshold"]
                    )
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Unlock { connection, key_stdin, .. } => {
            let client = VaultClient::new(&connection)?;
            let key = existing_key(key_stdin, "Server key: ")?;
            client.post("/v1/sys/unlock", Some(&json!({"key": key.expose_secret()}))).await?;
            done(&connection, json!({"unlocked": true}), "Unlocked.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Lock(c) => {
            VaultClient::new(&c)?.post("/v1/sys/lock", None).await?;
            done(
                &c,
                json!({"unlocked": false}),
                "Locked. This replica's keys are gone from memory; unlock it to serve again.",
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Rekey { connection, key_stdin, shares_stdin, new_shares, new_threshold } => {
            let client = VaultClient::new(&connection)?;
            let status = client.get("/v1/sys/status").await?;
            let mut body = serde_json::Map::new();
            let mut stdin = std::io::stdin().lock().lines();
            let from_stdin = key_stdin || shares_stdin;
            let (field, value) =
                authority(&status, from_stdin.then_some(&mut stdin), "the current key")?;
            body.insert(field.to_owned(), value);
            match (new_shares, new_threshold) {
                (Some(n), Some(k)) => {
                    body.insert("new_shares".to_owned(), json!(n));
                    body.insert("new_threshold".to_owned(), json!(k));
                }
                _ if status["seal"] == "pkcs11" => {}
                _ => {
                    let new = new_key_from(from_stdin.then_some(&mut stdin))?;
                    body.insert("new_key".to_owned(), json!(new.expose_secret()));
                }
            }
            let answer = client.post("/v1/sys/rekey", Some(&Value::Object(body))).await?;
            if answer.get("recovery_shares").is_some() {
                print_recovery(
                    &connection,
                    &answer,
                    "Server key replaced under the same token key. The earlier recovery shares no longer match the vault's split (run rotate-root with the new ones too if a copy of the vault database from before now could be written back).",
                );
            } else if answer.get("shares").is_some() {
                let k = new_threshold.unwrap_or(0);
                print_shares(
                    &connection,
                    &answer,
                    k,
                    "Server key changed and split. Unlock with the new shares from now on, on every replica.",
                );
            } else if status["seal"] == "pkcs11" {
                done(
                    &connection,
                    answer.clone(),
                    "Server key replaced under the same token key; the recovery shares stay.",
                );
            } else {
                done(
                    &connection,
                    json!({"rekeyed": true}),
                    "Server key changed. Unlock with the new key from now on, on every replica.",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Seal {
            command: SealCommand::Migrate { connection, to, stdin, shares, threshold, key_label },
        } => {
            let client = VaultClient::new(&connection)?;
            let status = client.get("/v1/sys/status").await?;
            let mut lines = std::io::stdin().lock().lines();
            let (field, value) =
                authority(&status, stdin.then_some(&mut lines), "the current key")?;
            let mut body = serde_json::Map::new();
            body.insert(field.to_owned(), value);
            let to_name = match to {
                SealTo::Key => "key",
                SealTo::Shares => "shares",
                SealTo::Pkcs11 => "pkcs11",
            };
            body.insert("to".to_owned(), json!(to_name));
            match to {
                SealTo::Key => {
                    if shares.is_some() || key_label.is_some() {
                        bail!(
                            "--to key takes a new key (asked for, or the next stdin line), not --shares or --key-label"
                        );
                    }
                    let new = new_key_from(stdin.then_some(&mut lines))?;
                    body.insert("new_key".to_owned(), json!(new.expose_secret()));
                }
                SealTo::Shares => {
                    let (Some(n), Some(k)) = (shares, threshold) else {
                        bail!("--to shares needs --shares N --threshold K");
                    };
                    if key_label.is_some() {
                        bail!("--key-label is for --to pkcs11");
                    }
                    body.insert("new_shares".to_owned(), json!(n));
                    body.insert("new_threshold".to_owned(), json!(k));
                }
                SealTo::Pkcs11 => {
                    if let (Some(n), Some(k)) = (shares, threshold) {
                        body.insert("new_shares".to_owned(), json!(n));
                        body.insert("new_threshold".to_owned(), json!(k));
                    }
                    if let Some(label) = key_label {
                        body.insert("key_label".to_owned(), json!(label));
                    }
                }
            }
            let answer = client.post("/v1/sys/seal/migrate", Some(&Value::Object(body))).await?;
            match to {
                SealTo::Key => done(
                    &connection,
                    answer.clone(),
                    "Migrated: the server key is the one you gave. Set seal.kind = \"key\" on every replica; restarted replicas wait for it.",
                ),
                SealTo::Shares => print_shares(
                    &connection,
                    &answer,
                    threshold.unwrap_or(0),
                    "Migrated: the server key is split. Set seal.kind = \"shares\" on every replica; restarted replicas wait for the shares.",
                ),
                SealTo::Pkcs11 if answer.get("recovery_shares").is_some() => print_recovery(
                    &connection,
                    &answer,
                    "Migrated: the token seals the server key, and every replica configured with it unlocks itself.",
                ),
                SealTo::Pkcs11 => done(
                    &connection,
                    answer.clone(),
                    "Migrated: the token seals a new server key; the recovery shares stay.",
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate(c) => {
            let r = VaultClient::new(&c)?.post("/v1/sys/rotate", None).await?;
            print(&c, &r, |r| {
                format!("New KEK version {}. New DEKs are wrapped under it.", r["kek_version"])
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateRoot { connection: c, shares_stdin } => {
            let client = VaultClient::new(&c)?;
            let status = client.get("/v1/sys/status").await?;
            let body = if status["recovery_threshold"].is_u64() {
                let mut lines = std::io::stdin().lock().lines();
                let (field, value) =
                    authority(&status, shares_stdin.then_some(&mut lines), "recovery")?;
                Some(json!({ field: value }))
            } else {
                None
            };
            let r = client.post("/v1/sys/rotate-root", body.as_ref()).await?;
            let then = if status["seal"] == "pkcs11" {
                "unlocks itself again through the token within seconds."
            } else {
                "has locked itself: unlock each one."
            };
            print(&c, &r, |r| {
                format!("New root key version {}. Every other replica {then}", r["root_version"])
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Keyring { command } => keyring(command).await,
        Command::Serve
        | Command::Migrate { .. }
        | Command::Certs { .. }
        | Command::Recover { .. }
        | Command::Seal { command: SealCommand::InitRecovery { .. } }
        | Command::Audit { .. } => {
            bail!("not an operator command")
        }
    }
}

async fn keyring(command: KeyringCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyringCommand::Show { keyring, connection } => {
            let d = VaultClient::new(&connection)?.get(&format!("/v1/keyrings/{keyring}")).await?;
            print(&connection, &d, |d| {
                let mut out = format!(
                    "keyring {}\nlatest version:         {}\nmin decryption version: {}\ntrimmed below:          {}\nversions:",
                    d["keyring"].as_str().unwrap_or("?"),
                    d["latest_version"],
                    d["min_decryption_version"],
                    d["trimmed_below"]
                );
                for v in d["versions"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n  v{}  kek v{}  {} encryptions leased  created {}",
                        v["version"],
                        v["kek_version"],
                        v["encryptions"],
                        v["created_at"].as_str().unwrap_or("?")
                    ));
                }
                out
            });
        }
        KeyringCommand::Rotate { keyring, all, connection } => {
            let client = VaultClient::new(&connection)?;
            let r = match (keyring, all) {
                (_, true) => client.post("/v1/keyrings/rotate", None).await?,
                (Some(k), false) => client.post(&format!("/v1/keyrings/{k}/rotate"), None).await?,
                (None, false) => bail!("name a keyring or pass --all"),
            };
            print(&connection, &r, |r| match r["keyrings"].as_array() {
                Some(all) => format!(
                    "Rotated {} keyring(s). Now run `strongbox-api rewrap` to move stored keys forward.",
                    all.len()
                ),
                None => format!(
                    "Keyring {} is now at version {}. Now run `strongbox-api rewrap` to move stored keys forward.",
                    r["keyring"].as_str().unwrap_or("?"),
                    r["version"]
                ),
            });
        }
        KeyringCommand::Retire { keyring, min_version, connection } => {
            eprintln!(
                "note: this is the raw operation. Ciphertexts below version {min_version} stop decrypting at once;\n      `strongbox-api rewrap --retire` moves stored keys forward first. Raising it is reversible until a trim."
            );
            let d = VaultClient::new(&connection)?
                .post(
                    &format!("/v1/keyrings/{keyring}/config"),
                    Some(&json!({"min_decryption_version": min_version})),
                )
                .await?;
            print(&connection, &d, |d| {
                format!(
                    "Keyring {} decrypts versions {} to {}.",
                    keyring, d["min_decryption_version"], d["latest_version"]
                )
            });
        }
        KeyringCommand::Trim { keyring, yes, connection } => {
            if !yes {
                bail!(
                    "trimming deletes key versions for good; data sealed under them is lost. Re-run with --yes to confirm"
                );
            }
            let r = VaultClient::new(&connection)?
                .post(&format!("/v1/keyrings/{keyring}/trim"), None)
                .await?;
            print(&connection, &r, |r| {
                format!("Deleted versions {} of keyring {keyring}.", r["trimmed_versions"])
            });
        }
        KeyringCommand::Delete { keyring, yes, connection } => {
            if !yes {
                bail!(
                    "deleting a keyring crypto-shreds every recoverable key of that workspace, for good. Re-run with --yes to confirm"
                );
            }
            let r =
                VaultClient::new(&connection)?.delete(&format!("/v1/keyrings/{keyring}")).await?;
            print(&connection, &r, |_| {
                format!(
                    "Keyring {keyring} is crypto-shredded. Key verification is unaffected; recoverable keys are gone. An older vault backup would bring it back: see the runbook."
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(connection: &Connection, value: &Value, text: impl FnOnce(&Value) -> String) {
    match connection.output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text(value)),
    }
}

fn done(connection: &Connection, value: Value, text: &str) {
    print(connection, &value, |_| text.to_owned());
}

fn check_length(key: &SecretString) -> anyhow::Result<()> {
    if key.expose_secret().chars().count() < MIN_KEY_CHARS {
        bail!("the server key must be at least {MIN_KEY_CHARS} characters; or use --generate");
    }
    Ok(())
}

/// A random 256-bit key, base64url: 43 characters, shell- and password-manager-safe.
fn generated_key() -> anyhow::Result<SecretString> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    crate::crypto::random_fill(bytes.as_mut_slice())?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
    ))
}

fn read_stdin_line() -> anyhow::Result<SecretString> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the key from stdin")?;
    let key = line.trim_end_matches(['\n', '\r']).to_owned();
    if key.is_empty() {
        bail!("stdin held no key");
    }
    Ok(SecretString::from(key))
}

pub(super) fn existing_key(from_stdin: bool, prompt: &str) -> anyhow::Result<SecretString> {
    if from_stdin {
        return read_stdin_line();
    }
    let key = rpassword::prompt_password(prompt)
        .context("reading the key (no terminal? use --key-stdin)")?;
    Ok(SecretString::from(key))
}

/// The server key that the shares on stdin (one per line, to the end) rebuild, offline.
pub(super) fn key_from_stdin_shares() -> anyhow::Result<SecretString> {
    use crate::crypto::shares::{self, Share};
    let mut given: Vec<Share> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = zeroize::Zeroizing::new(line.context("reading shares from stdin")?);
        if line.trim().is_empty() {
            continue;
        }
        let share = Share::decode(&line).map_err(|e| anyhow::anyhow!("a share on stdin: {e}"))?;
        if !given.iter().any(|g| g.index == share.index) {
            given.push(share);
        }
    }
    let secret = shares::combine(&given).map_err(|e| anyhow::anyhow!("the shares: {e}"))?;
    Ok(shares::server_key(&secret))
}

/// One share, from stdin or asked for without echo.
fn existing_share(from_stdin: bool, prompt: &str) -> anyhow::Result<SecretString> {
    if from_stdin {
        return read_stdin_line();
    }
    let text = rpassword::prompt_password(prompt)
        .context("reading the share (no terminal? use --share-stdin)")?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Prints the shares of a split once, with what to do with them.
fn print_shares(connection: &Connection, answer: &Value, threshold: u8, headline: &str) {
    print(connection, answer, |a| {
        let shares = a["shares"].as_array().cloned().unwrap_or_default();
        let mut text = format!(
            "{headline}\n\n{} shares (shown once; give each to a different holder now). Any {threshold} of them unlock; fewer reveal nothing:\n",
            shares.len()
        );
        for share in &shares {
            text.push_str(&format!("\n    {}", share.as_str().unwrap_or_default()));
        }
        text.push_str(&format!(
            "\n\nWith fewer than {threshold} shares left, the vault cannot be unlocked and recoverable keys are lost."
        ));
        text
    });
}

type StdinLines<'a> = std::io::Lines<std::io::StdinLock<'a>>;

/// The current authority the vault's status calls for, as the field to send and its value: the
/// server key, a complete set of its shares, or under the PKCS#11 seal the recovery shares.
/// Read from `stdin` (one per line) when given, else asked for without echo.
fn authority(
    status: &Value,
    mut stdin: Option<&mut StdinLines<'_>>,
    what: &str,
) -> anyhow::Result<(&'static str, Value)> {
    let (field, needed, name) = match status["seal"].as_str() {
        Some("shares") => ("shares", status["threshold"].as_u64().unwrap_or(0), "share"),
        Some("pkcs11") => {
            let Some(k) = status["recovery_threshold"].as_u64() else {
                bail!("this vault has no recovery shares")
            };
            ("recovery_shares", k, "recovery share")
        }
        Some("key") => {
            let key = match stdin.as_mut() {
                Some(lines) => SecretString::from(
                    lines.next().with_context(|| format!("stdin: expected {what} on line 1"))??,
                ),
                None => existing_key(false, "Current server key: ")?,
            };
            return Ok(("current_key", json!(key.expose_secret())));
        }
        _ => bail!("the vault is not initialized"),
    };
    let mut given = Vec::new();
    for i in 1..=needed {
        let text = match stdin.as_mut() {
            Some(lines) => {
                let line = lines.next().with_context(|| {
                    format!("stdin: expected {needed} {name}s, one per line; got {}", i - 1)
                })??;
                SecretString::from(line.trim().to_owned())
            }
            None => existing_share(false, &format!("Current {name} {i} of {needed}: "))?,
        };
        given.push(Value::String(text.expose_secret().to_owned()));
    }
    Ok((field, Value::Array(given)))
}

/// A new server key: the next stdin line when given, else asked twice without echo.
fn new_key_from(stdin: Option<&mut StdinLines<'_>>) -> anyhow::Result<SecretString> {
    let new = match stdin {
        Some(lines) => {
            SecretString::from(lines.next().context("stdin: expected the new key next")??)
        }
        None => new_key(false)?,
    };
    check_length(&new)?;
    Ok(new)
}

/// Prints recovery shares once, with what they are for.
fn print_recovery(connection: &Connection, answer: &Value, headline: &str) {
    print(connection, answer, |a| {
        let shares = a["recovery_shares"].as_array().cloned().unwrap_or_default();
        let mut text = format!(
            "{headline}\n\n{} recovery shares (shown once; give each to a different holder now). They never unlock or decrypt; a quorum of them authorises rekey, rotate-root and seal migrate:\n",
            shares.len()
        );
        for share in &shares {
            text.push_str(&format!("\n    {}", share.as_str().unwrap_or_default()));
        }
        text
    });
}

/// A new key, asked twice on a terminal.
fn new_key(from_stdin: bool) -> anyhow::Result<SecretString> {
    let key = existing_key(from_stdin, "New server key: ")?;
    check_length(&key)?;
    if !from_stdin {
        let again = rpassword::prompt_password("Repeat the new server key: ")?;
        if again != key.expose_secret() {
            bail!("the two entries differ; nothing was changed");
        }
    }
    Ok(key)
}
