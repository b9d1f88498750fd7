//! The audit behind "no handler holds a lock or does blocking I/O on the
//! async path": a scan of the code the functions run for what could block
//! a Tokio worker, listed with the judgement on each (audit.md).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What would block a worker thread or hold a lock: synchronous locks,
/// files, sockets, sleeps, blocking clients and executors.
const SUSPECTS: &[&str] = &[
    "std::sync::Mutex",
    "Mutex<",
    "RwLock",
    "std::fs",
    "File::",
    "std::net",
    "thread::sleep",
    "std::thread",
    "reqwest::blocking",
    "block_on",
    "spawn_blocking",
    "std::process",
    "println!",
    "std::io::stdin",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The section: the scan, then the judgement on each hit (audit.md).
pub fn audit(out: &mut String) {
    let _ = writeln!(out, "## Audit: locks and blocking I/O on the async path\n");
    let _ = writeln!(
        out,
        "Lines of `shared/src` and `functions/` that name a lock, file, socket, sleep, thread, process, blocking\n\
         client or executor, or print (`bench/src/audit.rs`, run now):\n"
    );
    scan(out);
    let _ = writeln!(out, "{}", include_str!("audit.md"));
}

/// Lines of shared/src and functions/ (tests modules included: a hit there
/// is read and dismissed by hand) that name a suspect.
fn scan(out: &mut String) {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut files = Vec::new();
    for dir in ["shared/src", "functions"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut hits = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let name = file.strip_prefix(root).unwrap_or(file).display().to_string();
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if let Some(suspect) = SUSPECTS.iter().find(|s| line.contains(*s)) {
                hits += 1;
                let _ = writeln!(out, "- `{name}:{}` ({suspect}): `{}`", number + 1, line.trim());
            }
        }
    }
    let _ = writeln!(out, "\n{hits} lines in {} files scanned.\n", files.len());
}
