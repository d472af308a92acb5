//! `strongbox-api` binary: parses the command line and hands over to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

/// mimalloc: under load, glibc's malloc and free took about a sixth of the api's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the runtime waits, once the command has returned, for work it cannot cancel (a
/// blocking task). `serve` has already spent its grace period by then; the process exits.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = strongbox_api::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("strongbox-api: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(cli.run());
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}
