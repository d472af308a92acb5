//! A Postgres cluster of a test's own, for tests that stop or restart the server. It uses the
//! binaries `ops/test` found (`STRONGBOX_PG_BIN`) and, as root, runs them as `postgres`.

use std::path::PathBuf;
use std::process::Command;

use crate::TempDir;

/// A running throwaway cluster.
pub struct OwnCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    tls: bool,
}

impl OwnCluster {
    /// Creates and starts a cluster on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`OwnCluster::start`], with TLS switched on and `cert_pem`/`key_pem` as the server's
    /// certificate. Plain connections are still accepted, so a test can check which kind each
    /// client opened (`pg_stat_ssl`).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = PathBuf::from(std::env::var("STRONGBOX_PG_BIN").expect(
            "STRONGBOX_PG_BIN is not set: run the suite through ops/test, which finds the PostgreSQL binaries",
        ));
        let uid = Command::new("id").arg("-u").output().unwrap();
        let run_as = (String::from_utf8_lossy(&uid.stdout).trim() == "0").then_some("postgres");
        let dir = TempDir::new("own-pg");
        if let Some(user) = run_as {
            assert!(
                Command::new("chown")
                    .args([user, dir.path().to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { dir, bin, port, run_as, tls: tls.is_some() };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        );
        if let Some((cert, key)) = tls {
            for (name, content) in [("server.crt", cert), ("server.key", key)] {
                let path = cluster.dir.path().join("data").join(name);
                std::fs::write(&path, content).unwrap();
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some(user) = run_as {
                    let chowned = Command::new("chown").arg(user).arg(&path).status().unwrap();
                    assert!(chowned.success());
                }
            }
        }
        cluster.pg_ctl(&["start", "-w"]);
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200{}",
            self.port,
            self.dir.path().display(),
            if self.tls { " -c ssl=on" } else { "" }
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let mut args =
            vec!["-D", data.as_str(), "-l", log.as_str(), "-o", opts.as_str(), "-t", "60"];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    /// A URL of the `postgres` database, for creating test databases on this cluster.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (fast shutdown: every connection is cut).
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w"]);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        }));
    }
}
