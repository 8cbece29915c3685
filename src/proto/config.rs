//! Per-connection settings: buffer sizes, timers, retry limits and the switches for
//! Nagle, delayed ACKs, window scaling, SACK and timestamps.

use super::cc::Algorithm;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// TCP keepalive settings (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (Linux default 2 hours).
    pub idle: Duration,
    /// Time between unanswered probes (Linux default 75 s).
    pub interval: Duration,
    /// Unanswered probes before the connection is declared dead (Linux default 9).
    pub retries: u32,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            retries: 9,
        }
    }
}

/// Settings for one connection. The defaults follow Linux where RFCs leave a choice.
///
/// ```
/// use rawtcp::proto::Config;
/// use std::time::Duration;
/// let cfg = Config {
///     nodelay: true,
///     min_rto: Duration::from_millis(50),
///     ..Config::default()
/// };
/// assert!(cfg.window_scaling);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The MSS advertised in our SYN and the largest payload we send: the datapath's MTU
    /// minus the IP and TCP headers (RFC 9293 §3.7.1).
    pub mss: u16,
    /// Send buffer size in bytes: how much written data may wait for acknowledgment, at
    /// first. It grows from there while the path would carry more than it holds (see
    /// `send_buffer_max`).
    pub send_buffer: usize,
    /// The most the send buffer grows to by itself (Linux's `tcp_wmem[2]`, 4 MiB). A
    /// connection whose congestion window and peer's window both exceed its send buffer,
    /// on a path whose bandwidth-delay product is more than half the buffer, is held back
    /// by the buffer alone: the buffer then grows to twice what the two windows allow (as
    /// Linux's `tcp_sndbuf_expand`), up to this size, unless the stack is short of buffer
    /// memory. At or below `send_buffer` the size is fixed, as a socket's `SO_SNDBUF`
    /// fixes it ([`TcpSocket::set_send_buffer_size`] sets both).
    ///
    /// [`TcpSocket::set_send_buffer_size`]: crate::TcpSocket::set_send_buffer_size
    pub send_buffer_max: usize,
    /// Receive buffer size in bytes: the largest receive window advertised, at first. It
    /// grows from there where the application reads more than half of it per round trip
    /// of a millisecond or more (see `recv_buffer_max`).
    pub recv_buffer: usize,
    /// The most the receive buffer grows to by itself (Linux's `tcp_rmem[2]`, 6 MiB): once
    /// per round trip (measured from timestamps, on paths of about a millisecond or more)
    /// where the application read more than half the buffer in it, the buffer grows to
    /// twice what was read, plus 16 segments, as Linux's dynamic right-sizing. The window scale is chosen at the handshake for
    /// the larger of the two sizes. At or below `recv_buffer` the size is fixed, as a
    /// socket's `SO_RCVBUF` fixes it ([`TcpSocket::set_recv_buffer_size`] sets both).
    ///
    /// [`TcpSocket::set_recv_buffer_size`]: crate::TcpSocket::set_recv_buffer_size
    pub recv_buffer_max: usize,
    /// RTO before any RTT sample (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// Lower bound on the RTO (Linux: 200 ms).
    pub min_rto: Duration,
    /// Upper bound on the RTO: 60 s, the least RFC 6298 §2.5 allows (Linux: 120 s). With the
    /// give-up time fixed by `max_retries`, a lower ceiling means more attempts before it, so a
    /// path that loses a quarter of the packets each way is not abandoned for a run of bad
    /// luck in the backoff.
    pub max_rto: Duration,
    /// How long unacknowledged data may wait without progress before the connection gives
    /// up with `TimedOut`, expressed as Linux's `tcp_retries2` (15): the time that many
    /// retransmissions would take at Linux's backoff, 924.6 s. Every acknowledgment of new
    /// data starts the wait again, so a path that delivers never times out.
    pub max_retries: u32,
    /// Retransmissions of SYN or SYN+ACK before giving up (Linux `tcp_syn_retries`: 6).
    pub syn_retries: u32,
    /// RFC 9293 §3.10.3 user timeout: give up when data stays unacknowledged this long.
    pub user_timeout: Option<Duration>,
    /// TIME-WAIT duration, 2 × MSL (Linux: 60 s).
    pub time_wait: Duration,
    /// How long a connection the application has given up ([`Connection::orphan`]) waits in
    /// FIN-WAIT-2 for the peer's FIN before it is dropped (Linux `tcp_fin_timeout`: 60 s).
    ///
    /// [`Connection::orphan`]: super::Connection::orphan
    pub fin_wait2_timeout: Duration,
    /// Zero-window probes a connection the application let go sends before it gives up,
    /// even when the peer answers each one (Linux `tcp_orphan_retries`, whose 0 means 8): a
    /// peer that keeps its window shut cannot hold an orphan forever.
    pub orphan_retries: u32,
    /// Most out-of-order ranges (runs of bytes beyond a hole) held per connection; a segment
    /// that would need another is dropped and sent again by the peer. Their bytes are
    /// bounded by the receive buffer anyway; this bounds the bookkeeping an attacker sending
    /// a byte in every other position can cause. Default 1,024
    /// ([`recv::MAX_RANGES`](super::recv::MAX_RANGES)).
    pub max_out_of_order: usize,
    /// Disables Nagle's algorithm (TCP_NODELAY) when true.
    pub nodelay: bool,
    /// Delayed-ACK timer (RFC 9293 §3.8.6.3: under 0.5 s; Linux: 40 ms). Zero acknowledges
    /// every segment at once. A second full-sized segment is always acknowledged at once.
    pub delayed_ack: Duration,
    /// Offer window scaling (RFC 7323 §2).
    pub window_scaling: bool,
    /// Offer selective acknowledgments (RFC 2018).
    pub sack: bool,
    /// Offer timestamps (RFC 7323 §3) for PAWS.
    pub timestamps: bool,
    /// Keepalive probing, off by default like every socket.
    pub keepalive: Option<Keepalive>,
    /// Congestion-control algorithm (`TCP_CONGESTION`): CUBIC by default, as on Linux.
    pub congestion: Algorithm,
    /// Keep RFC 1071 sums of the bytes written, by block, as they are written (while they
    /// are in the cache), so that a segment sent from the send buffer without a copy
    /// ([`Connection::poll_transmit_shared`](super::Connection::poll_transmit_shared)) is
    /// checksummed without reading most of its bytes again. Off by default; a stack turns
    /// it on for its connections where its datapath sends such segments
    /// ([`Capabilities::sends_attached`](crate::datapath::Capabilities::sends_attached))
    /// and segments are large enough to leave that way.
    pub send_sums: bool,
    /// Offer the peer to leave checksums partial ([`TcpOptions::partial_checksums`]): set
    /// by a stack for a connection whose packets arrive by a carrier its datapath vouches
    /// for ([`Datapath::carrier_verified`]: a UDP datagram from loopback), whatever a
    /// template says. When both SYNs carry the offer, neither side sums the payloads it
    /// sends. (Whether an arrival is verified does not depend on it: the stack decides that
    /// packet by packet, from its carrier.) Off by default.
    ///
    /// [`TcpOptions::partial_checksums`]: crate::wire::TcpOptions::partial_checksums
    /// [`Datapath::carrier_verified`]: crate::datapath::Datapath::carrier_verified
    pub partial_checksums: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mss: 1460,
            send_buffer: 1 << 20,
            send_buffer_max: 4 << 20,
            recv_buffer: 1 << 20,
            recv_buffer_max: 6 << 20,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            max_retries: 15,
            syn_retries: 6,
            user_timeout: None,
            time_wait: Duration::from_secs(60),
            fin_wait2_timeout: Duration::from_secs(60),
            orphan_retries: 8,
            max_out_of_order: super::recv::MAX_RANGES,
            nodelay: false,
            delayed_ack: Duration::from_millis(40),
            window_scaling: true,
            sack: true,
            timestamps: true,
            keepalive: None,
            congestion: Algorithm::default(),
            send_sums: false,
            partial_checksums: false,
        }
    }
}

impl Config {
    /// Whether two configurations are the same setting for setting (a custom congestion
    /// control only when it is the same factory).
    fn same_as(&self, o: &Config) -> bool {
        let same_cc = match (&self.congestion, &o.congestion) {
            (Algorithm::Custom(a), Algorithm::Custom(b)) => Arc::ptr_eq(a, b),
            (Algorithm::Custom(_), _) | (_, Algorithm::Custom(_)) => false,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        };
        same_cc
            && self.mss == o.mss
            && self.send_buffer == o.send_buffer
            && self.send_buffer_max == o.send_buffer_max
            && self.recv_buffer == o.recv_buffer
            && self.recv_buffer_max == o.recv_buffer_max
            && self.initial_rto == o.initial_rto
            && self.min_rto == o.min_rto
            && self.max_rto == o.max_rto
            && self.max_retries == o.max_retries
            && self.syn_retries == o.syn_retries
            && self.user_timeout == o.user_timeout
            && self.time_wait == o.time_wait
            && self.fin_wait2_timeout == o.fin_wait2_timeout
            && self.orphan_retries == o.orphan_retries
            && self.max_out_of_order == o.max_out_of_order
            && self.nodelay == o.nodelay
            && self.delayed_ack == o.delayed_ack
            && self.window_scaling == o.window_scaling
            && self.sack == o.sack
            && self.timestamps == o.timestamps
            && self.keepalive == o.keepalive
            && self.send_sums == o.send_sums
            && self.partial_checksums == o.partial_checksums
    }
}

/// Distinct configurations in use, shared by the connections that run with them.
static INTERNED: Mutex<Vec<Weak<Config>>> = Mutex::new(Vec::new());

/// Most distinct configurations kept for sharing; beyond it a configuration is not shared.
const INTERN_MAX: usize = 64;

/// The shared copy of `cfg`: connections with the same settings hold one `Config` between
/// them (208 bytes each otherwise, an eighth of an idle connection). A program has a
/// handful of distinct settings (one per listener or socket template, times the MSS of each
/// path), so the table stays small; should it fill, `cfg` is simply not shared.
pub(crate) fn intern(cfg: Config) -> Arc<Config> {
    let mut table = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    for w in table.iter() {
        if let Some(c) = w.upgrade() {
            if c.same_as(&cfg) {
                return c;
            }
        }
    }
    table.retain(|w| w.strong_count() > 0);
    let c = Arc::new(cfg);
    if table.len() < INTERN_MAX {
        table.push(Arc::downgrade(&c));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_share_one_copy_and_a_change_shares_with_its_likes() {
        let a = intern(Config::default());
        let b = intern(Config::default());
        assert!(Arc::ptr_eq(&a, &b));
        let nodelay = Config {
            nodelay: true,
            ..Config::default()
        };
        let c = intern(nodelay.clone());
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(&c, &intern(nodelay)));
        let other_cc = intern(Config {
            congestion: Algorithm::Bbr,
            ..Config::default()
        });
        assert!(!Arc::ptr_eq(&a, &other_cc));
    }

    #[test]
    fn custom_congestion_control_is_shared_only_with_the_same_factory() {
        use crate::proto::cc::{CongestionControl, NewReno};
        let make = || -> Algorithm {
            Algorithm::Custom(Arc::new(|mss| {
                Box::new(NewReno::new(mss)) as Box<dyn CongestionControl>
            }))
        };
        let one = make();
        let a = intern(Config {
            congestion: one.clone(),
            ..Config::default()
        });
        let b = intern(Config {
            congestion: one,
            ..Config::default()
        });
        let c = intern(Config {
            congestion: make(),
            ..Config::default()
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
