//! How one side's data segments left, as a capture saw them: how far apart, in what
//! bursts, how long the sender stood idle between them, and how often the other side
//! acknowledged them. Two stacks on the same path differ here first when one of them moves
//! the same window in smaller, slower pieces (see "Where the rawtcp server's time goes" in
//! the README, which compares rawtcp's raw datapath and the kernel's TCP this way).

use super::{Conversation, Side};
use std::fmt;
use std::time::Duration;

/// The pacing of one side's data segments (those that carry payload, retransmissions
/// included) in a conversation, as [`Pacing::of`] measures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pacing {
    /// The side whose segments these are.
    pub side: Side,
    /// Segments with payload that side sent.
    pub data_segments: usize,
    /// Segments from the other side that carry an ACK and no payload.
    pub acks: usize,
    /// The median time between one data segment and the next.
    pub median_spacing: Option<Duration>,
    /// The median length of a burst: a run of data segments each within the burst gap of
    /// the one before.
    pub median_burst: usize,
    /// Bursts in all.
    pub bursts: usize,
    /// Time between consecutive data segments further apart than the idle gap, added up.
    pub idle: Duration,
    /// From the first data segment to the last.
    pub span: Duration,
    /// The median time from a pure ACK of the other side to the first segment of new data
    /// after it (data beyond any sent before): how quickly the sender answers its ACKs, as
    /// seen where the capture was taken.
    pub median_ack_to_data: Option<Duration>,
    /// The gap that ends a burst.
    pub burst_gap: Duration,
    /// The gap counted as idle.
    pub idle_gap: Duration,
}

impl Pacing {
    /// Measures the pacing of `side`'s data segments in `conv`: consecutive data segments
    /// less than `burst_gap` apart belong to one burst, and gaps longer than `idle_gap` are
    /// added up as idle time.
    ///
    /// ```
    /// use rawtcp::inspect::{pacing::Pacing, Capture, Side};
    /// use std::time::Duration;
    ///
    /// # fn demo(capture: &Capture) {
    /// for conv in capture.conversations() {
    ///     let p = Pacing::of(&conv, Side::Server, Duration::from_micros(10), Duration::from_micros(30));
    ///     println!("{p}");
    /// }
    /// # }
    /// ```
    pub fn of(conv: &Conversation, side: Side, burst_gap: Duration, idle_gap: Duration) -> Pacing {
        let mut data_times = Vec::new();
        let mut acks = 0;
        let mut ack_to_data = Vec::new();
        // The end of the highest data sent so far (sequence numbers compare modulo 2^32),
        // and the time of the first pure ACK since new data last left.
        let mut high: Option<u32> = None;
        let mut waiting_ack: Option<Duration> = None;
        for p in &conv.packets {
            if conv.side_of(p) == side {
                if p.payload_len == 0 {
                    continue;
                }
                data_times.push(p.time);
                let end = p.tcp.seq.wrapping_add(p.payload_len as u32);
                let new = high.is_none_or(|h| (end.wrapping_sub(h) as i32) > 0);
                if new {
                    high = Some(end);
                    if let Some(at) = waiting_ack.take() {
                        ack_to_data.push(p.time.saturating_sub(at));
                    }
                }
            } else if p.payload_len == 0 && p.tcp.flags.contains(crate::wire::TcpFlags::ACK) {
                acks += 1;
                if high.is_some() && waiting_ack.is_none() {
                    waiting_ack = Some(p.time);
                }
            }
        }
        let gaps: Vec<Duration> = data_times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        let mut bursts = Vec::new();
        if !data_times.is_empty() {
            let mut run = 1;
            for g in &gaps {
                if *g < burst_gap {
                    run += 1;
                } else {
                    bursts.push(run);
                    run = 1;
                }
            }
            bursts.push(run);
        }
        let idle = gaps.iter().filter(|g| **g > idle_gap).sum();
        Pacing {
            side,
            data_segments: data_times.len(),
            acks,
            median_spacing: median(gaps),
            bursts: bursts.len(),
            median_burst: median(bursts).unwrap_or(0),
            idle,
            span: match (data_times.first(), data_times.last()) {
                (Some(a), Some(b)) => b.saturating_sub(*a),
                _ => Duration::ZERO,
            },
            median_ack_to_data: median(ack_to_data),
            burst_gap,
            idle_gap,
        }
    }
}

/// The middle value (the upper of the two middle ones for an even count).
fn median<T: Ord + Copy>(mut v: Vec<T>) -> Option<T> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

impl fmt::Display for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.1} µs", d.as_secs_f64() * 1e6)
            })
        };
        let per_ack = if self.acks > 0 {
            format!("{:.1}", self.data_segments as f64 / self.acks as f64)
        } else {
            "-".to_string()
        };
        write!(
            f,
            "{:?}'s data: {} segments over {:.1} ms, median {} apart, {} bursts (median {} \
             segments, gap < {:.0} µs), idle {:.1} ms (gaps > {:.0} µs); {} ACKs back (one \
             per {} data segments), median {} from an ACK to new data",
            self.side,
            self.data_segments,
            self.span.as_secs_f64() * 1e3,
            us(self.median_spacing),
            self.bursts,
            self.median_burst,
            self.burst_gap.as_secs_f64() * 1e6,
            self.idle.as_secs_f64() * 1e3,
            self.idle_gap.as_secs_f64() * 1e6,
            self.acks,
            per_ack,
            us(self.median_ack_to_data),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Packet;
    use crate::wire::{TcpFlags, TcpRepr};

    const C: &str = "10.0.0.2:40000";
    const S: &str = "10.0.0.1:80";

    fn packet(us: u64, from_server: bool, seq: u32, len: usize) -> Packet {
        let (src, dst) = if from_server { (S, C) } else { (C, S) };
        Packet {
            time: Duration::from_micros(us),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            tcp: TcpRepr {
                seq,
                flags: TcpFlags::ACK,
                ..TcpRepr::default()
            },
            payload_len: len,
            kind: None,
            sample: None,
        }
    }

    /// `side`'s pacing with a 10 µs burst gap and a 30 µs idle gap.
    fn pacing(conv: &Conversation, side: Side) -> Pacing {
        Pacing::of(
            conv,
            side,
            Duration::from_micros(10),
            Duration::from_micros(30),
        )
    }

    fn conversation(packets: Vec<Packet>) -> Conversation {
        Conversation {
            number: 1,
            client: C.parse().unwrap(),
            server: S.parse().unwrap(),
            client_isn: None,
            packets,
        }
    }

    /// Two bursts of three 1-µs-spaced segments, 100 µs apart, an ACK after each burst;
    /// the second burst starts 4 µs after the first ACK, and a retransmission after the
    /// second ACK is not new data.
    #[test]
    fn bursts_spacing_idle_and_answers() {
        let mss = 1000;
        let conv = conversation(vec![
            packet(0, true, 0, mss),
            packet(1, true, 1000, mss),
            packet(2, true, 2000, mss),
            packet(50, false, 1, 0),
            packet(54, true, 3000, mss),
            packet(55, true, 4000, mss),
            packet(56, true, 5000, mss),
            packet(90, false, 1, 0),
            packet(200, true, 1000, mss),
            packet(210, true, 6000, mss),
        ]);
        let p = pacing(&conv, Side::Server);
        assert_eq!(p.data_segments, 8);
        assert_eq!(p.acks, 2);
        // Gaps 1, 1, 52, 1, 1, 144, 10: the median is 1 µs.
        assert_eq!(p.median_spacing, Some(Duration::from_micros(1)));
        // Bursts 3, 3, 1, 1 (10 µs is not below the burst gap).
        assert_eq!(p.bursts, 4);
        assert_eq!(p.median_burst, 3);
        assert_eq!(p.idle, Duration::from_micros(52 + 144));
        assert_eq!(p.span, Duration::from_micros(210));
        // From the ACK at 50 to new data at 54, and from 90 past the retransmission at
        // 200 to new data at 210.
        assert_eq!(p.median_ack_to_data, Some(Duration::from_micros(120)));
        let client = pacing(&conv, Side::Client);
        assert_eq!(client.data_segments, 0);
        assert_eq!(client.median_spacing, None);
        assert_eq!(client.median_burst, 0);
        assert!(p.to_string().contains("8 segments"));
    }

    /// A segment whose end wraps past 2^32 (numerically below the highest end before it)
    /// is still new data.
    #[test]
    fn new_data_across_the_wrap() {
        let conv = conversation(vec![
            packet(0, true, u32::MAX - 1099, 1000),
            packet(10, false, 1, 0),
            packet(15, true, u32::MAX - 99, 1000),
        ]);
        let p = pacing(&conv, Side::Server);
        assert_eq!(p.median_ack_to_data, Some(Duration::from_micros(5)));
    }
}
