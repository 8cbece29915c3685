//! The seed exchange, verbatim: a handshake with ISNs 100 and 2000, a 100-byte request and a
//! 500-byte answer, exactly six segments on the wire with exactly these numbers.

mod common;
use common::*;
use rawtcp::proto::State;

#[test]
fn seed_handshake_and_data_exchange() {
    let mut p = Pair::new(plain(), 100, plain(), 2000);
    p.settle();
    assert_eq!(p.client.conn.state(), State::Established);
    assert_eq!(p.server.conn.state(), State::Established);

    // The client sends a 100-byte request.
    assert_eq!(p.client.conn.send(&[b'q'; 100]), Ok(100));
    p.settle();
    // The server reads it and answers 500 bytes before its delayed ACK fires, so the ACK
    // rides on the answer.
    assert_eq!(p.server.read_all(), vec![b'q'; 100]);
    assert_eq!(p.server.conn.send(&[b'a'; 500]), Ok(500));
    p.settle();
    assert_eq!(p.client.read_all(), vec![b'a'; 500]);
    // The client's delayed ACK fires.
    let t = p.next_deadline().unwrap();
    p.advance_to(t);

    assert_eq!(
        p.take_log(),
        [
            "client -> server  SYN      S:100 A:0",
            "server -> client  SYN+ACK  S:2000 A:101",
            "client -> server  ACK      S:101 A:2001",
            "client -> server  PSH+ACK  S:101 A:2001 len=100",
            "server -> client  PSH+ACK  S:2001 A:201 len=500",
            "client -> server  ACK      S:201 A:2501",
        ]
    );
}

#[test]
fn seed_numbers_with_every_option_negotiated() {
    // Options change nothing about the numbers.
    let mut p = Pair::new(Default::default(), 100, Default::default(), 2000);
    p.settle();
    p.client.conn.send(&[1; 100]).unwrap();
    p.settle();
    p.server.read_all();
    p.server.conn.send(&[2; 500]).unwrap();
    p.settle();
    let t = p.next_deadline().unwrap();
    p.advance_to(t);
    let log = p.take_log();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(log[5].ends_with("ACK      S:201 A:2501"), "{log:#?}");
    let info = p.client.conn.info();
    assert!(info.sack && info.timestamps);
}
