//! Operator commands: lifecycle and keyring administration against a running vault.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::client::VaultClient;
use super::{Command, Connection, KeyringCommand, Output};
use crate::service::lifecycle::MIN_KEY_CHARS;

/// Runs an operator command.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status(c) => {
            let status = VaultClient::new(&c)?.get("/v1/sys/status").await?;
            print(&c, &status, |s| {
                format!(
                    "initialized:  {}\nunlocked:     {}\nstate:        {}\nroot version: {}\nkek version:  {}",
                    s["initialized"],
                    s["unlocked"],
                    s["state"].as_str().unwrap_or("?"),
                    s["root_version"],
                    s["kek_version"]
                )
            });
            Ok(if status["unlocked"] == true { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Initialize { connection, generate, key_stdin } => {
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
        Command::Unlock { connection, key_stdin } => {
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
        Command::Rekey { connection, key_stdin } => {
            let client = VaultClient::new(&connection)?;
            let (current, new) = if key_stdin {
                let mut lines = std::io::stdin().lock().lines();
                let current =
                    lines.next().context("stdin: expected the current key on line 1")??;
                let new = lines.next().context("stdin: expected the new key on line 2")??;
                (SecretString::from(current), SecretString::from(new))
            } else {
                (existing_key(false, "Current server key: ")?, new_key(false)?)
            };
            check_length(&new)?;
            client
                .post("/v1/sys/rekey", Some(&json!({"current_key": current.expose_secret(), "new_key": new.expose_secret()})))
                .await?;
            done(
                &connection,
                json!({"rekeyed": true}),
                "Server key changed. Unlock with the new key from now on, on every replica.",
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate(c) => {
            let r = VaultClient::new(&c)?.post("/v1/sys/rotate", None).await?;
            print(&c, &r, |r| {
                format!("New KEK version {}. New DEKs are wrapped under it.", r["kek_version"])
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::RotateRoot(c) => {
            let r = VaultClient::new(&c)?.post("/v1/sys/rotate-root", None).await?;
            print(&c, &r, |r| {
                format!(
                    "New root key version {}. Every other replica has locked itself: unlock each one.",
                    r["root_version"]
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Keyring { command } => keyring(command).await,
        Command::Serve
        | Command::Migrate { .. }
        | Command::Certs { .. }
        | Command::Recover { .. }
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
