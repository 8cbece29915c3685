//! Arbitrary bytes as an IP packet: parsing must never panic, and whatever parses must emit
//! and parse back to the same packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rawtcp::wire::{emit_tcp_packet, parse_tcp_packet, WireError};

fuzz_target!(|data: &[u8]| {
    let _ = parse_tcp_packet(data, true);
    let Ok((ip, tcp, payload)) = parse_tcp_packet(data, false) else {
        return;
    };

    let mut buf = vec![0u8; ip.header_len() + tcp.header_len() + payload.len()];
    let (src, dst, hop_limit) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let n = match emit_tcp_packet(src, dst, hop_limit, &tcp, payload, &mut buf) {
        Ok(n) => n,
        // The emitted option layout may be a few bytes longer than a packed one received,
        // which can push a packet of nearly 64 KiB past the length field.
        Err(WireError::BadLength) => return,
        Err(e) => panic!("a parsed packet failed to emit: {e}"),
    };
    let (ip2, tcp2, payload2) =
        parse_tcp_packet(&buf[..n], true).expect("an emitted packet parses");

    assert_eq!(ip2.src_addr(), src);
    assert_eq!(ip2.dst_addr(), dst);
    assert_eq!(ip2.hop_limit(), hop_limit);
    assert_eq!(payload2, payload);
    // SACK blocks beyond what fits beside the other options are left out on emit.
    let sent = tcp.options.sack.as_slice();
    let kept = tcp2.options.sack.as_slice();
    assert_eq!(kept, &sent[..kept.len()]);
    let mut expected = tcp;
    expected.options.sack = tcp2.options.sack;
    assert_eq!(tcp2, expected);
});
