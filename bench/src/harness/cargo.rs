//! The workspace's root, and cargo builds run in it (the release binaries
//! the cold start section times, the dev server the events section starts).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs cargo from the workspace root and returns each built binary's
/// path by name, and how long cargo took.
pub async fn cargo_build(args: &[&str]) -> Result<(HashMap<String, PathBuf>, Duration), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = tokio::process::Command::new(cargo);
    // `cargo run` hands the bench its package's variables; some build
    // scripts (ring's) track CARGO_MANIFEST_DIR, so passing them on would
    // make this cargo rebuild what the one before it built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let from_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_str());
        if from_cargo_run {
            command.env_remove(name);
        }
    }
    let started = Instant::now();
    let output = command
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cargo: {e}"))?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let mut binaries = HashMap::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Value>(line) else { continue };
        if let (Some(name), Some(path)) = (message["target"]["name"].as_str(), message["executable"].as_str()) {
            binaries.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    Ok((binaries, took))
}
