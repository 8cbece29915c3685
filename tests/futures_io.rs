//! The `futures-io` feature: `TcpStream` and its halves speak the `futures` I/O traits.
#![cfg(feature = "futures-io")]

use futures_io::{AsyncRead, AsyncWrite};
use rawtcp::datapath::sim::SimNetwork;
use rawtcp::Stack;
use std::future::poll_fn;
use std::pin::Pin;

#[tokio::test(start_paused = true)]
async fn futures_traits_move_bytes_and_close() {
    let net = SimNetwork::new(1);
    let server = Stack::builder()
        .datapath(net.host("10.0.0.1".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    let client = Stack::builder()
        .datapath(net.host("10.0.0.2".parse().unwrap()).unwrap())
        .build()
        .unwrap();
    let listener = server.bind("10.0.0.1:80").await.unwrap();
    let mut c = client.connect("10.0.0.1:80").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();

    let n = poll_fn(|cx| AsyncWrite::poll_write(Pin::new(&mut c), cx, b"futures"))
        .await
        .unwrap();
    assert_eq!(n, 7);
    poll_fn(|cx| AsyncWrite::poll_close(Pin::new(&mut c), cx))
        .await
        .unwrap();

    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    loop {
        let n = poll_fn(|cx| AsyncRead::poll_read(Pin::new(&mut s), cx, &mut buf))
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"futures");

    // The owned halves too.
    let (mut r, mut w) = s.into_split();
    poll_fn(|cx| AsyncWrite::poll_write(Pin::new(&mut w), cx, b"back"))
        .await
        .unwrap();
    let (mut cr, _cw) = c.into_split();
    let n = poll_fn(|cx| AsyncRead::poll_read(Pin::new(&mut cr), cx, &mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], b"back");
    drop(w);
    // The client shut down its side earlier: the server's read half sees end of stream.
    let n = poll_fn(|cx| AsyncRead::poll_read(Pin::new(&mut r), cx, &mut buf)).await;
    assert_eq!(n.unwrap(), 0);
}
