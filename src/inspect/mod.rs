//! Seeing inside TCP conversations: captures read from pcap files or recorded live from a
//! stack's tap, split into connections, annotated (retransmissions and their cause,
//! out-of-order arrivals, segments the capture missed, duplicate ACKs), printed as the
//! textbook ladder ([`ladder`]) and drawn as time-sequence graphs ([`graph`]).
//!
//! Behind the `graph` cargo feature (on by default).
//!
//! The pipeline is the same for both sources:
//!
//! 1. a [`Capture`]: [`Capture::read_pcap`] for a file (rawtcp's own, or `tcpdump -w` of any
//!    TCP: link types RAW, Ethernet, Linux cooked v1 and v2, loopback; pcap or pcapng), or
//!    [`Recorder`] for a live stack;
//! 2. its [`Conversation`]s ([`Capture::conversations`]), one per connection, each with a
//!    client (the side that sent the SYN) and a server;
//! 3. [`Conversation::segments`]: every packet with its relative numbers and annotations;
//! 4. [`ladder::Ladder`] or [`graph::TimeSequence`]; [`pacing::Pacing`] for how one side's
//!    data left (spacing, bursts, idle time, ACKs back).
//!
//! ```no_run
//! use rawtcp::inspect::{graph::TimeSequence, Capture};
//!
//! let capture = Capture::read_pcap("/tmp/echo.pcap")?;
//! for conv in capture.conversations() {
//!     println!("{}", conv.summary());
//! }
//! let conv = &capture.conversations()[0];
//! print!("{}", rawtcp::inspect::ladder::Ladder::new(conv));
//! TimeSequence::new(conv).save("graph.svg")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A capture says what crossed the point where it was taken, not what the endpoints
//! decided. Segments a live stack sent carry their [`SegmentKind`] from the engine; for
//! everything else the kind of a retransmission is *inferred* (see [`Retransmission`]) and
//! marked as such.

mod analysis;
pub mod graph;
pub mod ladder;
pub mod pacing;
mod pcap;

pub use analysis::{Retransmission, Segment, Side};

use crate::proto::{Sample, SegmentKind};
use crate::wire::TcpRepr;
use crate::{Direction, TapEvent};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One TCP segment of a capture.
#[derive(Debug, Clone)]
pub struct Packet {
    /// When it was seen: since the Unix epoch for a pcap file, since the recorder started
    /// for a [`Recorder`].
    pub time: Duration,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The TCP header.
    pub tcp: TcpRepr,
    /// Payload bytes (as the IP header tells, even when the capture cut the packet short).
    pub payload_len: usize,
    /// What the sending stack says the segment is, when a live rawtcp stack recorded it.
    pub kind: Option<SegmentKind>,
    /// The sending connection's window, flight, SRTT and RTO, when a live rawtcp stack
    /// recorded it.
    pub sample: Option<Sample>,
}

impl Packet {
    /// Sequence space the segment occupies: payload, plus one for SYN and one for FIN.
    pub fn seg_len(&self) -> usize {
        self.tcp.segment_len(self.payload_len)
    }
}

/// What reading a capture left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Records that are not IPv4/IPv6 TCP (ARP, UDP, ICMP, other link types' frames).
    pub not_tcp: usize,
    /// TCP packets whose headers did not parse (counted, not fatal).
    pub malformed: usize,
    /// Whether the file ended in the middle of a record (a capture cut short).
    pub truncated: bool,
}

/// Packets read from a pcap file or recorded from a live stack, in capture order.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The TCP segments.
    pub packets: Vec<Packet>,
    /// What was left out.
    pub skipped: Skipped,
}

/// Why a capture could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum InspectError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is not a pcap or pcapng capture, or its header is damaged.
    Format(String),
    /// The capture's link type is not one this reader decodes.
    LinkType(u32),
    /// A graph could not be drawn or written.
    Render(String),
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::Io(e) => write!(f, "{e}"),
            InspectError::Format(m) => write!(f, "not a readable capture: {m}"),
            InspectError::LinkType(t) => write!(
                f,
                "link type {t} is not supported (RAW 101, Ethernet 1, Linux cooked 113/276, \
                 loopback 0/108, IPv4 228, IPv6 229 are)"
            ),
            InspectError::Render(m) => write!(f, "cannot draw the graph: {m}"),
        }
    }
}

impl std::error::Error for InspectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InspectError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for InspectError {
    fn from(e: std::io::Error) -> Self {
        InspectError::Io(e)
    }
}

impl Capture {
    /// Reads a pcap or pcapng file.
    ///
    /// Records that are not TCP are skipped and counted in [`Capture::skipped`], as are TCP
    /// packets whose headers do not parse. Packets cut short by the capture's snap length
    /// keep their real payload length (from the IP header) as long as the TCP header was
    /// captured. Checksums are not verified: captures taken on the sending host hold
    /// checksums the NIC fills in later.
    ///
    /// # Errors
    ///
    /// [`InspectError::Io`] when the file cannot be read, [`InspectError::Format`] when it is
    /// not a capture, [`InspectError::LinkType`] for link types other than those listed in
    /// the [module docs](self).
    pub fn read_pcap(path: impl AsRef<Path>) -> Result<Capture, InspectError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| {
            InspectError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot open {}: {e}", path.display()),
            ))
        })?;
        Self::from_reader(std::io::BufReader::new(file))
    }

    /// Reads a pcap or pcapng capture from bytes or any reader (see [`Capture::read_pcap`]).
    pub fn from_reader(reader: impl std::io::Read) -> Result<Capture, InspectError> {
        pcap::read(reader)
    }

    /// The connections in the capture, in the order their first packet appears.
    ///
    /// Packets are grouped by 4-tuple; a SYN with a new initial sequence number on a tuple
    /// already seen starts a new connection (a new incarnation). The client is the side
    /// that sent the first SYN; without one (a capture started mid-connection) the side
    /// with the higher port.
    pub fn conversations(&self) -> Vec<Conversation> {
        let mut convs: Vec<Conversation> = Vec::new();
        let mut by_tuple: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
        for p in &self.packets {
            let key = tuple_key(p.src, p.dst);
            let pure_syn = p.tcp.flags.contains(crate::wire::TcpFlags::SYN)
                && !p.tcp.flags.contains(crate::wire::TcpFlags::ACK);
            let existing = by_tuple.get(&key).copied().filter(|&i| {
                // A SYN with a different ISN from the same client is a new incarnation.
                !(pure_syn
                    && convs[i]
                        .client_isn
                        .is_some_and(|isn| isn != p.tcp.seq || convs[i].client != p.src))
            });
            let i = match existing {
                Some(i) => i,
                None => {
                    let (client, server) = if pure_syn {
                        (p.src, p.dst)
                    } else if p.tcp.flags.contains(crate::wire::TcpFlags::SYN) {
                        (p.dst, p.src)
                    } else if p.src.port() >= p.dst.port() {
                        (p.src, p.dst)
                    } else {
                        (p.dst, p.src)
                    };
                    convs.push(Conversation {
                        number: convs.len() + 1,
                        client,
                        server,
                        client_isn: None,
                        packets: Vec::new(),
                    });
                    by_tuple.insert(key, convs.len() - 1);
                    convs.len() - 1
                }
            };
            let c = &mut convs[i];
            if pure_syn && c.client_isn.is_none() {
                c.client_isn = Some(p.tcp.seq);
                if c.packets.is_empty() {
                    c.client = p.src;
                    c.server = p.dst;
                }
            }
            c.packets.push(p.clone());
        }
        convs
    }
}

fn tuple_key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if (a.ip(), a.port()) <= (b.ip(), b.port()) {
        (a, b)
    } else {
        (b, a)
    }
}

/// One TCP connection of a capture: its two endpoints and its packets in capture order.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// 1-based position in [`Capture::conversations`] (what `tcpgraph --conn N` takes).
    pub number: usize,
    /// The side that opened the connection (sent the SYN).
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    client_isn: Option<u32>,
    /// The packets, either direction.
    pub packets: Vec<Packet>,
}

/// Figures of one conversation, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// [`Conversation::number`].
    pub number: usize,
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// Packets either way.
    pub packets: usize,
    /// Payload bytes client to server, retransmissions included.
    pub bytes_to_server: u64,
    /// Payload bytes server to client, retransmissions included.
    pub bytes_to_client: u64,
    /// Retransmissions either way (as [`Conversation::segments`] finds them).
    pub retransmissions: usize,
    /// From the first packet to the last.
    pub duration: Duration,
    /// Whether the capture holds the SYN, the FINs or a RST.
    pub opened: bool,
    /// Both FINs seen.
    pub closed: bool,
    /// A RST seen.
    pub reset: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut how = Vec::new();
        if self.opened {
            how.push("SYN");
        }
        if self.closed {
            how.push("FIN");
        }
        if self.reset {
            how.push("RST");
        }
        write!(
            f,
            "{:>3}  {} -> {}  {} packets  {} B ->  {} B <-  {} retransmissions  {:.3} s  {}",
            self.number,
            self.client,
            self.server,
            self.packets,
            self.bytes_to_server,
            self.bytes_to_client,
            self.retransmissions,
            self.duration.as_secs_f64(),
            if how.is_empty() {
                "mid-stream".to_string()
            } else {
                how.join("+")
            }
        )
    }
}

impl Conversation {
    /// Which side sent a packet.
    pub fn side_of(&self, p: &Packet) -> Side {
        if p.src == self.client {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// The address of a side.
    pub fn addr(&self, side: Side) -> SocketAddr {
        match side {
            Side::Client => self.client,
            Side::Server => self.server,
        }
    }

    /// Every packet with its relative numbers and annotations (see [`Segment`]).
    pub fn segments(&self) -> Vec<Segment> {
        analysis::analyze(self)
    }

    /// Figures for a listing.
    pub fn summary(&self) -> Summary {
        use crate::wire::TcpFlags;
        let segs = self.segments();
        let mut fins = HashSet::new();
        let mut s = Summary {
            number: self.number,
            client: self.client,
            server: self.server,
            packets: self.packets.len(),
            bytes_to_server: 0,
            bytes_to_client: 0,
            retransmissions: segs.iter().filter(|s| s.retransmission.is_some()).count(),
            duration: match (self.packets.first(), self.packets.last()) {
                (Some(a), Some(b)) => b.time.saturating_sub(a.time),
                _ => Duration::ZERO,
            },
            opened: false,
            closed: false,
            reset: false,
        };
        for p in &self.packets {
            match self.side_of(p) {
                Side::Client => s.bytes_to_server += p.payload_len as u64,
                Side::Server => s.bytes_to_client += p.payload_len as u64,
            }
            s.opened |= p.tcp.flags.contains(TcpFlags::SYN);
            s.reset |= p.tcp.flags.contains(TcpFlags::RST);
            if p.tcp.flags.contains(TcpFlags::FIN) {
                fins.insert(self.side_of(p));
            }
        }
        s.closed = fins.len() == 2;
        s
    }
}

/// Records a live stack's segments through its tap, for the ladder and the graphs.
///
/// Install [`Recorder::tap`] with [`StackBuilder::tap`](crate::StackBuilder::tap); take a
/// [`Capture`] at any time with [`Recorder::capture`]. Times follow tokio's clock from the
/// recorder's creation, so under a paused clock (the simulated network) they are network
/// time. Segments a stack sends to itself (both ends of a connection on one stack) are kept
/// once, as sent.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use rawtcp::inspect::{graph::TimeSequence, Recorder};
///
/// let rec = Recorder::new();
/// let stack = rawtcp::Stack::builder().tap(rec.tap()).build()?;
/// // ... run a transfer on `stack` ...
/// let capture = rec.capture();
/// if let Some(conv) = capture.conversations().first() {
///     TimeSequence::new(conv).panels(true).save("transfer.png").map_err(std::io::Error::other)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
}

struct RecorderInner {
    start: tokio::time::Instant,
    packets: Vec<Packet>,
    sent_tuples: HashSet<(SocketAddr, SocketAddr)>,
    limit: usize,
    dropped: usize,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Recorder")
            .field("packets", &inner.packets.len())
            .field("dropped", &inner.dropped)
            .finish()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder keeping up to 10 million segments (about 1 GB).
    pub fn new() -> Recorder {
        Self::with_limit(10_000_000)
    }

    /// A recorder keeping up to `limit` segments; later ones are counted, not kept.
    pub fn with_limit(limit: usize) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(RecorderInner {
                start: tokio::time::Instant::now(),
                packets: Vec::new(),
                sent_tuples: HashSet::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The callback to hand to [`StackBuilder::tap`](crate::StackBuilder::tap).
    pub fn tap(&self) -> impl Fn(&TapEvent<'_>) + Send + Sync + 'static {
        let inner = self.inner.clone();
        move |ev: &TapEvent<'_>| {
            let mut r = inner.lock().unwrap_or_else(|p| p.into_inner());
            match ev.direction {
                Direction::Out => {
                    r.sent_tuples.insert((ev.src, ev.dst));
                }
                // A segment this stack sent to itself was kept when it left.
                Direction::In if r.sent_tuples.contains(&(ev.src, ev.dst)) => return,
                Direction::In => {}
            }
            if r.packets.len() >= r.limit {
                r.dropped += 1;
                return;
            }
            let time = r.start.elapsed();
            r.packets.push(Packet {
                time,
                src: ev.src,
                dst: ev.dst,
                tcp: *ev.tcp,
                payload_len: ev.payload_len,
                kind: ev.kind,
                sample: ev.sample,
            });
        }
    }

    /// The segments recorded so far.
    pub fn capture(&self) -> Capture {
        let r = self.lock();
        Capture {
            packets: r.packets.clone(),
            skipped: Skipped::default(),
        }
    }

    /// Segments not kept because the limit was reached.
    pub fn dropped(&self) -> usize {
        self.lock().dropped
    }
}
