//! No wake goes missing while readers, writers and readiness waiters race on one stream.
//!
//! A lost wake shows as a task that sleeps forever while its bytes sit in the buffer, so every
//! wait here is bounded: a run that stalls for `STALL` fails and names the task that was
//! left asleep. The runtime has two workers, so the reactor, inline transmits from writers and
//! the application's tasks really run at the same time; the traffic is many small writes,
//! which opens the most windows between "checked readiness" and "registered a waker".
//! Only 127.0.0.1 is used.

mod runtime_common;

use rawtcp::{Stack, TcpStream};
use runtime_common::{serve_one_byte_each, udp_stack_with};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longer than any honest pause on loopback, even on a loaded CI machine.
const STALL: Duration = Duration::from_secs(20);

fn udp_stack() -> Stack {
    udp_stack_with(Stack::builder())
}

/// The byte at offset `i` of connection `conn`'s stream: a pattern that shows a lost,
/// repeated or reordered chunk as a mismatch.
fn byte(conn: usize, i: usize) -> u8 {
    (i.wrapping_mul(31).wrapping_add(conn * 7 + i / 251)) as u8
}

/// Chunk sizes from a small xorshift, so runs are alike but sizes vary from 1 byte up.
fn sizes(seed: u64, total: usize) -> Vec<usize> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (1 + (x % 3000) as usize).min(left);
        out.push(n);
        left -= n;
    }
    out
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STALL, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no progress for {STALL:?}, a wake went missing"),
    }
}

/// Connections whose halves run in separate tasks on both ends: the client's writer sends
/// chunks of random size, the server echoes with its own reader and writer tasks, and the
/// client's reader checks every byte. Each connection carries 192 KiB both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_on_both_ends_never_miss_a_wake() {
    const CONNS: usize = 24;
    const BYTES: usize = 192 * 1024;
    let server = udp_stack();
    let client = udp_stack();
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();

    let echo = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..CONNS {
            let (s, _) = bounded("accept", listener.accept()).await.expect("accept");
            s.set_nodelay(true).unwrap();
            let (mut r, mut w) = s.into_split();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = bounded("server read", r.read(&mut buf))
                        .await
                        .expect("read");
                    if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }));
            tasks.push(tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    bounded("server write", w.write_all(&chunk))
                        .await
                        .expect("write");
                }
                w.shutdown().await.expect("shutdown");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    let mut tasks = Vec::new();
    for conn in 0..CONNS {
        let s = bounded("connect", client.connect(addr))
            .await
            .expect("connect");
        s.set_nodelay(true).unwrap();
        let (mut r, mut w) = s.into_split();
        tasks.push(tokio::spawn(async move {
            let mut at = 0;
            for n in sizes(conn as u64 + 1, BYTES) {
                let chunk: Vec<u8> = (at..at + n).map(|i| byte(conn, i)).collect();
                bounded("client write", w.write_all(&chunk))
                    .await
                    .expect("write");
                at += n;
            }
            w.shutdown().await.expect("shutdown");
        }));
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            let mut at = 0;
            loop {
                let n = bounded("client read", r.read(&mut buf))
                    .await
                    .expect("read");
                if n == 0 {
                    break;
                }
                for (k, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        byte(conn, at + k),
                        "connection {conn}, offset {}",
                        at + k
                    );
                }
                at += n;
            }
            assert_eq!(at, BYTES, "connection {conn} got everything back");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    echo.await.unwrap();
}

/// Several tasks share one `&TcpStream` through `readable()` + `try_read`, while others push
/// with `writable()` + `try_write`. A reader that lost the race to another gets `WouldBlock`
/// and waits again; every byte is claimed by exactly one of them, none is left unread, and the
/// end of the stream reaches every reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waiters_sharing_a_stream_are_all_woken() {
    const READERS: usize = 4;
    const WRITERS: usize = 3;
    const PER_WRITER: usize = 256 * 1024;
    let server = udp_stack();
    let client = udp_stack();
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(client.connect(addr), listener.accept());
    let sender = Arc::new(c.expect("connect"));
    let receiver = Arc::new(s.expect("accept").0);
    sender.set_nodelay(true).unwrap();

    let total = WRITERS * PER_WRITER;
    let got = Arc::new(AtomicUsize::new(0));
    let sum = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (rx, got, sum) = (receiver.clone(), got.clone(), sum.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 777];
            loop {
                // No periodic recheck: a reader whose wake went missing sleeps until STALL.
                bounded("readable", rx.readable()).await.expect("readable");
                match rx.try_read(&mut buf) {
                    // EOF after the writers shut down: readiness that stays set wakes them all.
                    Ok(0) => break,
                    Ok(n) => {
                        let s: usize = buf[..n].iter().map(|&b| b as usize).sum();
                        sum.fetch_add(s, Ordering::SeqCst);
                        got.fetch_add(n, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("try_read: {e}"),
                }
            }
        }));
    }
    let mut writers = Vec::new();
    for wi in 0..WRITERS {
        let tx = sender.clone();
        writers.push(tokio::spawn(async move {
            let chunk = vec![wi as u8 + 1; 1000];
            let mut left = PER_WRITER;
            while left > 0 {
                bounded("writable", tx.writable()).await.expect("writable");
                match tx.try_write(&chunk[..left.min(chunk.len())]) {
                    Ok(n) => left -= n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("try_write: {e}"),
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut sender = Arc::try_unwrap(sender).expect("writers are done");
    sender.shutdown().await.expect("shutdown");
    bounded("readers", async {
        for r in readers {
            r.await.unwrap();
        }
    })
    .await;
    assert_eq!(got.load(Ordering::SeqCst), total);
    let want: usize = (0..WRITERS).map(|wi| (wi + 1) * PER_WRITER).sum();
    assert_eq!(
        sum.load(Ordering::SeqCst),
        want,
        "every byte read exactly once"
    );
}

/// Many short request/response exchanges on many connections at once: each exchange parks a
/// reader until the reply lands, the pattern where a wake lost between the reactor and the
/// reading task costs a whole stall. 64 connections x 300 round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_on_many_connections_never_stalls() {
    const CONNS: usize = 64;
    const ROUNDS: usize = 300;
    let server = udp_stack();
    let client = udp_stack();
    let listener = server.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        for _ in 0..CONNS {
            let (mut s, _) = bounded("accept", listener.accept()).await.expect("accept");
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                loop {
                    let n = bounded("echo read", s.read(&mut b)).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    s.write_all(&b[..n]).await.expect("echo write");
                }
            });
        }
    });
    let mut tasks = Vec::new();
    for conn in 0..CONNS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s: TcpStream = bounded("connect", client.connect(addr))
                .await
                .expect("connect");
            s.set_nodelay(true).unwrap();
            let mut b = [0u8; 64];
            for round in 0..ROUNDS {
                let msg = [(conn + round) as u8; 64];
                s.write_all(&msg).await.expect("write");
                bounded(
                    &format!("connection {conn} round {round}"),
                    s.read_exact(&mut b),
                )
                .await
                .expect("read");
                assert_eq!(b, msg);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    echo.await.unwrap();
}

/// A task that waits to read is handed the stack's arriving packets to receive for everyone
/// (`StackStats::inline_receives`). Here such a task gives its wait up — its read dropped by
/// a timeout — and then sleeps without reading, still queued. Packets for another
/// connection, whose reader queued after it, arrive next and are handed to the sleeper,
/// which never receives them: the reactor's watchdog must, within a few milliseconds. The
/// clients live on a second stack, so that nothing they do wakes the servers' reactor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_handed_to_a_task_that_stopped_waiting_still_arrive() {
    // One shard: the scenario is one stack's queue of waiting tasks. With two (the default
    // on two workers), `b2`'s reader may wait on another shard than the sleeper, be the
    // first in its queue, and rightly receive the bytes itself.
    let servers = udp_stack_with(Stack::builder().shards(1));
    let clients = udp_stack();
    let listener = servers.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut a1 = clients.connect(addr).await.expect("connect a");
    let (mut a2, _) = listener.accept().await.expect("accept a");
    let mut b1 = clients.connect(addr).await.expect("connect b");
    let (mut b2, _) = listener.accept().await.expect("accept b");
    a1.set_nodelay(true).expect("nodelay");
    b1.set_nodelay(true).expect("nodelay");

    // The sleeper: waits on `a2` until its timeout drops the read, then sleeps.
    let (queued_tx, queued_rx) = tokio::sync::oneshot::channel();
    let sleeper = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_millis(50), a2.read(&mut buf)).await;
        assert!(r.is_err(), "nothing was sent on a: the read must time out");
        queued_tx.send(()).expect("main task waits");
        tokio::time::sleep(Duration::from_secs(5)).await;
        a2
    });
    queued_rx.await.expect("sleeper ran");
    // `b2`'s reader queues behind the sleeper; the servers' stack goes quiet; `b1` writes.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 4];
        b2.read_exact(&mut got).await.expect("read b");
        got
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = servers.stats().inline_receives;
    b1.write_all(b"ping").await.expect("write b");
    // The watchdog's 10 ms, with room for a loaded machine; without it the bytes would wait
    // for the servers' next timer (an idle connection's, a second after its last activity).
    let got = tokio::time::timeout(Duration::from_millis(500), reader)
        .await
        .expect("b's bytes must arrive although the task they were handed to sleeps")
        .expect("reader task");
    assert_eq!(&got, b"ping");
    assert_eq!(
        servers.stats().inline_receives,
        before,
        "the reactor received them, not a task"
    );
    // And the sleeper's own connection still works once it reads again.
    a1.write_all(b"late").await.expect("write a");
    let mut a2 = sleeper.await.expect("sleeper");
    let mut buf = [0u8; 4];
    bounded("a2 read", a2.read_exact(&mut buf))
        .await
        .expect("read a");
    assert_eq!(&buf, b"late");
}

/// Segments of one connection built by two tasks one after the other leave in that order,
/// although each sends its own after releasing the stack's lock. Seen before the send order
/// existed, in a connect-and-close loop on a stack whose reactor has a thread of its own:
/// the client's pure ACK of the server's FIN, built by the task receiving for the stack, was
/// overtaken by the client's FIN, built by the closing task; the server, in TIME-WAIT,
/// answered the late ACK with a second ACK, and the client, closed by then, with a RST (15
/// in 20,000 connections). Here no segment may be sent twice and no RST at all.
#[test]
fn segments_of_one_connection_leave_in_the_order_they_were_built() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    /// Ports, sequence and acknowledgment numbers, flags.
    type Segment = (u16, u16, u32, u32, u8);
    let seen: Arc<Mutex<HashSet<Segment>>> = Arc::default();
    let dups = Arc::new(AtomicUsize::new(0));
    let (seen2, dups2) = (seen.clone(), dups.clone());
    let stack = {
        let _rt = rt.enter();
        udp_stack_with(Stack::builder().dedicated_thread(true).tap(move |ev| {
            if ev.direction != rawtcp::Direction::Out || ev.payload_len != 0 {
                return;
            }
            let t = ev.tcp;
            let key = (t.src_port, t.dst_port, t.seq, t.ack, t.flags.0);
            if !seen2.lock().unwrap().insert(key) {
                dups2.fetch_add(1, Ordering::SeqCst);
            }
        }))
    };
    rt.block_on(async {
        let listener = stack.bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = serve_one_byte_each(listener);
        bounded("connect-and-close loop", async {
            for _ in 0..5_000 {
                let mut c = stack.connect(addr).await.expect("connect");
                c.set_nodelay(true).expect("nodelay");
                c.write_all(&[1]).await.expect("write");
                let mut rest = [0u8; 1];
                assert_eq!(c.read(&mut rest).await.expect("read"), 0);
            }
        })
        .await;
        server.abort();
    });
    assert_eq!(
        dups.load(Ordering::SeqCst),
        0,
        "a control segment left twice"
    );
    assert_eq!(stack.stats().resets_sent, 0, "a RST in a clean loop");
}

/// Several tasks write to one stream at once through `writable` and `try_write`, which lock
/// only the connection's own entry: a write to a connection already queued for a transmit
/// pass leaves the sending to that pass. Were a pass ever to miss such a write, its bytes
/// would sit unsent and the reader would stall. Each writer's bytes carry its number, so
/// the reader checks that every writer's share arrived, however the writes interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_on_one_stream_lose_nothing() {
    const WRITERS: usize = 4;
    const EACH: usize = 256 * 1024;
    let stack = udp_stack();
    let listener = stack.bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(stack.connect(addr), listener.accept());
    let client = Arc::new(client.expect("connect"));
    let (mut server, _) = accepted.expect("accept");

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = Arc::clone(&client);
        writers.push(tokio::spawn(async move {
            let tag = w as u8 + 1;
            for n in sizes(w as u64 + 7, EACH) {
                let chunk = vec![tag; n];
                let mut at = 0;
                while at < n {
                    bounded("writable", client.writable())
                        .await
                        .expect("writable");
                    match client.try_write(&chunk[at..]) {
                        Ok(k) => at += k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
            }
        }));
    }
    let mut per_writer = [0usize; WRITERS];
    let mut buf = vec![0u8; 8192];
    let mut total = 0;
    while total < WRITERS * EACH {
        // Written bytes leave within microseconds on loopback. A write that no pass sent
        // would wait for an unrelated timer (the idle-memory one, a second), so a read is
        // allowed half of that, which a loaded machine still meets.
        let n = tokio::time::timeout(Duration::from_millis(500), server.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "reader: no bytes for 500 ms with {total} of {} in: a write sat unsent",
                    WRITERS * EACH
                )
            })
            .expect("read");
        assert!(n > 0, "end of stream after {total} bytes");
        for &b in &buf[..n] {
            let w = usize::from(b).checked_sub(1).filter(|w| *w < WRITERS);
            per_writer[w.unwrap_or_else(|| panic!("a byte no writer wrote: {b}"))] += 1;
        }
        total += n;
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(per_writer, [EACH; WRITERS], "every writer's bytes arrived");
}
