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
    strongbox_shared::telemetry::init(&config.log)?;
    let app = Application::build(config).await.context("starting strongbox-api")?;
    strongbox_shared::shutdown::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
