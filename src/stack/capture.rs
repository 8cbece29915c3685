//! Packet capture for a stack: `StackBuilder::pcap(path)`, or `RAWTCP_PCAP` for every stack
//! built without a pcap of its own.
//!
//! `RAWTCP_PCAP=path`: the first such stack in the process writes `path`, each further one
//! `path` with `-2`, `-3`, ... before the extension (`/tmp/x.pcap`, `/tmp/x-2.pcap`), so two
//! stacks never truncate each other's file.
//!
//! A capture rides on the tap: every packet as it crossed the datapath. A segment a stack
//! sends to itself (both ends of a connection on one stack, as in the echo example) is
//! written once, when it leaves, not again when it comes back in.

use super::{Direction, Tap, TapEvent};
use crate::datapath::pcap::PcapWriter;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Stacks that took a capture file from `RAWTCP_PCAP` so far in this process.
static FROM_ENV: AtomicUsize = AtomicUsize::new(0);

/// The capture file `RAWTCP_PCAP` gives the next stack built without one, if it is set.
pub(crate) fn path_from_env() -> Option<PathBuf> {
    let base = std::env::var_os("RAWTCP_PCAP").filter(|p| !p.is_empty())?;
    let n = FROM_ENV.fetch_add(1, Ordering::Relaxed) + 1;
    Some(numbered(Path::new(&base), n))
}

/// `path` for the first stack, `stem-N.ext` for the N-th.
fn numbered(path: &Path, n: usize) -> PathBuf {
    if n <= 1 {
        return path.to_path_buf();
    }
    let mut name: OsString = path.file_stem().unwrap_or_default().to_owned();
    name.push(format!("-{n}"));
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// A tap that writes every packet to a pcap file at `path`, then calls `user`'s tap.
pub(crate) fn pcap_tap(path: PathBuf, user: Option<Tap>) -> io::Result<Tap> {
    let writer = PcapWriter::create(path)?;
    // (source, destination) pairs this stack sent from; a received packet with the same
    // pair is one of its own coming back. Bounded: cleared if it ever grows huge.
    let sent: Mutex<HashSet<(SocketAddr, SocketAddr)>> = Mutex::new(HashSet::new());
    Ok(Arc::new(move |ev: &TapEvent<'_>| {
        let own_echo = {
            let mut sent = super::unpoisoned(&sent);
            match ev.direction {
                Direction::Out => {
                    if sent.len() >= 1 << 16 {
                        sent.clear();
                    }
                    sent.insert((ev.src, ev.dst));
                    false
                }
                Direction::In => sent.contains(&(ev.src, ev.dst)),
            }
        };
        if !own_echo {
            if let Err(e) = writer.write(ev.packet) {
                tracing::warn!(error = %e, "pcap write failed");
            }
        }
        if let Some(t) = &user {
            t(ev);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::numbered;
    use std::path::Path;

    #[test]
    fn further_stacks_get_numbered_files() {
        let p = Path::new("/tmp/echo.pcap");
        assert_eq!(numbered(p, 1), Path::new("/tmp/echo.pcap"));
        assert_eq!(numbered(p, 2), Path::new("/tmp/echo-2.pcap"));
        assert_eq!(numbered(Path::new("cap"), 3), Path::new("cap-3"));
    }
}
