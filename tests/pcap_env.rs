//! `RAWTCP_PCAP`: every stack built without a pcap of its own writes one — the first the
//! file named, the next ones numbered — and a stack talking to itself captures each
//! segment once. Its own test binary, since the variable is process-wide.

use rawtcp::datapath::sim::SimNetwork;
use rawtcp::Stack;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Packets in a classic pcap file (little-endian records).
fn records(bytes: &[u8]) -> usize {
    let mut at = 24;
    let mut n = 0;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
        n += 1;
    }
    assert_eq!(at, bytes.len());
    n
}

#[tokio::test(start_paused = true)]
async fn every_stack_without_its_own_pcap_honours_rawtcp_pcap() {
    let dir = std::env::temp_dir().join(format!("rawtcp-pcap-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("cap.pcap");
    // This binary has this one test: nothing else reads the environment meanwhile.
    std::env::set_var("RAWTCP_PCAP", &base);
    let net = SimNetwork::new(5);
    let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    // One stack talks to itself (both ends on 10.0.0.1); another has a pcap of its own.
    let one = Stack::builder()
        .datapath(net.host(a).unwrap())
        .build()
        .unwrap();
    let own = dir.join("own.pcap");
    let _two = Stack::builder()
        .datapath(net.host(b).unwrap())
        .pcap(&own)
        .build()
        .unwrap();
    let three = Stack::builder()
        .datapath(net.host_with(&[[10, 0, 0, 3].into()]).unwrap())
        .build()
        .unwrap();
    drop(three);
    let listener = one.bind(SocketAddr::new(a, 7)).await.unwrap();
    let mut c = one.connect(SocketAddr::new(a, 7)).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    c.shutdown().await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let info = c.info().unwrap();
    let sinfo = s.info().unwrap();

    let first = std::fs::read(&base).unwrap();
    assert_eq!(
        records(&first) as u64,
        info.segments_sent + sinfo.segments_sent,
        "each segment the stack sent itself, once"
    );
    assert!(own.exists(), "a stack's own pcap wins");
    assert!(
        dir.join("cap-2.pcap").exists(),
        "the next stack's file is numbered"
    );
    assert!(!dir.join("cap-3.pcap").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
