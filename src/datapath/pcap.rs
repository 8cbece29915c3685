//! Packet capture: every segment a stack sends or receives, written to a pcap file that
//! Wireshark and tshark open (link type RAW: each record is a bare IPv4 or IPv6 packet).
//!
//! Enable it with [`StackBuilder::pcap`](crate::StackBuilder::pcap) or by setting
//! `RAWTCP_PCAP=path` for the default stack.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pcap's link type for raw IP packets (the version nibble tells IPv4 from IPv6).
const LINKTYPE_RAW: u32 = 101;
/// Largest packet recorded whole.
const SNAPLEN: u32 = 262_144;

/// Writes packets to a pcap file (the classic format, microsecond timestamps).
///
/// ```
/// let path = std::env::temp_dir().join("rawtcp-doc.pcap");
/// let w = rawtcp::datapath::pcap::PcapWriter::create(&path).unwrap();
/// w.write(&[0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]).unwrap();
/// assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 16 + 20);
/// # std::fs::remove_file(&path).unwrap();
/// ```
///
/// Each record reaches the file as it is written (one `write` per packet), so a capture is
/// complete even when the process exits without dropping its stack — the default stack
/// never is. That costs a system call per packet while capturing.
///
/// Timestamps follow tokio's clock from the wall-clock time the file was created, so a
/// capture of a simulated network under a paused clock shows network time, not the few
/// milliseconds of real time the run took.
#[derive(Debug)]
pub struct PcapWriter {
    out: Mutex<BufWriter<File>>,
    /// Wall-clock time at creation, since the Unix epoch.
    wall_start: Duration,
    /// tokio's clock at creation.
    start: tokio::time::Instant,
}

impl PcapWriter {
    /// Creates (or truncates) `path` and writes the pcap file header.
    pub fn create(path: impl AsRef<Path>) -> io::Result<PcapWriter> {
        let file = File::create(path.as_ref()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "rawtcp: cannot create pcap file {}: {e}",
                    path.as_ref().display()
                ),
            )
        })?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&header)?;
        out.flush()?;
        Ok(PcapWriter {
            out: Mutex::new(out),
            wall_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: tokio::time::Instant::now(),
        })
    }

    /// Appends one IP packet, stamped with the time now (tokio's clock).
    pub fn write(&self, packet: &[u8]) -> io::Result<()> {
        let now = self.wall_start + self.start.elapsed();
        let captured = packet.len().min(SNAPLEN as usize);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&(now.as_secs() as u32).to_le_bytes());
        record[4..8].copy_from_slice(&now.subsec_micros().to_le_bytes());
        record[8..12].copy_from_slice(&(captured as u32).to_le_bytes());
        record[12..16].copy_from_slice(&(packet.len() as u32).to_le_bytes());
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&record)?;
        out.write_all(&packet[..captured])?;
        out.flush()
    }

    /// Writes out buffered records.
    pub fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl Drop for PcapWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_are_well_formed() {
        let path = std::env::temp_dir().join(format!("rawtcp-pcap-{}.pcap", std::process::id()));
        let w = PcapWriter::create(&path).unwrap();
        let pkt = [0x60u8; 48];
        for _ in 0..100 {
            w.write(&pkt).unwrap();
        }
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&bytes[0..4], &0xa1b2_c3d4_u32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
            LINKTYPE_RAW
        );
        assert_eq!(bytes.len(), 24 + 100 * (16 + 48));
        let first = &bytes[24..40];
        assert_eq!(u32::from_le_bytes(first[8..12].try_into().unwrap()), 48);
        assert_eq!(u32::from_le_bytes(first[12..16].try_into().unwrap()), 48);
    }

    #[test]
    fn unwritable_path_names_the_file() {
        let err = PcapWriter::create("/nonexistent-dir/x.pcap").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.pcap"), "{err}");
    }
}
