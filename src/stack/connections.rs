//! The live connection table: [`Stack::connections`] — every connection's addresses, state
//! and [`TcpInfo`], and every listener with its queues, printable like `ss -tin`.

use super::{Shared, Stack};
use crate::proto::endpoint::Owner;
use crate::proto::{State, TcpInfo};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Still in the listener at this address: in its SYN queue or accept queue.
    Listener(SocketAddr),
    /// A `TcpStream` (or its halves).
    Application,
    /// The application dropped it; the stack is finishing the close (FIN-WAIT, TIME-WAIT).
    Orphan,
}

/// One connection of a [`Stack::connections`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEntry {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The RFC 9293 state.
    pub state: State,
    /// Bytes received and not yet read by the application (`ss`'s Recv-Q).
    pub recv_queue: usize,
    /// Bytes written by the application and not yet acknowledged (`ss`'s Send-Q).
    pub send_queue: usize,
    /// Who holds it.
    pub holder: Holder,
    /// The engine's statistics.
    pub info: TcpInfo,
    /// The shard it lives on (0 in a stack of one shard; see
    /// [`StackBuilder::shards`](crate::StackBuilder::shards)).
    pub shard: usize,
}

/// One listener of a [`Stack::connections`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEntry {
    /// The address it listens on.
    pub local: SocketAddr,
    /// Connections established and waiting for `accept` (`ss`'s Recv-Q for a listener).
    pub accept_queue: usize,
    /// Connections still in the handshake (SYN-RECEIVED).
    pub syn_queue: usize,
    /// The accept queue's limit, from `listen(backlog)` (`ss`'s Send-Q for a listener).
    pub backlog: usize,
    /// Whether other listeners share the address (`SO_REUSEPORT`).
    pub reuseport: bool,
}

/// A snapshot of a stack's connections and listeners, sorted by address. Its `Display` is
/// the table `ss -tin` prints for kernel sockets:
///
/// ```text
/// State       Recv-Q  Send-Q  Local Address:Port    Peer Address:Port
/// LISTEN      0       1024    127.0.0.1:7000        *:*
/// ESTAB       0       1048576 127.0.0.1:7000        127.0.0.1:41022
///      cubic wscale:7,7 rto:201 rtt:0.152/0.088 mss:65483 rcvmss:65483 cwnd:10 ...
/// ```
///
/// with cwnd and ssthresh in segments as `ss` gives them, times in milliseconds, rates in
/// bits per second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connections {
    /// Listening sockets.
    pub listeners: Vec<ListenerEntry>,
    /// Connections, in any state.
    pub connections: Vec<ConnectionEntry>,
}

impl Stack {
    /// Every connection of this stack — its addresses, state, queues and [`TcpInfo`] — and
    /// every listener with its queue depths, taken at one instant.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let stack = rawtcp::Stack::builder().build()?;
    /// let listener = stack.bind("127.0.0.1:0").await?;
    /// let _client = stack.connect(listener.local_addr()?).await?;
    /// let table = stack.connections();
    /// assert_eq!(table.listeners[0].accept_queue, 1);
    /// print!("{table}"); // like `ss -tin`
    /// # Ok(()) }
    /// ```
    pub fn connections(&self) -> Connections {
        let mut out = Connections::default();
        for (k, shared) in self.shards.iter().enumerate() {
            shared.connections_into(&mut out, k);
        }
        // A sharded stack's listener listens on every shard: one entry, its queues added up.
        out.listeners
            .sort_by_key(|l| (l.local.ip(), l.local.port(), l.reuseport));
        if self.shard_count() > 1 {
            out.listeners.dedup_by(|later, first| {
                let same = later.local == first.local && later.reuseport == first.reuseport;
                if same {
                    first.accept_queue += later.accept_queue;
                    first.syn_queue += later.syn_queue;
                    first.backlog += later.backlog;
                }
                same
            });
        }
        out.connections
            .sort_by_key(|c| (c.local.ip(), c.local.port(), c.remote.ip(), c.remote.port()));
        out
    }
}

impl Shared {
    /// Adds the connections and listeners of this shard (number `shard`) to `out`.
    fn connections_into(&self, out: &mut Connections, shard: usize) {
        let inner = self.lock();
        for id in inner.table.ids() {
            let Some(e) = inner.table.get(id) else {
                continue;
            };
            out.connections.push(ConnectionEntry {
                local: e.conn.local_addr(),
                remote: e.conn.remote_addr(),
                state: e.conn.state(),
                recv_queue: e.conn.recv_queue(),
                send_queue: e.conn.send_queue(),
                holder: match inner.table.endpoint.connection(id).map(|c| c.owner) {
                    Some(Owner::Listener(l)) => inner
                        .table
                        .endpoint
                        .listener(l)
                        .map_or(Holder::Orphan, |l| Holder::Listener(l.addr)),
                    Some(Owner::Application) => Holder::Application,
                    Some(Owner::Orphan) | None => Holder::Orphan,
                },
                info: e.conn.info(),
                shard,
            });
        }
        for (_, l) in inner.table.endpoint.listeners() {
            out.listeners.push(ListenerEntry {
                local: l.addr,
                accept_queue: l.accept_queue,
                syn_queue: l.syn_queue,
                backlog: l.backlog,
                reuseport: l.reuseport,
            });
        }
    }
}

/// The state as `ss` names it.
fn ss_state(s: State) -> &'static str {
    match s {
        State::Closed => "UNCONN",
        State::Listen => "LISTEN",
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECV",
        State::Established => "ESTAB",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The second line `ss -i` prints under a connection.
fn details(i: &TcpInfo) -> String {
    let mss = i.send_mss.max(1);
    let mut d = vec![format!("{}", i.congestion_control)];
    d.push(format!("wscale:{},{}", i.send_wscale, i.recv_wscale));
    d.push(format!("rto:{}", ms(i.rto)));
    if let Some(srtt) = i.srtt {
        d.push(format!("rtt:{}/{}", ms(srtt), ms(i.rttvar)));
    }
    d.push(format!("mss:{} rcvmss:{}", i.send_mss, i.recv_mss));
    d.push(format!("cwnd:{}", i.cwnd.div_ceil(mss)));
    if i.ssthresh != u32::MAX {
        d.push(format!("ssthresh:{}", i.ssthresh.div_ceil(mss)));
    }
    d.push(format!(
        "bytes_sent:{} bytes_retrans:{} bytes_acked:{} bytes_received:{}",
        i.bytes_sent, i.bytes_retransmitted, i.bytes_acked, i.bytes_received
    ));
    d.push(format!(
        "segs_out:{} segs_in:{}",
        i.segments_sent, i.segments_received
    ));
    if let Some(srtt) = i.srtt.filter(|s| !s.is_zero()) {
        let bps = f64::from(i.cwnd) * 8.0 / srtt.as_secs_f64();
        d.push(format!("send {bps:.0}bps"));
    }
    if let Some(p) = i.pacing_rate {
        d.push(format!("pacing_rate {}bps", p.saturating_mul(8)));
    }
    if i.delivery_rate > 0 {
        d.push(format!(
            "delivery_rate {}bps",
            i.delivery_rate.saturating_mul(8)
        ));
    }
    d.push(format!(
        "delivered:{}",
        i.delivered.div_ceil(u64::from(mss))
    ));
    if i.bytes_in_flight > 0 {
        d.push(format!("unacked:{}", i.unacked.div_ceil(mss)));
    }
    if i.retransmissions > 0 {
        d.push(format!(
            "retrans:{}/{} timeouts:{} fast:{} tlp:{} recoveries:{}",
            i.lost.div_ceil(mss),
            i.retransmissions,
            i.timeouts,
            i.fast_retransmits,
            i.tlp_probes,
            i.recoveries
        ));
    }
    if i.sacked > 0 {
        d.push(format!("sacked:{}", i.sacked.div_ceil(mss)));
    }
    if i.dsacks_received > 0 {
        d.push(format!("dsack_dups:{}", i.dsacks_received));
    }
    if i.reordering_seen {
        d.push("reordering_seen".into());
    }
    if let Some(r) = i.recv_rtt {
        d.push(format!("rcv_rtt:{}", ms(r)));
    }
    if let Some(m) = i.min_rtt {
        d.push(format!("minrtt:{}", ms(m)));
    }
    d.push(format!(
        "snd_wnd:{} rcv_wnd:{}",
        i.send_window, i.recv_window
    ));
    d.push(format!("ca_state:{}", i.ca_state));
    d.join(" ")
}

impl fmt::Display for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<11} {:<7} {:<7} {:<22} {:<22}",
            "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
        )?;
        for l in &self.listeners {
            writeln!(
                f,
                "{:<11} {:<7} {:<7} {:<22} {:<22}",
                "LISTEN",
                l.accept_queue,
                l.backlog,
                l.local.to_string(),
                "*:*"
            )?;
            let reuse = if l.reuseport { " reuseport" } else { "" };
            writeln!(f, "\t syn_queue:{}{reuse}", l.syn_queue)?;
        }
        for c in &self.connections {
            let held = match c.holder {
                Holder::Listener(_) => "  (not yet accepted)",
                Holder::Application => "",
                Holder::Orphan => "  (closed by the application)",
            };
            writeln!(
                f,
                "{:<11} {:<7} {:<7} {:<22} {:<22}{held}",
                ss_state(c.state),
                c.recv_queue,
                c.send_queue,
                c.local.to_string(),
                c.remote.to_string()
            )?;
            writeln!(f, "\t {}", details(&c.info))?;
        }
        Ok(())
    }
}
