//! `ops/dev` comes up again from the leftover states that used to stop it:
//! - the checkout deleted and cloned again at the same path, over clusters that outlived it (as
//!   root they live under /var/tmp, outside the checkout): a cluster without its password file;
//! - the folder behind the `.dev/pg` link removed by a tmp cleaner: a dangling link;
//! - a `.dev/` from before the vault database had an owner role.
//!
//! Each test runs the real script on a copy of `ops/`, with the binaries `ops/test` built
//! (`STRONGBOX_DEV_BIN_DIR`, so nothing is built) and free ports of its own, waits for the line
//! it prints once everything answers, checks that the root key the env file names works and that
//! the vault's serving role owns nothing, and stops it as Ctrl-C would.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use strongbox_tests::{TempDir, http_client};

/// What `ops/dev` prints on stdout once the stack answers and `.dev/strongbox.env` is written.
const READY: &str = "Strongbox is running. Ctrl-C stops everything.";

/// A start creates two clusters with initdb, starts both services and initializes the vault, on
/// a machine that may be running the rest of the suite.
const START_TIMEOUT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            // Keeps the mode, so ops/dev stays executable.
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Sends `signal` to every process in group `pgid`; false when there is none left.
fn signal_group(pgid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Four ports nothing listens on; the api and the vault take the next port too, for ops.
///
/// They come from below the kernel's ephemeral range (32768 and up here): a port the kernel
/// hands out is free at the moment it is chosen, but by the time `ops/dev` binds it, seconds
/// later, any test's outgoing connection or `bind(0)` may have taken it (and the api's ops port
/// then failed with "Address already in use").
struct Ports {
    api: u16,
    vault: u16,
    api_db: u16,
    vault_db: u16,
}

impl Ports {
    /// First port of the range tried, and how many.
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;

    fn free() -> Self {
        // Held until all are chosen, so no two are the same.
        let mut held = Vec::new();
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let mut candidates = (0..Self::SPAN).map(move |i| {
            u16::try_from(Self::LOW + (seed.wrapping_add(i.wrapping_mul(7_919)) % Self::SPAN))
                .unwrap()
        });
        let mut take = |width: u16| -> u16 {
            for port in candidates.by_ref() {
                let listeners: Vec<_> = (0..width)
                    .map_while(|k| TcpListener::bind(("127.0.0.1", port + k)).ok())
                    .collect();
                if listeners.len() == usize::from(width) {
                    held.extend(listeners);
                    return port;
                }
            }
            panic!("no free ports between {} and {}", Self::LOW, Self::LOW + Self::SPAN);
        };
        let (api, vault) = (take(2), take(2));
        let (api_db, vault_db) = (take(1), take(1));
        Self { api, vault, api_db, vault_db }
    }
}

/// A copy of the checkout's `ops/` in a folder of its own: `ops/dev` keeps everything in `.dev/`
/// beside it, and as root its clusters in `/var/tmp/strongbox-dev-<checksum of the path>`, which
/// the drop removes too, after stopping any cluster a failed run left behind.
struct Checkout {
    dir: TempDir,
    ports: Ports,
    /// The folder `.dev/pg` linked to, once seen (as root).
    linked: Option<PathBuf>,
}

impl Checkout {
    fn new() -> Self {
        let dir = TempDir::new("ops-dev");
        let root = dir.path().join("checkout");
        copy_tree(&repo().join("ops/lib"), &root.join("ops/lib"));
        std::fs::copy(repo().join("ops/dev"), root.join("ops/dev")).unwrap();
        Self { dir, ports: Ports::free(), linked: None }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("checkout")
    }

    fn dev(&self) -> PathBuf {
        self.root().join(".dev")
    }

    /// Where the cluster data is: `.dev/pg`, or the folder it links to.
    fn clusters(&self) -> PathBuf {
        let pg = self.dev().join("pg");
        std::fs::read_link(&pg).ok().or_else(|| self.linked.clone()).unwrap_or(pg)
    }

    /// Runs `ops/dev` and waits until it says the stack is running.
    async fn start(&mut self) -> DevRun {
        self.start_with(&[]).await
    }

    /// Runs `ops/dev ARGS…` and waits until it says the stack is running.
    async fn start_with(&mut self, args: &[&str]) -> DevRun {
        let bin = strongbox_tests::process::binary("strongbox-vault");
        let mut command = Command::new(self.root().join("ops/dev"));
        command
            .args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STRONGBOX_DEV_BIN_DIR", bin.parent().unwrap())
            .env("STRONGBOX_DEV_API_PORT", self.ports.api.to_string())
            .env("STRONGBOX_DEV_VAULT_PORT", self.ports.vault.to_string())
            .env("STRONGBOX_DEV_API_DB_PORT", self.ports.api_db.to_string())
            .env("STRONGBOX_DEV_VAULT_DB_PORT", self.ports.vault_db.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a signal reaches it and the services it started,
            // as Ctrl-C in its terminal would.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let pgid = child.id().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut run = DevRun { child, pgid, lines, log: Vec::new(), dev: self.dev() };
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = run.lines.recv().await {
                let done = line.trim() == READY;
                run.log.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        match ready {
            Ok(true) => {}
            Ok(false) => panic!("ops/dev exited before it was ready:\n{}", run.output()),
            Err(_) => panic!("ops/dev was not ready within {START_TIMEOUT:?}:\n{}", run.output()),
        }
        if let Ok(target) = std::fs::read_link(self.dev().join("pg")) {
            self.linked = Some(target);
        }
        run
    }

    /// The env file's `export KEY=value` lines.
    fn env_file(&self) -> HashMap<String, String> {
        let text = std::fs::read_to_string(self.dev().join("strongbox.env")).unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    /// The stack is usable: the root key the env file names lists root keys, and the vault's
    /// serving role owns nothing while the owner role owns the tables.
    async fn check_stack(&self) {
        let env = self.env_file();
        let response = http_client()
            .post(format!("{}/v2/rootKeys.listKeys", env["STRONGBOX_API_URL"]))
            .bearer_auth(&env["STRONGBOX_ROOT_KEY"])
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "rootKeys.listKeys with the env file's STRONGBOX_ROOT_KEY: {body}");

        let owned = "SELECT current_user::text, \
            (SELECT count(*) FROM pg_tables WHERE tableowner = current_user)";
        let serving = connect(&env["STRONGBOX_VAULT_DATABASE_URL"]).await;
        let row = serving.query_one(owned, &[]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, i64>(1)), ("strongbox".to_owned(), 0));
        let row = serving
            .query_one(
                "SELECT has_table_privilege('audit_log', 'SELECT'), \
                    has_table_privilege('audit_log', 'INSERT'), \
                    has_table_privilege('audit_log', 'UPDATE'), \
                    has_table_privilege('audit_log', 'DELETE')",
                &[],
            )
            .await
            .unwrap();
        let rights: [bool; 4] = [row.get(0), row.get(1), row.get(2), row.get(3)];
        assert_eq!(
            rights,
            [true, true, false, false],
            "audit_log: SELECT, INSERT, no UPDATE, DELETE"
        );
        let owner = connect(&env["STRONGBOX_VAULT_DATABASE_OWNER_URL"]).await;
        let row = owner.query_one(owned, &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "strongbox_owner");
        assert!(row.get::<_, i64>(1) > 0, "the owner role owns the vault's tables");
    }

    /// Runs `script` with ops/lib/pg.sh loaded, as ops/dev would, with `args` as $1….
    fn pg_script(&self, script: &str, args: &[&str]) {
        let full = format!(
            "set -euo pipefail; source ops/lib/pg.sh; pg_ensure_installed; pg_choose_user; {script}"
        );
        let status = std::process::Command::new("bash")
            .current_dir(self.root())
            .arg("-c")
            .arg(full)
            .arg("bash")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "{script}: {status}");
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let clusters = self.clusters();
        for name in ["api", "vault"] {
            let data = clusters.join(name);
            let pidfile = data.join("postmaster.pid");
            let Ok(text) = std::fs::read_to_string(&pidfile) else { continue };
            let pid = text.lines().next().unwrap_or_default().trim().to_owned();
            // Only the postmaster of this very folder, never whatever reused a stale pid.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(&*data.to_string_lossy()) {
                continue;
            }
            // SIGINT is PostgreSQL's fast shutdown.
            let _ = std::process::Command::new("kill").arg("-INT").arg(pid).status();
            for _ in 0..300 {
                if !pidfile.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(outside) = self.linked.as_ref().and_then(|pg| pg.parent())
            && outside
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("strongbox-dev-"))
        {
            let _ = std::fs::remove_dir_all(outside);
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A running `ops/dev`.
struct DevRun {
    child: Child,
    pgid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
    dev: PathBuf,
}

impl DevRun {
    /// What it printed, and the end of the services' logs.
    fn output(&self) -> String {
        let mut out = self.log.join("\n");
        for name in ["vault", "api"] {
            let log = std::fs::read_to_string(self.dev.join(format!("logs/{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            out.push_str(&format!("\n--- .dev/logs/{name}.log (end) ---\n{}", tail.join("\n")));
        }
        out
    }

    /// Stops it as Ctrl-C in its terminal would, and waits until it has stopped the clusters.
    async fn stop(mut self) {
        assert!(signal_group(self.pgid, "INT"), "ops/dev was no longer running");
        let status = tokio::time::timeout(Duration::from_secs(90), self.child.wait()).await;
        let Ok(status) = status else {
            panic!("ops/dev did not stop within 90 s of SIGINT:\n{}", self.output());
        };
        let status = status.unwrap();
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        // 130 when its INT trap ran first; 0 when it saw a service stop as asked before that.
        assert!(
            matches!(status.code(), Some(0 | 130)),
            "ops/dev stopped with {status}:\n{}",
            self.output()
        );
    }

    fn said(&self, what: &str) -> bool {
        self.log.iter().any(|line| line.contains(what))
    }
}

impl Drop for DevRun {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // A failed test: TERM runs ops/dev's trap, which stops the services and the clusters
        // (their servers left their process group); KILL if it does not finish.
        signal_group(self.pgid, "TERM");
        for _ in 0..600 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group(self.pgid, "KILL");
    }
}

#[tokio::test]
async fn ops_dev_comes_up_after_the_checkout_is_cloned_again() {
    let mut checkout = Checkout::new();
    let run = checkout.start().await;
    checkout.check_stack().await;
    run.stop().await;

    if checkout.dev().join("pg").is_symlink() {
        // As root: the clusters live under /var/tmp and outlive the checkout. A new clone at the
        // same path has no .dev/ at all.
        std::fs::remove_dir_all(checkout.dev()).unwrap();
    } else {
        // Not root: the clusters live in .dev/pg and would go with the checkout. Keeping them
        // and deleting everything else in .dev/ leaves the same state, clusters without their
        // password files, root key or server key.
        for entry in std::fs::read_dir(checkout.dev()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == "pg" {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                std::fs::remove_dir_all(entry.path()).unwrap();
            } else {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    assert!(
        checkout.clusters().join("api/PG_VERSION").exists(),
        "the old clusters are still there"
    );

    let run = checkout.start().await;
    assert!(
        run.said("has no password file"),
        "the old clusters were made afresh:\n{}",
        run.output()
    );
    checkout.check_stack().await;
    run.stop().await;
}

#[tokio::test]
async fn ops_dev_comes_up_after_its_cluster_folder_is_removed() {
    let mut checkout = Checkout::new();
    let run = checkout.start().await;
    run.stop().await;

    // As root .dev/pg is a link to a folder under /var/tmp, which a tmp cleaner may remove,
    // leaving the link dangling; otherwise .dev/pg is the folder itself.
    let pg = checkout.dev().join("pg");
    let clusters = checkout.clusters();
    std::fs::remove_dir_all(&clusters).unwrap();
    if clusters != pg {
        assert!(pg.is_symlink() && !pg.exists(), "a dangling .dev/pg link");
    }

    let run = checkout.start().await;
    assert!(run.said("creating the api-db cluster"), "the clusters were made afresh");
    checkout.check_stack().await;
    run.stop().await;
}

#[tokio::test]
async fn ops_dev_gives_an_earlier_vault_db_its_owner_role() {
    let mut checkout = Checkout::new();
    let run = checkout.start().await;
    run.stop().await;

    // Back to the vault-db an ops/dev without owner roles made: `strongbox` owns the database and
    // every table, there is no strongbox_owner and no password file for it.
    let data = checkout.clusters().join("vault");
    checkout.pg_script(
        r#"pg_start "$1" "$2"
        pg_psql "$1" "$2" "REASSIGN OWNED BY strongbox_owner TO strongbox" strongbox
        pg_psql "$1" "$2" "DROP OWNED BY strongbox_owner" strongbox
        pg_psql "$1" "$2" "DROP ROLE strongbox_owner"
        pg_stop "$1""#,
        &[&data.to_string_lossy(), &checkout.ports.vault_db.to_string()],
    );
    std::fs::remove_file(checkout.dev().join("vault-db-owner.password")).unwrap();

    let run = checkout.start().await;
    assert!(run.said("giving the vault-db its owner role"), "{}", run.output());
    assert!(!run.said("creating the vault-db cluster"), "the vault-db was kept");
    checkout.check_stack().await;
    run.stop().await;
}

#[tokio::test]
async fn ops_dev_with_shares_splits_the_key_and_unlocks_with_three_of_them() {
    let mut checkout = Checkout::new();
    let run = checkout.start_with(&["--fresh", "--shares"]).await;
    let env = checkout.env_file();
    let shares: Vec<String> = env["STRONGBOX_DEV_SHARES"].split(',').map(str::to_owned).collect();
    assert_eq!(shares.len(), 5, "{shares:?}");
    assert!(shares.iter().all(|s| s.starts_with("sb1-")), "{shares:?}");
    assert!(!env.contains_key("STRONGBOX_DEV_SERVER_KEY"), "no single key in shares mode");
    assert!(run.said(&shares[4]), "the shares are printed");
    let kept = std::fs::read_to_string(checkout.dev().join("shares")).unwrap();
    assert_eq!(kept.lines().collect::<Vec<_>>(), shares);
    checkout.check_stack().await;
    run.stop().await;

    // The next start finds the vault locked and unlocks it with three of the shares.
    let run = checkout.start().await;
    assert!(run.said("unlocking the vault with 3 of its shares"), "unlocked by shares");
    checkout.check_stack().await;
    run.stop().await;
}

#[tokio::test]
async fn ops_dev_with_a_token_seals_the_vault_and_it_unlocks_itself_on_every_start() {
    let mut checkout = Checkout::new();
    let run = checkout.start_with(&["--fresh", "--token"]).await;
    let env = checkout.env_file();
    let recovery: Vec<&str> = env["STRONGBOX_DEV_RECOVERY_SHARES"].split(',').collect();
    assert_eq!(recovery.len(), 5, "{recovery:?}");
    assert!(
        !env.contains_key("STRONGBOX_DEV_SERVER_KEY") && !env.contains_key("STRONGBOX_DEV_SHARES")
    );
    assert_eq!(env["STRONGBOX_VAULT__SEAL__KIND"], "pkcs11");
    assert!(env["SOFTHSM2_CONF"].starts_with(checkout.dev().to_str().unwrap()), "{env:?}");
    let pin = std::fs::read_to_string(checkout.dev().join("softhsm/pin")).unwrap();
    assert!(!run.said(pin.trim()), "the PIN is not printed");
    checkout.check_stack().await;
    let status = |env: HashMap<String, String>| async move {
        http_client()
            .get(format!("{}/v1/sys/status", env["STRONGBOX_VAULT_HEALTH_URL"]))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let seen = status(env.clone()).await;
    assert_eq!((seen["seal"].as_str(), seen["unlocked"].as_bool()), (Some("pkcs11"), Some(true)));
    run.stop().await;

    // The next start, without the flag, uses the same token and the vault unlocks itself.
    let run = checkout.start().await;
    assert!(!run.said("unlocking the vault"), "no key or shares were given: {}", run.output());
    checkout.check_stack().await;
    let seen = status(checkout.env_file()).await;
    assert_eq!((seen["seal"].as_str(), seen["unlocked"].as_bool()), (Some("pkcs11"), Some(true)));
    assert_eq!(
        checkout.env_file()["STRONGBOX_DEV_RECOVERY_SHARES"],
        env["STRONGBOX_DEV_RECOVERY_SHARES"]
    );
    run.stop().await;

    // --token does not take over a vault held by a key: that one keeps its key.
    checkout.start_with(&["--fresh"]).await.stop().await;
    let run = checkout.start_with(&["--token"]).await;
    assert!(run.said("--token applies to a new vault"), "{}", run.output());
    let env = checkout.env_file();
    assert!(env.contains_key("STRONGBOX_DEV_SERVER_KEY") && !env.contains_key("SOFTHSM2_CONF"));
    checkout.check_stack().await;
    run.stop().await;
}
