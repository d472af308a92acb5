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

async fn serve(sources: &ConfigSources) -> anyhow::Result<()> {
    let config = ApiConfig::from_sources(sources)?;
    strongbox_shared::telemetry::init(&config.log)?;
    let app = Application::build(config).await.context("starting strongbox-api")?;
    strongbox_shared::shutdown::cancel_on_signal(app.shutdown_token());
    app.run_until_stopped().await
}
