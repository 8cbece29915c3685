//! The textbook ladder for any conversation: one line per segment, who sent it, the flags,
//! `S:` the sequence number, `A:` the acknowledgment number and `len=` the payload, as the
//! echo example prints it —
//!
//! ```text
//! client -> server  SYN      S:100 A:0
//! server -> client  SYN+ACK  S:2000 A:101
//! client -> server  ACK      S:101 A:2001
//! ```
//!
//! — with what the analysis found appended in brackets: `[retransmission: rto?]` (a `?`
//! marks a cause inferred from the capture, see [`Retransmission`](super::Retransmission)),
//! `[out of order]`, `[previous 1448 bytes not captured]`, `[dup ACK #2]`,
//! `[SACK 2897-4345]`.

use super::{Conversation, Segment};
use crate::wire::TcpFlags;
use std::fmt;

/// A conversation printed as a ladder (its `Display`), one line per packet.
///
/// ```
/// use rawtcp::inspect::{Capture, Packet, ladder::Ladder};
/// use rawtcp::wire::{TcpFlags, TcpRepr};
/// use std::time::Duration;
///
/// let c = "10.0.0.2:40000".parse().unwrap();
/// let s = "10.0.0.1:80".parse().unwrap();
/// let pkt = |src, dst, flags, seq, ack, len| Packet {
///     time: Duration::ZERO, src, dst, payload_len: len, kind: None, sample: None,
///     tcp: TcpRepr { flags, seq, ack, window: 1000, ..Default::default() },
/// };
/// let capture = Capture {
///     packets: vec![
///         pkt(c, s, TcpFlags::SYN, 100, 0, 0),
///         pkt(s, c, TcpFlags::SYN | TcpFlags::ACK, 2000, 101, 0),
///         pkt(c, s, TcpFlags::ACK, 101, 2001, 0),
///     ],
///     ..Default::default()
/// };
/// let conv = &capture.conversations()[0];
/// assert_eq!(
///     Ladder::new(conv).to_string(),
///     "client -> server  SYN      S:100 A:0\n\
///      server -> client  SYN+ACK  S:2000 A:101\n\
///      client -> server  ACK      S:101 A:2001\n"
/// );
/// assert_eq!(
///     Ladder::new(conv).relative(true).to_string().lines().nth(1),
///     Some("server -> client  SYN+ACK  S:0 A:1")
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Ladder<'a> {
    conv: &'a Conversation,
    relative: bool,
    time: bool,
    annotate: bool,
    limit: Option<usize>,
}

impl<'a> Ladder<'a> {
    /// A ladder of `conv` with absolute numbers and annotations.
    pub fn new(conv: &'a Conversation) -> Ladder<'a> {
        Ladder {
            conv,
            relative: false,
            time: false,
            annotate: true,
            limit: None,
        }
    }

    /// Relative sequence and acknowledgment numbers (each side's SYN is 0), as Wireshark
    /// shows them.
    pub fn relative(mut self, yes: bool) -> Self {
        self.relative = yes;
        self
    }

    /// Each line starts with the time since the conversation's first packet, in seconds.
    pub fn time(mut self, yes: bool) -> Self {
        self.time = yes;
        self
    }

    /// Whether to append the analysis's findings (on by default).
    pub fn annotate(mut self, yes: bool) -> Self {
        self.annotate = yes;
        self
    }

    /// At most `n` lines.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The lines, without their line ends.
    pub fn lines(&self) -> Vec<String> {
        let segs = self.conv.segments();
        segs.iter()
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|s| self.line(s))
            .collect()
    }

    fn line(&self, s: &Segment) -> String {
        let p = &self.conv.packets[s.index];
        let mut line = String::new();
        if self.time {
            line.push_str(&format!("{:>11.6}  ", s.time.as_secs_f64()));
        }
        let (seq, ack) = if self.relative {
            (s.seq, s.ack.unwrap_or(0))
        } else {
            (i64::from(p.tcp.seq), i64::from(p.tcp.ack))
        };
        let ack = if self.relative && !p.tcp.flags.contains(TcpFlags::ACK) {
            0
        } else {
            ack
        };
        line.push_str(&format!(
            "{} -> {}  {:<8} S:{seq} A:{ack}",
            s.side,
            s.side.other(),
            p.tcp.flags
        ));
        if p.payload_len > 0 {
            line.push_str(&format!(" len={}", p.payload_len));
        }
        if self.annotate {
            for note in self.notes(s) {
                line.push_str("  [");
                line.push_str(&note);
                line.push(']');
            }
        }
        line
    }

    fn notes(&self, s: &Segment) -> Vec<String> {
        let mut notes = Vec::new();
        if s.missed_before > 0 {
            notes.push(format!("previous {} bytes not captured", s.missed_before));
        }
        if let Some(r) = s.retransmission {
            notes.push(format!("retransmission: {r}"));
        }
        if s.out_of_order {
            notes.push("out of order".into());
        }
        if s.dup_ack > 0 {
            notes.push(format!("dup ACK #{}", s.dup_ack));
        }
        if !s.sack.is_empty() {
            let p = &self.conv.packets[s.index];
            let blocks: Vec<String> = if self.relative {
                s.sack.iter().map(|(l, r)| format!("{l}-{r}")).collect()
            } else {
                p.tcp
                    .options
                    .sack
                    .as_slice()
                    .iter()
                    .map(|(l, r)| format!("{l}-{r}"))
                    .collect()
            };
            notes.push(format!("SACK {}", blocks.join(" ")));
        }
        notes
    }
}

impl fmt::Display for Ladder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}
