//! The `strongbox-vault` command line: the server, migrations, dev certificates and the
//! operator commands, which talk to a running vault over mTLS.

mod client;
mod operator;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::VaultConfig;
use crate::startup::Application;

/// Strongbox vault: envelope encryption for recoverable keys, behind mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "strongbox-vault", version)]
pub struct Cli {
    /// TOML configuration file (serve, migrate). `STRONGBOX_VAULT__SECTION__KEY` variables
    /// override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How the operator commands reach the vault. Each flag falls back to the key `ops/dev` writes
/// into `.dev/strongbox.env`, so `. .dev/strongbox.env` is enough.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of the vault's mTLS listener.
    #[arg(long, env = "STRONGBOX_VAULT_URL", value_name = "URL")]
    pub vault_url: Option<String>,
    /// CA bundle that signed the vault's certificate.
    #[arg(long, env = "STRONGBOX_TLS_CA", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The operator's client certificate.
    #[arg(long, env = "STRONGBOX_OPERATOR_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The operator's client key.
    #[arg(long, env = "STRONGBOX_OPERATOR_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Output formats of the operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGTERM or Ctrl-C. It starts locked.
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_VAULT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The owner role's URL; overrides `database.migration_url`. Migrations run as it and
        /// the serving role (of the database URL) is granted its rights.
        #[arg(long, env = "STRONGBOX_VAULT_DATABASE_OWNER_URL", hide_env_values = true)]
        owner_url: Option<String>,
    },
    /// Certificates for development and tests.
    Certs {
        /// Which set.
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Show whether the vault is initialized and unlocked. Exit status: 0 unlocked, 2 locked
    /// or uninitialized, 1 error.
    Status(#[command(flatten)] Connection),
    /// Create the root key and the first KEK under a new server key; leaves this replica
    /// unlocked.
    Initialize {
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
        /// Generate a random 256-bit server key and print it once.
        #[arg(long, conflicts_with_all = ["key_stdin", "shares"])]
        generate: bool,
        /// Under `seal.kind = "pkcs11"`: the vault's token seals a random server key that nobody
        /// sees; every replica then unlocks itself through the token. Prints recovery shares
        /// (5, any 3 of which authorise rekey, rotate-root and seal migrate, unless --shares and
        /// --threshold say else); they never unlock.
        #[arg(long, conflicts_with_all = ["generate", "key_stdin"])]
        token: bool,
        /// Read the server key from the first line of stdin instead of a prompt.
        #[arg(long, conflicts_with = "shares")]
        key_stdin: bool,
        /// Split a generated server key into N shares (2-16), printed once; nobody holds the
        /// whole key. Needs --threshold.
        #[arg(long, requires = "threshold", value_name = "N")]
        shares: Option<u8>,
        /// With --shares: how many shares unlock (2-N).
        #[arg(long, requires = "shares", value_name = "K")]
        threshold: Option<u8>,
    },
    /// Unlock this replica with the server key (needed after every start), or give it one
    /// share of a split key.
    Unlock {
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
        /// Read the server key from the first line of stdin instead of a prompt.
        #[arg(long, conflicts_with_all = ["share", "share_stdin", "reset_shares"])]
        key_stdin: bool,
        /// Give one share, asked for without echo. Repeat (by any holder) until the threshold
        /// is reached.
        #[arg(long, conflicts_with_all = ["share_stdin", "reset_shares"])]
        share: bool,
        /// Give one share, read from the first line of stdin.
        #[arg(long, conflicts_with = "reset_shares")]
        share_stdin: bool,
        /// Discard the shares given so far on this replica.
        #[arg(long)]
        reset_shares: bool,
    },
    /// Lock this replica now: its keys are dropped from memory.
    Lock(#[command(flatten)] Connection),
    /// Change the server key. Atomic: the old key works until the new one does.
    Rekey {
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
        /// Read the current key, then the new key, from the first two lines of stdin.
        #[arg(long, conflicts_with = "shares_stdin")]
        key_stdin: bool,
        /// The current key is held in shares (or, under the PKCS#11 seal, the recovery shares
        /// authorise): read a complete set from stdin, one per line (without it, each is asked
        /// for without echo).
        #[arg(long)]
        shares_stdin: bool,
        /// Split the new server key into N shares (2-16), printed once. Needs --new-threshold.
        /// Under the PKCS#11 seal: make N new recovery shares instead.
        #[arg(long, requires = "new_threshold", value_name = "N")]
        new_shares: Option<u8>,
        /// With --new-shares: how many shares unlock (2-N).
        #[arg(long, requires = "new_shares", value_name = "K")]
        new_threshold: Option<u8>,
    },
    /// Add a KEK version; new DEKs are wrapped under it.
    Rotate(#[command(flatten)] Connection),
    /// Replace the root key and re-wrap every KEK; other replicas lock themselves. Under the
    /// PKCS#11 seal it needs a complete set of the recovery shares.
    RotateRoot {
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
        /// Under the PKCS#11 seal: read the recovery shares from stdin, one per line (without
        /// it, each is asked for without echo).
        #[arg(long)]
        shares_stdin: bool,
    },
    /// Move the server key between seals: one key, k-of-n shares, or a PKCS#11 token.
    Seal {
        /// What to do.
        #[command(subcommand)]
        command: SealCommand,
    },
    /// Disaster recovery, offline: decrypt `strongbox-api export-encrypted` output with the vault
    /// database and the server key, without a running vault. Writes `{key_id, plaintext}` lines.
    Recover {
        /// The vault database.
        #[arg(long, env = "STRONGBOX_VAULT_DATABASE_URL", hide_env_values = true)]
        vault_db: String,
        /// JSON lines from `strongbox-api export-encrypted`.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Write the plaintexts here (mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read the server key from the first line of stdin instead of a prompt.
        #[arg(long, conflicts_with = "shares_stdin")]
        key_stdin: bool,
        /// The server key is held in shares: read them from stdin, one per line, to the end.
        #[arg(long)]
        shares_stdin: bool,
        /// Or the server key is sealed by a PKCS#11 token.
        #[command(flatten)]
        token: TokenArgs,
    },
    /// The audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Keyring (per-workspace DEK) administration.
    Keyring {
        /// What to do.
        #[command(subcommand)]
        command: KeyringCommand,
    },
}

/// `seal` subcommands.
#[derive(Debug, Subcommand)]
pub enum SealCommand {
    /// Re-seal the server key another way, in one transaction: the old seal works until the new
    /// one does. Needs the replica unlocked and the current authority: the server key, a
    /// complete set of its shares, or (under the PKCS#11 seal) of the recovery shares.
    Migrate {
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
        /// The new seal. To `pkcs11`, the replica must be configured with the token.
        #[arg(long, value_enum)]
        to: SealTo,
        /// Read the secrets from stdin, one per line: the current key (or a complete set of
        /// shares or recovery shares), then with `--to key` the new key. Without it, each is
        /// asked for without echo.
        #[arg(long)]
        stdin: bool,
        /// With `--to shares`: split the new key into N shares. With `--to pkcs11`: make N new
        /// recovery shares (default: keep the current ones, or make 5).
        #[arg(long, requires = "threshold", value_name = "N")]
        shares: Option<u8>,
        /// With --shares: how many of them are needed (2-N).
        #[arg(long, requires = "shares", value_name = "K")]
        threshold: Option<u8>,
        /// With `--to pkcs11`: the token key to seal under, made when absent (default:
        /// `seal.key_label` of the replica). A new label moves the vault to a new token key;
        /// delete the old one from the token afterwards (RUNBOOK procedure 26).
        #[arg(long, value_name = "LABEL")]
        key_label: Option<String>,
    },
    /// Offline, for a vault sealed by a PKCS#11 token before recovery shares existed: the token
    /// opens the root, and a split of recovery shares is added and printed once. Needs the
    /// token with its PIN and the vault database, which together recover every key anyway.
    InitRecovery {
        /// The vault database.
        #[arg(long, env = "STRONGBOX_VAULT_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The PKCS#11 module.
        #[arg(long, env = "STRONGBOX_VAULT__SEAL__MODULE")]
        module: PathBuf,
        /// The token's label.
        #[arg(long, env = "STRONGBOX_VAULT__SEAL__TOKEN_LABEL")]
        token_label: String,
        /// A file holding the token's user PIN.
        #[arg(long, env = "STRONGBOX_VAULT__SEAL__PIN_FILE")]
        pin_file: PathBuf,
        /// How many recovery shares (2-16).
        #[arg(long, default_value_t = 5, value_name = "N")]
        shares: u8,
        /// How many of them authorise (2-N).
        #[arg(long, default_value_t = 3, value_name = "K")]
        threshold: u8,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Seals `seal migrate` moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SealTo {
    /// One server key an operator holds.
    Key,
    /// K-of-n shares of a generated server key.
    Shares,
    /// A random server key sealed by the replica's PKCS#11 token (auto-unlock).
    Pkcs11,
}

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a short-lived dev CA and the vault, api, rewrap and operator certificates.
    Dev {
        /// Folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// SPIFFE trust domain of the identities.
        #[arg(long, default_value = "strongbox.local")]
        trust_domain: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 7)]
        days: i64,
        /// Another DNS name for the vault's certificate (repeatable), such as `vault` in
        /// compose.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain from its first entry to its newest, reading the vault
    /// database directly. Exit status: 0 intact, 2 broken (the first bad entry is named),
    /// 1 could not check.
    Verify {
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_VAULT_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Read the server key from standard input, to check the MACs of keyed entries (it
        /// opens the audit key offline, as `recover` opens the root). Without it, links and
        /// plain entries are checked and the MACs are reported unchecked.
        #[arg(long, conflicts_with = "shares_stdin")]
        key_stdin: bool,
        /// The server key is held in shares: read K of them from stdin, one per line, instead.
        #[arg(long)]
        shares_stdin: bool,
        /// Or the server key is sealed by a PKCS#11 token.
        #[command(flatten)]
        token: TokenArgs,
        /// A checkpoint noted earlier, `SEQ:HASH` (from the `audit checkpoint` log lines or an
        /// earlier verify): the log must still hold that entry with that hash.
        #[arg(long, value_name = "SEQ:HASH")]
        expect: Option<crate::audit::Expected>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Offline commands of a vault sealed by a PKCS#11 token: the token unseals the server key.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The server key is sealed by a PKCS#11 token: have the token unseal it (needs --module,
    /// --token-label and --pin-file, or their `STRONGBOX_VAULT__SEAL__*` variables).
    #[arg(long, conflicts_with_all = ["key_stdin", "shares_stdin"])]
    pub token: bool,
    /// With --token: the PKCS#11 module.
    #[arg(long, env = "STRONGBOX_VAULT__SEAL__MODULE")]
    pub module: Option<PathBuf>,
    /// With --token: the token's label.
    #[arg(long, env = "STRONGBOX_VAULT__SEAL__TOKEN_LABEL")]
    pub token_label: Option<String>,
    /// With --token: a file holding the token's user PIN.
    #[arg(long, env = "STRONGBOX_VAULT__SEAL__PIN_FILE")]
    pub pin_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The server key of the vault database `database`, unsealed by the token.
    async fn server_key(
        self,
        database: &strongbox_shared::db::DatabaseConfig,
    ) -> anyhow::Result<secrecy::SecretString> {
        let seal = crate::config::SealConfig {
            kind: crate::config::SealKind::Pkcs11,
            module: self.module,
            token_label: self.token_label,
            pin_file: self.pin_file,
            key_label: None,
        };
        crate::service::token::TokenSeal::from_config(&seal)?.server_key_from(database).await
    }
}

/// `keyring` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Versions and retirement state of a keyring.
    Show {
        /// The keyring (the api uses the workspace id).
        keyring: String,
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
    },
    /// Add a DEK version to one keyring, or to all with --all.
    Rotate {
        /// The keyring.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        keyring: Option<String>,
        /// Rotate every keyring.
        #[arg(long)]
        all: bool,
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
    },
    /// RAW operation: set min_decryption_version. Ciphertexts below it stop decrypting.
    /// Prefer `strongbox-api rewrap --retire`, which first moves every stored key forward.
    Retire {
        /// The keyring.
        keyring: String,
        /// The oldest version that may still decrypt.
        #[arg(long)]
        min_version: i32,
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete, for good, the versions below min_decryption_version.
    Trim {
        /// The keyring.
        keyring: String,
        /// Confirm that data under those versions becomes unrecoverable.
        #[arg(long)]
        yes: bool,
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
    },
    /// Crypto-shred a keyring: its recoverable keys become unrecoverable, for good.
    Delete {
        /// The keyring.
        keyring: String,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// How to reach the vault.
        #[command(flatten)]
        connection: Connection,
    },
}

impl Cli {
    /// Runs the chosen command; failures print a message and set the exit code.
    pub async fn run(self) -> ExitCode {
        match self.dispatch().await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("strongbox-vault: {error:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn dispatch(self) -> anyhow::Result<ExitCode> {
        let mut sources = VaultConfig::process_sources(self.config.as_deref());
        match self.command {
            Command::Serve => {
                serve(&sources).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Migrate { database_url, owner_url } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_VAULT__DATABASE__URL", url)]);
                }
                if let Some(url) = owner_url {
                    sources = sources.env([("STRONGBOX_VAULT__DATABASE__MIGRATION_URL", url)]);
                }
                // Migrating needs only the database; the rest of the config may be absent.
                let database = sources.load::<MigrateConfig>()?.database;
                let report = crate::migrate(&database).await?;
                println!(
                    "{}",
                    match report.applied.len() {
                        0 => "schema is up to date".to_owned(),
                        n => format!("applied {n} migration(s): {}", report.applied.join(", ")),
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Certs { command: CertsCommand::Dev { out, trust_domain, days, hosts } } => {
                if !(1..=90).contains(&days) {
                    anyhow::bail!(
                        "--days must be between 1 and 90: dev certificates are short-lived"
                    );
                }
                let written = crate::certs::write_dev_set(&out, &trust_domain, days, &hosts)?;
                println!(
                    "wrote {} to {} (trust domain {trust_domain}, valid {days} days)",
                    written.join(", "),
                    out.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Recover { vault_db, input, output, key_stdin, shares_stdin, token } => {
                crate::recover::check_input(&input)?;
                let key = if token.token {
                    let database = strongbox_shared::db::DatabaseConfig::from_url(vault_db.clone());
                    token.server_key(&database).await?
                } else if shares_stdin {
                    operator::key_from_stdin_shares()?
                } else {
                    operator::existing_key(key_stdin, "Server key: ")?
                };
                let reader = std::io::BufReader::new(
                    std::fs::File::open(&input)
                        .with_context(|| format!("opening {}", input.display()))?,
                );
                let database = strongbox_shared::db::DatabaseConfig::from_url(vault_db);
                let (recovered, failed) = match &output {
                    Some(path) => {
                        use std::os::unix::fs::OpenOptionsExt as _;
                        let file = std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .mode(0o600)
                            .open(path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        crate::recover::recover(&database, key, reader, file).await?
                    }
                    None => {
                        crate::recover::recover(&database, key, reader, std::io::stdout().lock())
                            .await?
                    }
                };
                eprintln!("recovered {recovered} key(s); {failed} could not be recovered");
                Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(3) })
            }
            Command::Audit {
                command:
                    AuditCommand::Verify {
                        database_url,
                        key_stdin,
                        shares_stdin,
                        token,
                        expect,
                        output,
                    },
            } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_VAULT__DATABASE__URL", url)]);
                }
                let database = sources.load::<MigrateConfig>()?.database;
                let pool = strongbox_shared::db::pool(&database)?;
                let macs = if token.token {
                    crate::audit::open_key(&pool, token.server_key(&database).await?).await?
                } else if key_stdin || shares_stdin {
                    let server_key = if shares_stdin {
                        operator::key_from_stdin_shares()?
                    } else {
                        operator::existing_key(true, "Server key: ")?
                    };
                    crate::audit::open_key(&pool, server_key).await?
                } else {
                    crate::audit::Macs::Unchecked
                };
                let verdict = crate::audit::verify(&pool, &macs, expect.as_ref()).await?;
                pool.close();
                match output {
                    Output::Json => println!("{}", serde_json::to_string(&verdict)?),
                    Output::Text => match &verdict {
                        crate::audit::Verdict::Intact {
                            entries,
                            head,
                            unchecked_macs,
                            plain_tail,
                        } => {
                            println!(
                                "audit log intact: {entries} entries{}{}{}",
                                head.as_ref()
                                    .map(|h| format!(", newest {entries}:{h}"))
                                    .unwrap_or_default(),
                                if *unchecked_macs > 0 {
                                    format!(
                                        "; {unchecked_macs} keyed entries' MACs not checked \
                                     (give the server key with --key-stdin)"
                                    )
                                } else {
                                    String::new()
                                },
                                if *plain_tail > 0 {
                                    format!(
                                        "; the newest {plain_tail} entries are plain hashes, not \
                                         protected until a keyed entry follows (check them \
                                         against a checkpoint with --expect)"
                                    )
                                } else {
                                    String::new()
                                }
                            )
                        }
                        crate::audit::Verdict::Broken { seq, reason, entries_ok } => {
                            let trusted = if *entries_ok == 0 {
                                "No entry can be trusted.".to_owned()
                            } else {
                                format!("Entries 1-{entries_ok} check out.")
                            };
                            println!("audit log BROKEN at entry {seq}: {reason}. {trusted}");
                        }
                    },
                }
                Ok(match verdict {
                    crate::audit::Verdict::Intact { .. } => ExitCode::SUCCESS,
                    crate::audit::Verdict::Broken { .. } => ExitCode::from(2),
                })
            }
            Command::Seal {
                command:
                    SealCommand::InitRecovery {
                        database_url,
                        module,
                        token_label,
                        pin_file,
                        shares,
                        threshold,
                        output,
                    },
            } => {
                let seal = crate::config::SealConfig {
                    kind: crate::config::SealKind::Pkcs11,
                    module: Some(module),
                    token_label: Some(token_label),
                    pin_file: Some(pin_file),
                    key_label: None,
                };
                let token = crate::service::token::TokenSeal::from_config(&seal)?;
                let database = strongbox_shared::db::DatabaseConfig::from_url(database_url);
                let printed = crate::service::seal::add_recovery_offline(
                    &database,
                    &token,
                    (shares, threshold),
                )
                .await?;
                let shares: Vec<&str> = printed.iter().map(|s| s.as_str()).collect();
                match output {
                    Output::Json => {
                        println!("{}", serde_json::json!({"recovery_shares": shares}));
                    }
                    Output::Text => {
                        println!(
                            "Recovery shares added ({threshold} of {} authorise rekey, rotate-root and seal migrate; shown once, give each to a different holder now):\n",
                            shares.len()
                        );
                        for share in shares {
                            println!("    {share}");
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            other => operator::run(other).await,
        }
    }
}

/// Just the database section, for `migrate`.
#[derive(serde::Deserialize)]
struct MigrateConfig {
    database: strongbox_shared::db::DatabaseConfig,
}

async fn serve(sources: &strongbox_shared::config::ConfigSources) -> anyhow::Result<()> {
    let config = VaultConfig::from_sources(sources)?;
    let tracing = strongbox_shared::telemetry::init_with_traces(
        &config.log,
        &config.telemetry,
        "strongbox-vault",
    )?;
    let app = Application::build(config).await.context("starting strongbox-vault")?;
    strongbox_shared::shutdown::cancel_on_signal(app.shutdown_token());
    let served = app.run_until_stopped().await;
    tracing.shutdown().await;
    served
}
