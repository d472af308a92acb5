//! `ops/soak`'s driver: runs the soak of `strongbox_tests::soak` against the binaries in
//! `STRONGBOX_BIN_DIR` and the Postgres server of `DATABASE_URL`, prints its report, and exits 1
//! when it found a problem.
//!
//!   strongbox-soak [--short] [--json FILE]

use strongbox_tests::soak::{self, Settings};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut settings = Settings::full();
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => settings = Settings::short(),
            "--json" => json = Some(args.next().expect("--json needs a file")),
            other => {
                eprintln!("strongbox-soak: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    eprintln!(
        "soak: {} s of mixed traffic, {} clients",
        settings.length.as_secs(),
        settings.clients
    );
    let report = soak::run(settings).await;
    println!("{}", report.render());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    }
    let problems = report.problems();
    for problem in &problems {
        eprintln!("soak: PROBLEM: {problem}");
    }
    std::process::exit(i32::from(!problems.is_empty()));
}
