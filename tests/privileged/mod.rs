//! The rule for tests that need root and tools of the host (network namespaces, raw sockets,
//! nftables, curl, ...): without them such a test skips, loudly; with `CI=true` a missing
//! privilege or tool is a failure, since CI runs as root and installs the tools.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Whether this process runs as root (effective UID 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `test` (one of the `suite`'s, named in the message) can run: root and every one
/// of `tools`. If not, it says what is missing and skips, or panics under `CI=true`.
pub fn runnable(suite: &str, test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| !have(t))
        .map(|t| t.to_string())
        .collect();
    if !is_root() {
        missing.insert(0, "root privileges".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{suite} {test} needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: this is a failure, not a skip)");
    }
    eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
    false
}
