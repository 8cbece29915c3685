//! What a panic inside one connection's engine does to the stack: that connection is reset
//! (its application reads `ConnectionAborted`, its peer a RST) and every other connection
//! goes on as if nothing happened. The panic is provoked with a congestion-control module
//! that panics on command, as a bug in the engine would.

use rawtcp::datapath::sim::SimNetwork;
use rawtcp::proto::cc::{AckEvent, Algorithm, CongestionControl, CongestionEvent};
use rawtcp::proto::{Config, Instant};
use rawtcp::Stack;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fixed window that panics on the first acknowledgment after `armed` is set.
#[derive(Debug)]
struct Tripwire(Arc<AtomicBool>);

impl CongestionControl for Tripwire {
    fn name(&self) -> &'static str {
        "tripwire"
    }
    fn window(&self) -> u32 {
        1 << 20
    }
    fn ssthresh(&self) -> u32 {
        u32::MAX
    }
    fn on_ack(&mut self, _: Instant, _: &AckEvent) {
        if self.0.load(Ordering::SeqCst) {
            panic!("tripwire: a bug in the engine");
        }
    }
    fn on_congestion_event(&mut self, _: Instant, _: &CongestionEvent) {}
    fn on_recovery_end(&mut self, _: Instant, _: u32) {}
    fn on_timeout(&mut self, _: Instant, _: u32, _: u32, _: bool) {}
    fn on_idle_restart(&mut self, _: u32) {}
    fn undo(&mut self, _: u32, _: u32) {}
    fn seed(&mut self, _: u32, _: u32) {}
}

async fn echo_once(s: &mut rawtcp::TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).await?;
    Ok(back)
}

#[tokio::test(start_paused = true)]
async fn a_panicking_engine_resets_its_connection_and_spares_the_others() {
    let net = SimNetwork::new(21);
    let build = |ip: &str| {
        Stack::builder()
            .tcp_config(Config::default())
            .datapath(net.host(ip.parse().unwrap()).unwrap())
            .build()
            .unwrap()
    };
    let (server, client) = (build("10.0.0.1"), build("10.0.0.2"));
    let listener = server.bind("10.0.0.1:7").await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    let armed = Arc::new(AtomicBool::new(false));
    let trip = armed.clone();
    let mut doomed = client.connect("10.0.0.1:7").await.unwrap();
    doomed
        .set_congestion(Algorithm::Custom(Arc::new(move |_| {
            Box::new(Tripwire(trip.clone()))
        })))
        .unwrap();
    let mut healthy = client.connect("10.0.0.1:7").await.unwrap();
    assert_eq!(echo_once(&mut doomed, b"before").await.unwrap(), b"before");
    assert_eq!(echo_once(&mut healthy, b"before").await.unwrap(), b"before");

    // Silence the expected panic's message; the stack catches the panic itself.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    armed.store(true, Ordering::SeqCst);
    let err = tokio::time::timeout(Duration::from_secs(5), echo_once(&mut doomed, b"boom"))
        .await
        .expect("the poisoned connection answers at once")
        .unwrap_err();
    std::panic::set_hook(hook);
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    assert_eq!(client.stats().poisoned, 1);

    // The others are untouched: the healthy connection echoes, and new ones open.
    for i in 0..10u8 {
        let data = vec![i; 10_000];
        assert_eq!(echo_once(&mut healthy, &data).await.unwrap(), data);
    }
    let mut fresh = client.connect("10.0.0.1:7").await.unwrap();
    assert_eq!(echo_once(&mut fresh, b"after").await.unwrap(), b"after");
    // The server's side of the poisoned connection was reset by the RST, not left open:
    // only the healthy and fresh connections remain there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let open = server
        .connections()
        .connections
        .iter()
        .filter(|c| c.state == rawtcp::proto::State::Established)
        .count();
    assert_eq!(open, 2);
}
