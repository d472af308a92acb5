//! The real service binaries, started as child processes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Path of a binary built by `ops/test`.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("STRONGBOX_BIN_DIR").expect(
        "STRONGBOX_BIN_DIR is not set: run the suite through ops/test, which builds the binaries",
    );
    let path = PathBuf::from(dir).join(name);
    assert!(path.exists(), "{} does not exist; build it first", path.display());
    path
}

/// Runs binary `name` with `args`, no inherited environment, and `input` on its stdin; returns
/// its exit code and its stdout parsed as JSON (panicking with both streams if it is not JSON).
pub async fn run_json_with_stdin(
    name: &str,
    args: &[&str],
    input: &str,
) -> (i32, serde_json::Value) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = Command::new(binary(name))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!("not JSON: {stdout} / {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), answer)
}

/// A running service binary whose JSON log lines are collected.
pub struct ServiceProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

impl ServiceProcess {
    /// Starts `name args…` with only `env` (plus PATH) in its environment.
    pub fn start(name: &str, args: &[&str], env: &HashMap<String, String>) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stdout.take().unwrap()),
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
        Self { child, lines, log: Vec::new() }
    }

    /// Waits for the first log line whose JSON `message` equals `message`, returning it parsed.
    pub async fn wait_for_message(&mut self, message: &str) -> serde_json::Value {
        let deadline = Duration::from_secs(60);
        let found = tokio::time::timeout(deadline, async {
            while let Some(line) = self.lines.recv().await {
                self.log.push(line.clone());
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["message"] == message
                {
                    return Some(value);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(value)) => value,
            _ => panic!("no log line {message:?}; log so far:\n{}", self.log.join("\n")),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process already reaped")
    }

    /// Sends `signal` (such as `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("process already reaped");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the process to exit, collecting the rest of its output.
    pub async fn wait(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("process did not exit within 60 s")
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.log.push(line);
        }
        status
    }
}
