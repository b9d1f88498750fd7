//! The dev server (`credits serve`), built and started as `make run` does,
//! for the events section.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use super::cargo::{cargo_build, workspace};

/// Runs cargo as `make run` does (`cargo build --workspace --bin credits`)
/// from the workspace root; the binary's path and how long cargo took.
pub async fn build_dev_server() -> Result<(PathBuf, Duration), String> {
    let (mut binaries, took) = cargo_build(&["--workspace", "--bin", "credits"]).await?;
    let credits = binaries.remove("credits").ok_or("cargo built no credits binary")?;
    Ok((credits, took))
}

/// `credits serve` as `make run` starts it, on a free port with its data in
/// a folder of its own; its admin token, read from what it prints.
pub struct DevServer {
    child: tokio::process::Child,
    pub base: String,
    pub admin: String,
    dir: PathBuf,
}

impl DevServer {
    pub async fn start(bin: &std::path::Path) -> Result<DevServer, String> {
        let dir = std::env::temp_dir().join(format!("credits-bench-events-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("serve.log")).map_err(|e| e.to_string())?;
        let listen = format!("127.0.0.1:{}", dynamodb_local::free_port()?);
        let mut command = tokio::process::Command::new(bin);
        // Its defaults, whatever the bench's shell sets (a bus, another
        // DynamoDB, a sweep interval); where the jar is may stay.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let setting = name.starts_with("CREDITS_") && name != "CREDITS_DYNAMODB_LOCAL_DIR";
            if setting || ["DYNAMODB_ENDPOINT", "EVENTBRIDGE_ENDPOINT", "RUST_LOG"].contains(&name.as_str()) {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .current_dir(workspace())
            .env("CREDITS_LISTEN", &listen)
            .env("CREDITS_DATA_DIR", dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        // Its log lines go to stdout too: read it to the end, keeping the
        // `export …` lines it prints once it listens.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("export ") {
                    let _ = tx.send(line);
                }
            }
        });
        let admin = tokio::time::timeout(Duration::from_secs(180), async {
            while let Some(line) = rx.recv().await {
                if let Some(token) = line.strip_prefix("export ADMIN_TOKEN=") {
                    return Some(token.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let server = DevServer { child, base: format!("http://{listen}"), admin: String::new(), dir };
        match admin {
            Some(admin) => Ok(DevServer { admin, ..server }),
            None => {
                let log = std::fs::read_to_string(server.dir.join("serve.log")).unwrap_or_default();
                server.stop().await;
                Err(format!(
                    "the dev server did not start: {}",
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ))
            }
        }
    }

    /// SIGTERM, so it stops DynamoDB Local with it; its folder removed.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
