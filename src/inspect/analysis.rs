//! Annotating a conversation: relative sequence numbers, retransmissions and their likely
//! cause, out-of-order arrivals, sequence space the capture missed, duplicate ACKs.

use super::{Conversation, Packet};
use crate::proto::{RetransmitCause, SegmentKind};
use crate::wire::TcpFlags;
use std::fmt;
use std::time::Duration;

/// One end of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that opened the connection.
    Client,
    /// The side that accepted it.
    Server,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    fn idx(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// A segment that carries sequence space sent before, and why it was sent again.
///
/// From a live rawtcp stack the cause is the engine's own ([`inferred`](Self::inferred)
/// false). From a pcap it is inferred from what the capture shows the sender had seen:
/// a sender idle (nothing sent, nothing received) for more than the handshake's round trip
/// plus 180 ms — just under the 200 ms floor Linux and rawtcp put on the RTO's variance
/// term — retransmitted on a timeout; one that had received duplicate ACKs or SACK blocks
/// since the last advancing ACK retransmitted fast; a retransmission of the highest
/// sequence sent after a shorter silence is a tail loss probe; anything else counts as fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmission {
    /// Timeout, fast (RACK, SACK, duplicate ACKs) or tail loss probe.
    pub cause: RetransmitCause,
    /// Whether the cause is a guess from the capture rather than the sender's word.
    pub inferred: bool,
}

impl fmt::Display for Retransmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = match self.cause {
            RetransmitCause::Timeout => "rto",
            RetransmitCause::Fast => "fast",
            RetransmitCause::LossProbe => "tlp",
        };
        if self.inferred {
            write!(f, "{cause}?")
        } else {
            f.write_str(cause)
        }
    }
}

/// One packet of a [`Conversation`] with what the analysis found.
///
/// Relative numbers count from each side's initial sequence number (the SYN is 0, the first
/// data byte 1), as Wireshark shows them; without a SYN in the capture, from one before the
/// first sequence number seen. They are unwrapped, so they keep growing past 2^32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Conversation::packets`].
    pub index: usize,
    /// Who sent it.
    pub side: Side,
    /// Since the conversation's first packet.
    pub time: Duration,
    /// Relative sequence number.
    pub seq: i64,
    /// Relative sequence number just past it (`seq` + payload + SYN + FIN).
    pub end: i64,
    /// Relative acknowledgment number (in the other side's numbering), with ACK set.
    pub ack: Option<i64>,
    /// Initial sequence numbers of the sender and the receiver, as the relative numbers use
    /// them.
    pub bases: (u32, u32),
    /// Receive window in bytes, scaled when both SYNs carried window scale (RFC 7323 §2.3).
    pub window: u64,
    /// SACK blocks, relative, in the other side's numbering.
    pub sack: Vec<(i64, i64)>,
    /// Set when the segment carries sequence space sent before.
    pub retransmission: Option<Retransmission>,
    /// Sequence space never seen before, below the highest seen, arriving within a round
    /// trip of it: reordered on the way, not resent.
    pub out_of_order: bool,
    /// Sequence space the capture never saw just before this segment (lost before the
    /// capture point, or still to come out of order).
    pub missed_before: u64,
    /// For a duplicate ACK (no data, same ACK and window, data outstanding): its number in
    /// the run; 0 otherwise.
    pub dup_ack: u32,
}

/// Sequence numbers of one side, made relative and unwrapped.
#[derive(Debug, Clone, Copy)]
struct Space {
    base: u32,
    last: i64,
}

impl Space {
    fn rel(&mut self, value: u32) -> i64 {
        let off = value.wrapping_sub(self.base);
        let delta = off.wrapping_sub(self.last as u32) as i32;
        let v = self.last + i64::from(delta);
        self.last = v;
        v
    }
}

/// What one side has sent, as far as the capture shows.
#[derive(Debug, Default)]
struct Sender {
    high_end: Option<i64>,
    /// Merged ranges of sequence space seen, sorted.
    seen: Vec<(i64, i64)>,
    last_advance: Duration,
    last_tx: Option<Duration>,
    /// ACK and window last sent by this side, duplicate ACKs in the current run, and
    /// whether its acknowledgments report a loss (duplicates or SACK blocks).
    last_ack: Option<i64>,
    last_window: u64,
    dup_run: u32,
    reports_loss: bool,
}

impl Sender {
    fn covered(&self, start: i64, end: i64) -> bool {
        let i = self.seen.partition_point(|r| r.1 < end);
        // The first range that ends at or past `end` must start at or before `start`.
        self.seen.get(i).is_some_and(|r| r.0 <= start && r.1 >= end)
    }

    fn insert(&mut self, start: i64, end: i64) {
        let (mut s, mut e) = (start, end);
        let lo = self.seen.partition_point(|r| r.1 < s);
        let hi = self.seen.partition_point(|r| r.0 <= e);
        if lo < hi {
            s = s.min(self.seen[lo].0);
            e = e.max(self.seen[hi - 1].1);
        }
        self.seen.splice(lo..hi, [(s, e)]);
    }
}

/// The first sequence number each side used: its SYN's, else one before the first seen
/// from it, else one before the first ACK the other side sent for it.
fn bases(conv: &Conversation) -> [u32; 2] {
    let mut syn: [Option<u32>; 2] = [None, None];
    let mut first: [Option<u32>; 2] = [None, None];
    let mut acked: [Option<u32>; 2] = [None, None];
    for p in &conv.packets {
        let s = conv.side_of(p).idx();
        if p.tcp.flags.contains(TcpFlags::SYN) && syn[s].is_none() {
            syn[s] = Some(p.tcp.seq);
        }
        if first[s].is_none() {
            first[s] = Some(p.tcp.seq.wrapping_sub(1));
        }
        if p.tcp.flags.contains(TcpFlags::ACK) && acked[1 - s].is_none() {
            acked[1 - s] = Some(p.tcp.ack.wrapping_sub(1));
        }
    }
    [0, 1].map(|s| syn[s].or(first[s]).or(acked[s]).unwrap_or(0))
}

/// Window scale shifts `[client, server]` applied to each side's advertised window.
fn window_scales(conv: &Conversation) -> [u8; 2] {
    let mut ws: [Option<u8>; 2] = [None, None];
    let mut syns = [false, false];
    for p in &conv.packets {
        if p.tcp.flags.contains(TcpFlags::SYN) {
            let s = conv.side_of(p).idx();
            syns[s] = true;
            ws[s] = p.tcp.options.window_scale;
        }
    }
    match ws {
        // RFC 7323 §2.2: scaling only when both SYNs carried the option; shifts above 14
        // are taken as 14 (§2.3).
        [Some(a), Some(b)] => [a.min(14), b.min(14)],
        _ => [0, 0],
    }
}

/// The handshake's round trip, SYN to the ACK of the SYN+ACK, when the capture holds it.
fn handshake_rtt(conv: &Conversation) -> Option<Duration> {
    let syn = conv
        .packets
        .iter()
        .find(|p| p.tcp.flags.contains(TcpFlags::SYN) && !p.tcp.flags.contains(TcpFlags::ACK))?;
    let synack = conv.packets.iter().find(|p| {
        p.tcp.flags.contains(TcpFlags::SYN | TcpFlags::ACK)
            && p.tcp.ack == syn.tcp.seq.wrapping_add(1)
    })?;
    let ack = conv.packets.iter().find(|p| {
        p.src == syn.src
            && p.tcp.flags.contains(TcpFlags::ACK)
            && !p.tcp.flags.contains(TcpFlags::SYN)
            && p.tcp.ack == synack.tcp.seq.wrapping_add(1)
            && p.time >= synack.time
    })?;
    Some(ack.time.saturating_sub(syn.time))
}

pub(super) fn analyze(conv: &Conversation) -> Vec<Segment> {
    let base = bases(conv);
    let wscale = window_scales(conv);
    let irtt = handshake_rtt(conv);
    // Reordering is told from resending by the time since the highest sequence advanced.
    let reorder_window = irtt.unwrap_or(Duration::from_millis(3));
    let rto_floor = irtt.unwrap_or_default() + Duration::from_millis(180);
    let mut space = [
        Space {
            base: base[0],
            last: 0,
        },
        Space {
            base: base[1],
            last: 0,
        },
    ];
    let mut st = [Sender::default(), Sender::default()];
    let mut last_rx: [Option<Duration>; 2] = [None, None];
    let t0 = conv.packets.first().map_or(Duration::ZERO, |p| p.time);
    let mut out = Vec::with_capacity(conv.packets.len());

    for (index, p) in conv.packets.iter().enumerate() {
        let side = conv.side_of(p);
        let (s, r) = (side.idx(), side.other().idx());
        let seq = space[s].rel(p.tcp.seq);
        let end = seq + p.seg_len() as i64;
        let has_ack = p.tcp.flags.contains(TcpFlags::ACK);
        let ack = has_ack.then(|| space[r].rel(p.tcp.ack));
        let sack: Vec<(i64, i64)> = p
            .tcp
            .options
            .sack
            .as_slice()
            .iter()
            .map(|&(l, rr)| (space[r].rel(l), space[r].rel(rr)))
            .collect();
        let window = if p.tcp.flags.contains(TcpFlags::SYN) {
            u64::from(p.tcp.window)
        } else {
            u64::from(p.tcp.window) << wscale[s]
        };
        let mut seg = Segment {
            index,
            side,
            time: p.time.saturating_sub(t0),
            seq,
            end,
            ack,
            bases: (base[s], base[r]),
            window,
            sack,
            retransmission: None,
            out_of_order: false,
            missed_before: 0,
            dup_ack: 0,
        };

        // As a sender of sequence space.
        if end > seq {
            let me = &st[s];
            let below = me.high_end.is_some_and(|h| seq < h);
            if below {
                let resent = me.covered(seq, end.min(me.high_end.unwrap_or(end)));
                let soon = p.time.saturating_sub(me.last_advance) < reorder_window;
                if !resent && soon && p.kind.is_none() {
                    seg.out_of_order = true;
                } else {
                    seg.retransmission = Some(infer(p, me, &st[r], last_rx[s], rto_floor, end));
                }
            } else if let Some(h) = me.high_end {
                seg.missed_before = u64::try_from(seq - h).unwrap_or(0);
            }
            // The sender's word overrides the guess.
            match p.kind {
                Some(SegmentKind::Retransmission(cause)) => {
                    seg.out_of_order = false;
                    seg.retransmission = Some(Retransmission {
                        cause,
                        inferred: false,
                    });
                }
                Some(_) => seg.retransmission = None,
                None => {}
            }
            let me = &mut st[s];
            if me.high_end.is_none_or(|h| end > h) {
                me.high_end = Some(end);
                me.last_advance = p.time;
            }
            me.insert(seq, end);
        }

        // As an acknowledger.
        if let Some(a) = ack {
            let outstanding = st[r].high_end.is_some_and(|h| h > a);
            let me = &mut st[s];
            let pure = p.seg_len() == 0 && !p.tcp.flags.contains(TcpFlags::RST);
            match me.last_ack {
                Some(prev) if a > prev => {
                    me.dup_run = 0;
                    me.reports_loss = !seg.sack.is_empty();
                }
                Some(prev) if a == prev && pure && window == me.last_window && outstanding => {
                    me.dup_run += 1;
                    seg.dup_ack = me.dup_run;
                    me.reports_loss = true;
                }
                _ => me.reports_loss |= !seg.sack.is_empty(),
            }
            if me.last_ack.is_none_or(|prev| a >= prev) {
                me.last_ack = Some(a);
            }
            me.last_window = window;
        }
        st[s].last_tx = Some(p.time);
        last_rx[r] = Some(p.time);
        out.push(seg);
    }
    out
}

/// Guesses why `p` was sent again (see [`Retransmission`]).
fn infer(
    p: &Packet,
    me: &Sender,
    peer: &Sender,
    last_rx: Option<Duration>,
    rto_floor: Duration,
    end: i64,
) -> Retransmission {
    let cause = if p.tcp.flags.contains(TcpFlags::SYN) {
        RetransmitCause::Timeout
    } else {
        let last_event = me.last_tx.max(last_rx).unwrap_or(p.time);
        let idle = p.time.saturating_sub(last_event);
        if idle >= rto_floor {
            RetransmitCause::Timeout
        } else if peer.reports_loss {
            RetransmitCause::Fast
        } else if me.high_end.is_some_and(|h| end >= h) {
            RetransmitCause::LossProbe
        } else {
            RetransmitCause::Fast
        }
    };
    Retransmission {
        cause,
        inferred: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_cover() {
        let mut s = Sender::default();
        s.insert(0, 10);
        s.insert(20, 30);
        assert!(s.covered(0, 10) && s.covered(22, 25));
        assert!(!s.covered(5, 25));
        s.insert(10, 20);
        assert_eq!(s.seen, vec![(0, 30)]);
        assert!(s.covered(5, 25));
        s.insert(40, 50);
        s.insert(35, 45);
        assert_eq!(s.seen, vec![(0, 30), (35, 50)]);
    }

    #[test]
    fn unwrapping_crosses_2_pow_32() {
        let mut sp = Space {
            base: u32::MAX - 10,
            last: 0,
        };
        assert_eq!(sp.rel(u32::MAX - 10), 0);
        assert_eq!(sp.rel(5), 16);
        let mut v = 16;
        for _ in 0..10 {
            v += 1_000_000_000;
            assert_eq!(sp.rel((u32::MAX - 10).wrapping_add(v as u32)), v);
        }
    }
}
