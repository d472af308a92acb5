//! `strongbox-vault` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc: under load, glibc's malloc and free took about a sixth of the api's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match strongbox_vault::cli::Cli::try_parse() {
        Ok(cli) => cli.run().await,
        Err(usage) => {
            let _stderr_gone = usage.print();
            // Exit 2 means something to scripts (`status`: locked; `audit verify`: broken), so a
            // mistyped command line exits 1, as any other failure, never 2. Help and version: 0.
            if usage.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
    }
}
