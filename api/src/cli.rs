//! The `strongbox-api` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strongbox_shared::config::ConfigSources;

use crate::config::ApiConfig;
use crate::startup::Application;

/// Strongbox api: issue, verify and revoke API keys (Unkey v2 wire format).
#[derive(Debug, Parser)]
#[command(name = "strongbox-api", version)]
pub struct Cli {
    /// TOML configuration file. `STRONGBOX_API__SECTION__KEY` variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_API_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Write the ciphertexts of a workspace's recoverable keys as JSON lines
    /// `{key_id, keyring, context, ciphertext, dek_version}`, for `strongbox-vault recover`.
    ExportEncrypted {
        /// The workspace, by name or id.
        #[arg(long)]
        workspace: String,
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_API_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Move every stored ciphertext to its keyring's newest DEK version (after a rotation in the
    /// vault), with a progress bar. Exits 0 when every row is on the newest version.
    Rewrap {
        /// Only this workspace (name or id); all by default.
        #[arg(long)]
        workspace: Option<String>,
        /// Then raise min_decryption_version to the newest version, as the operator.
        #[arg(long)]
        retire: bool,
        /// If another rewrap is running, say so and exit 4 instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Rows per vault call.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_API_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Base URL of the vault.
        #[arg(long, env = "STRONGBOX_VAULT_URL")]
        vault_url: String,
        /// CA bundle that signed the vault's certificate.
        #[arg(long, env = "STRONGBOX_TLS_CA")]
        ca_cert: PathBuf,
        /// Client certificate with the api or rewrap identity.
        #[arg(long, env = "STRONGBOX_API_CLIENT_CERT")]
        client_cert: PathBuf,
        /// Its key.
        #[arg(long, env = "STRONGBOX_API_CLIENT_KEY")]
        client_key: PathBuf,
        /// The operator certificate, for --retire.
        #[arg(long, env = "STRONGBOX_OPERATOR_CERT")]
        operator_cert: Option<PathBuf>,
        /// Its key.
        #[arg(long, env = "STRONGBOX_OPERATOR_KEY")]
        operator_key: Option<PathBuf>,
    },
    /// Create a workspace and print its first root key, which holds every permission.
    Bootstrap {
        /// Name of the new workspace.
        #[arg(long)]
        workspace: String,
        /// Database URL; overrides `database.url`.
        #[arg(long, env = "STRONGBOX_API_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Print `{"workspaceId","rootKeyId","rootKey"}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Runs the chosen command and turns failure into a message and exit code 1.
    pub async fn run(self) -> ExitCode {
        match self.dispatch().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("strongbox-api: {error:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn dispatch(self) -> anyhow::Result<()> {
        let mut sources = ApiConfig::process_sources(self.config.as_deref());
        match self.command {
            Command::Serve => serve(&sources).await,
            Command::Rewrap {
                workspace,
                retire,
                no_wait,
                batch,
                database_url,
                vault_url,
                ca_cert,
                client_cert,
                client_key,
                operator_cert,
                operator_key,
            } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_API__DATABASE__URL", url)]);
                }
                let database = sources.load::<MigrateConfig>()?.database;
                let client = |cert: PathBuf, key: PathBuf| {
                    crate::vault_client::VaultClient::new(&crate::vault_client::VaultClientConfig {
                        url: vault_url.clone(),
                        ca: ca_cert.clone(),
                        cert,
                        key,
                        connect_timeout_ms: 2_000,
                        request_timeout_ms: 60_000,
                        retries: 3,
                        breaker_failures: 10,
                        breaker_cooldown_ms: 1_000,
                        reload_interval_seconds: 60,
                    })
                };
                let vault = client(client_cert, client_key)?;
                let operator = match (retire, operator_cert, operator_key) {
                    (false, _, _) => None,
                    (true, Some(cert), Some(key)) => Some(client(cert, key)?),
                    (true, _, _) => anyhow::bail!(
                        "--retire needs the operator certificate: --operator-cert/--operator-key or STRONGBOX_OPERATOR_CERT/KEY"
                    ),
                };
                let keyring = match &workspace {
                    Some(w) => Some(crate::workspace_id(&database, w).await?),
                    None => None,
                };
                return rewrap_command(
                    &database,
                    &vault,
                    operator.as_ref(),
                    keyring.as_deref(),
                    batch,
                    !no_wait,
                )
                .await;
            }
            Command::ExportEncrypted { workspace, database_url, output } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_API__DATABASE__URL", url)]);
                }
                let database = sources.load::<MigrateConfig>()?.database;
                let count = match &output {
                    Some(path) => {
                        let file = std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        crate::export_encrypted(
                            &database,
                            &workspace,
                            std::io::BufWriter::new(file),
                        )
                        .await?
                    }
                    None => {
                        crate::export_encrypted(&database, &workspace, std::io::stdout().lock())
                            .await?
                    }
                };
                eprintln!("exported {count} ciphertext(s)");
                Ok(())
            }
            Command::Bootstrap { workspace, database_url, json } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_API__DATABASE__URL", url)]);
                }
                let database = sources.load::<MigrateConfig>()?.database;
                bootstrap(&database, &workspace, json).await
            }
            Command::Migrate { database_url } => {
                if let Some(url) = database_url {
                    sources = sources.env([("STRONGBOX_API__DATABASE__URL", url)]);
                }
                let config = ApiConfig::from_sources(&sources)?;
                strongbox_shared::telemetry::init(&config.log)?;
                let report = crate::migrate(&config.database).await?;
                println!(
                    "{}",
                    match report.applied.len() {
                        0 => "schema is up to date".to_owned(),
                        n => format!("applied {n} migration(s): {}", report.applied.join(", ")),
                    }
                );
                Ok(())
            }
        }
    }
}

async fn rewrap_command(
    database: &strongbox_shared::db::DatabaseConfig,
    vault: &crate::vault_client::VaultClient,
    operator: Option<&crate::vault_client::VaultClient>,
    keyring: Option<&str>,
    batch: i64,
    wait: bool,
) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    let tty = std::io::stderr().is_terminal();
    let mut bar = |keyring: &str, done: u64, total: i64| {
        let pct =
            if total > 0 { done * 100 / u64::try_from(total).unwrap_or(1).max(1) } else { 100 };
        let line = format!("rewrap {keyring}: {done}/{total} rows ({pct}%)");
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    };
    let outcomes = match crate::rewrap::run(database, vault, keyring, batch, wait, &mut bar).await {
        Ok(o) => o,
        Err(crate::rewrap::RewrapError::Busy) => {
            eprintln!(
                "strongbox-api: another rewrap is running; it will finish the work (run without --no-wait to wait for it)"
            );
            std::process::exit(4);
        }
        Err(e) => return Err(e.into()),
    };
    if tty {
        eprintln!();
    }
    for o in &outcomes {
        println!(
            "keyring {}: moved {} row(s) to version {}; {} could not be rewrapped; {} below the newest version",
            o.keyring, o.moved, o.target_version, o.failed, o.remaining
        );
    }
    let remaining: i64 = outcomes.iter().map(|o| o.remaining).sum();
    if remaining > 0 {
        anyhow::bail!(
            "{remaining} stored key(s) are still below their keyring's newest version; see the log, then run again"
        );
    }
    if let Some(operator) = operator {
        for (keyring, version) in
            crate::rewrap::retire(database, vault, operator, &outcomes).await?
        {
            println!("keyring {keyring}: retired every version below {version}");
        }
    }
    Ok(())
}

/// Just the database section, for commands that need nothing else.
#[derive(serde::Deserialize)]
struct MigrateConfig {
    database: strongbox_shared::db::DatabaseConfig,
}

async fn bootstrap(
    database: &strongbox_shared::db::DatabaseConfig,
    name: &str,
    json: bool,
) -> anyhow::Result<()> {
    let made = crate::bootstrap(database, name).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"workspaceId": made.workspace_id, "rootKeyId": made.root_key_id, "rootKey": made.root_key})
        );
    } else {
        println!(
            "Workspace {name} ({}) created.\n\nRoot key (shown once; it holds every permission):\n\n    {}\n\nUse it as: Authorization: Bearer <root key>",
            made.workspace_id, made.root_key
        );
    }
    Ok(())
}

async fn serve(sources: &ConfigSources) -> anyhow::Result<()> {
    let config = ApiConfig::from_sources(sources)?;
    let tracing = strongbox_shared::telemetry::init_with_traces(
        &config.log,
        &config.telemetry,
        "strongbox-api",
    )?;
    let app = Application::build(config).await.context("starting strongbox-api")?;
    strongbox_shared::shutdown::cancel_on_signal(app.shutdown_token());
    let served = app.run_until_stopped().await;
    tracing.shutdown().await;
    served
}
