//! What the examples that drive namespaces (`wire_loss`, `wan_loss`, `syn_flood`) share:
//! reading arguments and the command line, checking the host, finding the HTTP server
//! binary, running tools, reading `http_client`'s times, and checking a download against
//! the HTTP server's byte pattern.
//! Included by each with `#[path]`; not an example of its own.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Bytes read from curl at a time.
pub const CHUNK: usize = 256 * 1024;

pub fn parse_in(v: &str, what: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    v.parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or(format!("{what} must be a number in {range:?}, not {v:?}"))
}

/// `123`, `100k`, `20M`, `1G`, `64Mi`...: decimal or binary multiples.
pub fn parse_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let mult: u64 = match unit.trim_end_matches(['B', 'b']) {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.parse::<u64>().ok()?.checked_mul(mult)
}

/// The command line, quoted where a shell would need it.
pub fn command_line() -> String {
    let quote = |a: String| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/.,_-=:".contains(c))
        {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::env::args().map(quote).collect::<Vec<_>>().join(" ")
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find(|l| l.starts_with("Uid:"))?;
            Some(uid.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The `http_server` example, built next to this program.
pub fn http_server_binary() -> Result<PathBuf, String> {
    example_binary("http_server")
}

/// The example `name`, built next to this program.
pub fn example_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let p = exe.with_file_name(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release --examples` first",
            p.display()
        ))
    }
}

/// Runs a command to completion; its stdout, or why it failed.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Counts the bytes read and checks them against the pattern `byte[i] = i % 251`.
pub fn read_pattern(mut from: impl Read) -> Result<u64, String> {
    // The pattern from any phase is a slice of this.
    let pattern: Vec<u8> = (0..251 + CHUNK).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; CHUNK];
    let mut pos: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(pos),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading curl's output: {e}")),
        };
        let phase = (pos % 251) as usize;
        if buf[..n] != pattern[phase..phase + n] {
            let i = (0..n).find(|&i| buf[i] != pattern[phase + i]).unwrap_or(0);
            return Err(format!("byte {} differs from the pattern", pos + i as u64));
        }
        pos += n as u64;
    }
}

/// The times in `examples/http_client.rs`'s status line (`status 200 bytes N in T s (R MB/s),
/// connected in C s`), in seconds: the download's total, and the connect time where the
/// line gives it. `None` for any other line.
pub fn http_client_times(line: &str) -> Option<(f64, Option<f64>)> {
    if !line.starts_with("status ") {
        return None;
    }
    let seconds = |after: &str| {
        let (t, _) = after.split_once(" s")?;
        t.trim().parse().ok()
    };
    let total = seconds(line.split_once(" in ")?.1)?;
    let connect = line
        .split_once("connected in ")
        .and_then(|(_, t)| seconds(t));
    Some((total, connect))
}
