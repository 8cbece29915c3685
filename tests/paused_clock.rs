//! Applications that pause tokio's clock (`tokio::time::pause`, `advance`,
//! `#[tokio::test(start_paused = true)]`) work with rawtcp as with `tokio::net`, with the
//! default stack (its reactor on a thread of its own, on a clock that never pauses) and with
//! explicit stacks (built on the paused runtime, sharing its clock, or on a thread of their
//! own).
//!
//! Every test runs its body on a fresh runtime on a thread of its own, bounded by a
//! wall-clock watchdog: a hang is a failure, not a stuck test run.

use rawtcp::Stack;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `body` on a fresh current-thread runtime (its clock paused from the start when
/// `paused`) on its own thread; fails if it takes longer than `limit` of real time.
fn bounded<F>(limit: Duration, paused: bool, body: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(paused)
            .build()
            .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(body())));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("hung: no result after {limit:?} of real time"),
    }
}

/// Which stack a test uses.
#[derive(Clone, Copy, Debug)]
enum Which {
    /// The free functions: the process-wide default stack.
    Default,
    /// `Stack::builder().build()` on the test's (paused) runtime.
    OnRuntime,
    /// `Stack::builder().dedicated_thread(true).build()`.
    OwnThread,
}

impl Which {
    fn stack(self) -> Option<Stack> {
        match self {
            Which::Default => None,
            Which::OnRuntime => Some(Stack::builder().build().unwrap()),
            Which::OwnThread => Some(Stack::builder().dedicated_thread(true).build().unwrap()),
        }
    }
}

async fn listen(stack: &Option<Stack>) -> rawtcp::TcpListener {
    match stack {
        Some(s) => s.bind("127.0.0.1:0").await.unwrap(),
        None => rawtcp::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

async fn connect(stack: &Option<Stack>, addr: std::net::SocketAddr) -> rawtcp::TcpStream {
    match stack {
        Some(s) => s.connect(addr).await.unwrap(),
        None => rawtcp::TcpStream::connect(addr).await.unwrap(),
    }
}

/// An echo server for one connection; returns its task and address.
async fn echo_server(stack: &Option<Stack>) -> (tokio::task::JoinHandle<()>, SocketAddr) {
    let listener = listen(stack).await;
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
    });
    (task, addr)
}

/// `rounds` echoes of `size` bytes, advancing the paused clock by `advance` before each.
/// The stack's own timers must not notice when its clock is not the application's: no
/// retransmission timeout on a loopback connection the application moved hours ahead.
async fn echo_rounds(which: Which, advance: Duration, rounds: usize, size: usize) {
    let stack = which.stack();
    let (server, addr) = echo_server(&stack).await;
    let mut c = connect(&stack, addr).await;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    for _ in 0..rounds {
        tokio::time::advance(advance).await;
        let (mut r, mut w) = c.split();
        let mut back = vec![0u8; size];
        tokio::join!(async { w.write_all(&data).await.unwrap() }, async {
            r.read_exact(&mut back).await.unwrap()
        });
        assert!(back == data, "echo differs");
    }
    if !matches!(which, Which::OnRuntime) {
        let info = c.info().unwrap();
        // No retransmission timeout: a clock moved hours ahead would fire one. Other
        // retransmissions are ordinary TCP here: on a busy machine the UDP datapath's
        // loopback drops datagrams when a socket buffer fills (repaired by RACK and fast
        // retransmit), and a tail-loss probe fires when an ACK is late.
        assert_eq!(info.timeouts, 0, "{info:?}");
    }
    c.shutdown().await.unwrap();
    server.await.unwrap();
}

/// The hang: pause, advance an hour, then move a megabyte. The writes computed the
/// engine's deadlines from the application's clock, an hour ahead of the reactor's, which
/// then slept an hour of real time before sending what was due.
#[test]
fn pause_then_advance_an_hour_default_stack() {
    bounded(Duration::from_secs(60), false, || async {
        tokio::time::pause();
        echo_rounds(Which::Default, Duration::from_secs(3600), 2, 1 << 20).await
    });
}

#[test]
fn pause_then_advance_an_hour_own_thread_stack() {
    bounded(Duration::from_secs(60), false, || async {
        tokio::time::pause();
        echo_rounds(Which::OwnThread, Duration::from_secs(3600), 2, 1 << 20).await
    });
}

/// A stack built on the paused runtime runs on the paused clock itself, as the simulated
/// network's tests rely on; advancing it is the stack's time too.
#[test]
fn pause_then_advance_stack_on_the_paused_runtime() {
    bounded(Duration::from_secs(60), false, || async {
        tokio::time::pause();
        echo_rounds(Which::OnRuntime, Duration::from_secs(1), 5, 1 << 20).await
    });
}

#[test]
fn start_paused_many_small_advances() {
    for which in [Which::Default, Which::OwnThread, Which::OnRuntime] {
        bounded(Duration::from_secs(60), true, move || {
            echo_rounds(which, Duration::from_millis(7), 100, 100)
        });
    }
}

/// A test in the common shape: `start_paused`, an echo server that takes 30 s (of paused
/// time) to answer, and a client that bounds every step with a 60 s `timeout`. With
/// `tokio::net` every step succeeds; so must it with each kind of rawtcp stack. Without the
/// hold on the application's clock (src/net/clock.rs), the runtime found itself idle while
/// the default stack's reactor thread carried the SYN, and jumped to the timeout.
macro_rules! timeouts_under_start_paused {
    ($name:ident, $stack:expr, |$s:ident| $bind:expr, |$s2:ident, $addr:ident| $connect:expr) => {
        #[test]
        fn $name() {
            bounded(Duration::from_secs(60), true, || async {
                let $s = $stack;
                let listener = $bind.await.unwrap();
                let $addr = listener.local_addr().unwrap();
                let server = tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut buf = [0u8; 64];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                });
                let limit = Duration::from_secs(60);
                let $s2 = &$s;
                let mut c = tokio::time::timeout(limit, $connect)
                    .await
                    .expect("connect timed out")
                    .unwrap();
                for i in 0..20u8 {
                    let t0 = tokio::time::Instant::now();
                    let back = tokio::time::timeout(limit, async {
                        c.write_all(&[i; 64]).await.unwrap();
                        let mut buf = [0u8; 64];
                        c.read_exact(&mut buf).await.unwrap();
                        buf
                    })
                    .await
                    .unwrap_or_else(|_| panic!("round {i} timed out"));
                    assert_eq!(back, [i; 64]);
                    // The server's 30 s sleep passed in paused time, and not the timeout.
                    let took = t0.elapsed();
                    assert!(took >= Duration::from_secs(30) && took < limit, "{took:?}");
                }
                drop(c);
                server.await.unwrap();
            });
        }
    };
}

timeouts_under_start_paused!(
    timeouts_tokio_net,
    (),
    |_s| tokio::net::TcpListener::bind("127.0.0.1:0"),
    |_s, addr| tokio::net::TcpStream::connect(addr)
);
timeouts_under_start_paused!(
    timeouts_rawtcp_default_stack,
    (),
    |_s| rawtcp::TcpListener::bind("127.0.0.1:0"),
    |_s, addr| rawtcp::TcpStream::connect(addr)
);
timeouts_under_start_paused!(
    timeouts_rawtcp_stack_on_the_paused_runtime,
    Stack::builder().build().unwrap(),
    |s| s.bind("127.0.0.1:0"),
    |s, addr| s.connect(addr)
);
timeouts_under_start_paused!(
    timeouts_rawtcp_stack_on_its_own_thread,
    Stack::builder().dedicated_thread(true).build().unwrap(),
    |s| s.bind("127.0.0.1:0"),
    |s, addr| s.connect(addr)
);

/// A task waiting to read on an idle connection arms no timer of the stack's: a stack on a
/// runtime started paused, whose clock jumps to the next timer whenever it is idle, sleeps
/// through an hour of paused time in a handful of reactor polls (the receive watchdog runs
/// only after packets were handed to a waiting task, and a second after that at most).
#[test]
fn an_idle_waiting_reader_does_not_step_a_paused_clock() {
    bounded(Duration::from_secs(60), true, || async {
        let stack = Stack::builder()
            .datapath(
                rawtcp::datapath::sim::SimNetwork::new(1)
                    .host("10.0.0.1".parse().unwrap())
                    .unwrap(),
            )
            .build()
            .unwrap();
        let listener = stack.bind("10.0.0.1:80").await.unwrap();
        let client = stack.connect("10.0.0.1:80").await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            server.read(&mut buf).await.unwrap()
        });
        // Past every handshake timer and the linger of the last hand-over.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = stack.stats().reactor_polls;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let polls = stack.stats().reactor_polls - before;
        assert!(
            polls < 1_000,
            "{polls} reactor polls in an idle hour (a 10 ms watchdog would make 360,000)"
        );
        drop(client);
        assert_eq!(reader.await.unwrap(), 0);
    });
}
