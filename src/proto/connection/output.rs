//! Segment generation: what to send now, in priority order — stateless replies, RST,
//! SYN or SYN+ACK, window and keepalive probes, the first retransmission after a timeout,
//! tail loss probes, then, as pacing allows, segments deemed lost and new data and FIN as
//! the congestion window (or PRR), the peer's window, Nagle and silly-window avoidance
//! allow, and finally a bare ACK when one is owed.

use super::{
    Connection, Recovery, RetransmitCause, SegmentKind, SharedPayload, State, Transmit, MAX_WINDOW,
};
use crate::proto::{Instant, SeqNum};
use crate::wire::{SackBlocks, TcpFlags, TcpOptions, TcpRepr};
use std::time::Duration;

/// How far the pacing deadline may fall behind the clock: the burst allowed after a late
/// timer.
const PACING_CREDIT: Duration = Duration::from_millis(1);

/// Where a segment's payload goes: copied to the front of `buf` (whose length also caps the
/// segment size), or, when it is at least `share_min` bytes and the send buffer holds it in
/// at most [`PIECES`](crate::wire::PIECES) pieces, left there and handed out as those
/// pieces with their sum.
pub(super) struct PayloadOut<'a> {
    buf: &'a mut [u8],
    share_min: usize,
    pieces: Option<SharedPayload>,
}

impl Connection {
    /// [`poll_transmit`](Self::poll_transmit), leaving a payload of at least `share_min`
    /// bytes where the send buffer keeps it: the second value is then its bytes, as up to
    /// [`PIECES`](crate::wire::PIECES) slices of the buffer's storage (the rest empty), and nothing
    /// was copied into `payload`. For a driver whose datapath sends a packet from several
    /// places (`writev`-like): the headers from its own buffer, the payload from these.
    pub fn poll_transmit_shared(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        share_min: usize,
    ) -> Option<(Transmit, Option<SharedPayload>)> {
        let mut out = PayloadOut {
            buf: payload,
            share_min,
            pieces: None,
        };
        let t = self.poll_transmit_out(now, &mut out)?;
        Some((t, out.pieces))
    }

    /// The next segment to send at `now`, or `None` when nothing is due.
    ///
    /// Payload bytes are copied to the front of `payload`, whose length also caps the
    /// segment size. Call it repeatedly until it returns `None` after every input
    /// ([`on_segment`](Self::on_segment), an application call, or
    /// [`handle_timeout`](Self::handle_timeout)).
    pub fn poll_transmit(&mut self, now: Instant, payload: &mut [u8]) -> Option<Transmit> {
        let mut out = PayloadOut {
            buf: payload,
            share_min: usize::MAX,
            pieces: None,
        };
        self.poll_transmit_out(now, &mut out)
    }

    #[inline(always)]
    fn poll_transmit_out(
        &mut self,
        now: Instant,
        payload: &mut PayloadOut<'_>,
    ) -> Option<Transmit> {
        let now = self.clock(now);
        self.timer_changed = false;
        if let Some(repr) = self.reply.take() {
            self.stats.segments_sent += 1;
            return Some(Transmit {
                repr: *repr,
                payload_len: 0,
                kind: SegmentKind::Control,
            });
        }
        if self.rst_now {
            // RFC 9293 §3.10.5 ABORT: <SEQ=SND.NXT><CTL=RST>, with the ACK Linux adds.
            self.rst_now = false;
            self.stats.segments_sent += 1;
            let repr = TcpRepr {
                src_port: self.local.port(),
                dst_port: self.remote.port(),
                seq: self.snd_max.0,
                ack: self.rcv_nxt.0,
                flags: TcpFlags::RST | TcpFlags::ACK,
                ..TcpRepr::default()
            };
            return Some(Transmit {
                repr,
                payload_len: 0,
                kind: SegmentKind::Control,
            });
        }
        match self.state {
            State::Closed | State::Listen => None,
            State::SynSent => self.transmit_syn(now, false),
            State::SynReceived if self.snd_nxt == self.iss => self.transmit_syn(now, true),
            State::SynReceived | State::TimeWait => self.transmit_ack(now),
            _ => self.transmit_synchronized(now, payload),
        }
    }

    fn transmit_syn(&mut self, now: Instant, with_ack: bool) -> Option<Transmit> {
        if self.snd_nxt != self.iss {
            return None;
        }
        let flags = if with_ack {
            TcpFlags::SYN | TcpFlags::ACK
        } else {
            TcpFlags::SYN
        };
        let repr = self.build(now, self.iss, flags);
        self.snd_nxt = self.iss + 1u32;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if self.retries == 0 {
            self.syn_sent_at = Some(now);
        } else {
            // Karn (RFC 6298 §3): a retransmitted SYN gives no RTT sample.
            self.syn_sent_at = None;
            self.stats.retransmissions += 1;
        }
        if self.timers.retransmit.is_none() {
            self.arm_retransmit(now);
        }
        Some(Transmit {
            repr,
            payload_len: 0,
            kind: if self.retries == 0 {
                SegmentKind::Control
            } else {
                SegmentKind::Retransmission(RetransmitCause::Timeout)
            },
        })
    }

    fn transmit_ack(&mut self, now: Instant) -> Option<Transmit> {
        if !self.ack_now {
            return None;
        }
        // The highest sequence number sent, but never beyond the peer's window, or the peer
        // would find the ACK unacceptable (Linux's `tcp_acceptable_seq`).
        let edge = self.snd_una + self.snd_wnd;
        let seq = if self.snd_max <= edge {
            self.snd_max
        } else {
            edge
        };
        let repr = self.build(now, seq, TcpFlags::ACK);
        Some(Transmit {
            repr,
            payload_len: 0,
            kind: SegmentKind::Control,
        })
    }

    fn transmit_synchronized(
        &mut self,
        now: Instant,
        payload: &mut PayloadOut<'_>,
    ) -> Option<Transmit> {
        if self.probe_now {
            self.probe_now = false;
            // An ACK with an old sequence number: the peer must answer with its window
            // (zero-window probe, RFC 9293 §3.8.6.1; keepalive, RFC 1122 §4.2.3.6).
            let repr = self.build(now, self.snd_una - 1u32, TcpFlags::ACK);
            return Some(Transmit {
                repr,
                payload_len: 0,
                kind: SegmentKind::Control,
            });
        }
        if self.rto_probe {
            // The first retransmission after a timeout goes whatever the windows say: it is
            // the probe of a window that shrank to zero (RFC 9293 §3.8.6.1) too.
            self.rto_probe = false;
            if let Some(t) = self.retransmit_lost(now, payload, true) {
                return Some(t);
            }
        }
        if self.tlp_now {
            self.tlp_now = false;
            if let Some(t) = self.send_loss_probe(now, payload) {
                return Some(t);
            }
        }
        if self.pacing_allows(now) {
            // RFC 6675 §4 NextSeg: lost segments first (rule 1), then new data (rule 2).
            if let Some(t) = self.retransmit_lost(now, payload, false) {
                return Some(t);
            }
            if let Some(t) = self.transmit_data(now, payload) {
                return Some(t);
            }
        }
        self.transmit_ack(now)
    }

    /// Whether pacing lets a data segment leave now; if not, the pacing timer is armed for
    /// when it will.
    fn pacing_allows(&mut self, now: Instant) -> bool {
        match self.pacing_next {
            Some(t) if t > now && self.cc.pacing_rate().is_some() => {
                let waiting = self.sent.pending_bytes() > 0 || self.data_end() > self.snd_max;
                if waiting {
                    self.timers.pacing = Some(t);
                }
                false
            }
            _ => true,
        }
    }

    /// The largest payload a segment may carry now: the MSS less the SACK blocks the
    /// segment will carry (RFC 9293 §3.7.1, RFC 6691: the options of the segment
    /// itself count), and no more than the caller's buffer.
    fn payload_room(&self, buf: usize) -> usize {
        let sack = self.sack_option().map_or(0, |b| 4 + 8 * b.len() as u32);
        (self.snd_mss.saturating_sub(sack).max(1) as usize).min(buf)
    }

    /// Retransmits the lowest segment deemed lost, if the congestion window has room for it
    /// (or `forced`, for the first retransmission after a timeout), within the peer's window.
    fn retransmit_lost(
        &mut self,
        now: Instant,
        payload: &mut PayloadOut<'_>,
        forced: bool,
    ) -> Option<Transmit> {
        let (start, len) = self.sent.next_lost()?;
        let data = ((self.data_end() - start).max(0) as u32).min(len);
        let mut n = data.min(self.payload_room(payload.buf.len()) as u32);
        if forced {
            // Into a zero window, one byte probes it.
            n = n.min(self.snd_wnd.max(1));
        } else {
            let edge = self.snd_una + self.snd_wnd;
            if data > 0 {
                if start >= edge {
                    return None;
                }
                n = n.min((edge - start) as u32);
            }
            let room = self.cwnd().saturating_sub(self.pipe());
            let need = n + u32::from(data < len && n == data);
            if room < need && self.pipe() > 0 {
                self.cwnd_blocked |= self.recovery == Recovery::Open;
                return None;
            }
        }
        if n == 0 && data > 0 {
            return None;
        }
        let fast = matches!(self.recovery, Recovery::Fast { .. });
        self.rtx_cause = if forced || matches!(self.recovery, Recovery::Timeout { .. }) {
            RetransmitCause::Timeout
        } else {
            RetransmitCause::Fast
        };
        let t = self.segment_at(now, start, n as usize, payload);
        if fast {
            self.stats.fast_retransmits += 1;
        }
        if self.timers.retransmit.is_none() || start == self.snd_una {
            // Resending the oldest segment restarts its timer (RFC 6298 §5.3 in spirit, as
            // Linux rearms it): it gets a full RTO to be acknowledged, rather than what was
            // left of the one that ran while it was being found lost.
            self.arm_retransmit(now);
        }
        tracing::trace!(local = %self.local, remote = %self.remote, seq = %start, len = n, forced, "retransmit lost segment");
        Some(t)
    }

    /// A tail loss probe (RFC 8985 §7.3): new data if the peer's window allows, else the
    /// last segment sent again. The RTO restarts after it.
    fn send_loss_probe(&mut self, now: Instant, payload: &mut PayloadOut<'_>) -> Option<Transmit> {
        if !self.loss_probe_allowed() {
            return None;
        }
        let room = self.payload_room(payload.buf.len());
        self.rtx_cause = RetransmitCause::LossProbe;
        let unsent = (self.data_end() - self.snd_max).max(0) as usize;
        let rwnd = (self.snd_una + self.snd_wnd - self.snd_max).max(0) as usize;
        let t = if unsent > 0 && rwnd > 0 {
            self.tlp.is_retrans = false;
            self.segment_at(now, self.snd_max, unsent.min(room).min(rwnd), payload)
        } else {
            let last = self.sent.iter().rev().find(|s| !s.is_sacked()).copied()?;
            let data_end = self.data_end();
            let data = (data_end.min(last.end) - last.start).max(0) as usize;
            // The last segment's tail, if it no longer fits in one.
            let start = if data > room {
                last.start + (data - room)
            } else {
                last.start
            };
            self.tlp.is_retrans = true;
            self.segment_at(now, start, data.min(room), payload)
        };
        self.tlp.end_seq = Some(self.snd_max);
        self.stats.tlp_probes += 1;
        self.arm_retransmit(now);
        tracing::trace!(local = %self.local, remote = %self.remote, retransmission = self.tlp.is_retrans, "tail loss probe");
        Some(t)
    }

    /// New data and FIN from SND.NXT, within the windows and the Nagle / SWS rules.
    fn transmit_data(&mut self, now: Instant, payload: &mut PayloadOut<'_>) -> Option<Transmit> {
        let seq = self.snd_max;
        let data_end = self.data_end();
        let avail = (data_end - seq).max(0) as usize;
        let fin_due = self.fin_queued && seq <= data_end;
        let pipe = self.pipe();
        if avail == 0 && !fin_due {
            if pipe < self.cwnd() && self.sent.pending_bytes() == 0 {
                // Nothing left to send and the window not full: delivery-rate samples from
                // now on say what the application allowed, not the path (draft §3.4).
                self.rate.on_app_limited(pipe);
            }
            return None;
        }
        let nothing_in_flight = self.snd_una == self.snd_max;
        if nothing_in_flight && now - self.last_send > self.rtt.rto() {
            // RFC 5681 §4.1: restart slowly after an idle period.
            self.cc.on_idle_restart(self.snd_mss);
        }
        let cwnd_room = self.cwnd().saturating_sub(pipe) as usize;
        let rwnd_room = (self.snd_una + self.snd_wnd - seq).max(0) as usize;
        let room = self.payload_room(payload.buf.len());
        let len = avail.min(room).min(cwnd_room).min(rwnd_room);
        let with_fin = fin_due && seq + len == data_end;
        if len == 0 && !with_fin {
            if avail > 0 && cwnd_room == 0 && rwnd_room > 0 {
                self.cwnd_blocked |= self.recovery == Recovery::Open;
            }
            if avail > 0 && nothing_in_flight && self.timers.persist.is_none() {
                // Window closed with data waiting: probe it (RFC 9293 §3.8.6.1).
                self.timers.persist = Some(now + self.rtt.rto());
            }
            return None;
        }
        if len > 0 && !self.force_send {
            // Sender SWS avoidance (RFC 9293 §3.8.6.2.1) and Nagle (RFC 1122 §4.2.3.4) in
            // Minshall's variant, as Linux runs it: a short segment waits only while an
            // earlier short segment is unacknowledged, so a large write's tail goes at once.
            let full = len >= room;
            let all_queued = len == avail;
            let small_outstanding = !nothing_in_flight && self.snd_sml > self.snd_una;
            let may_push = all_queued && (self.cfg.nodelay || !small_outstanding || with_fin);
            let half_window = self.max_snd_wnd > 0 && len >= (self.max_snd_wnd / 2) as usize;
            if !(full || may_push || half_window) {
                if len < avail && cwnd_room < avail.min(self.snd_mss as usize) && rwnd_room > len {
                    self.cwnd_blocked |= self.recovery == Recovery::Open;
                }
                if nothing_in_flight && len < avail && self.timers.persist.is_none() {
                    // Window-limited with nothing outstanding: the SWS override timer.
                    self.timers.persist = Some(now + self.rtt.rto());
                }
                return None;
            }
        }
        self.force_send = false;
        let t = self.segment_at(now, seq, len, payload);
        if self.timers.retransmit.is_none() {
            self.arm_retransmit(now);
        }
        // RFC 8985 §7.2: the PTO restarts after new data goes out.
        self.arm_loss_probe(now);
        Some(t)
    }

    /// Builds the segment starting at `seq` with up to `max_len` data bytes, plus the FIN if
    /// it falls right after them; records it (a first transmission or a retransmission),
    /// updates SND.NXT / SND.MAX, pacing, PRR, undo and statistics.
    fn segment_at(
        &mut self,
        now: Instant,
        seq: SeqNum,
        max_len: usize,
        payload: &mut PayloadOut<'_>,
    ) -> Transmit {
        let data_end = self.data_end();
        let offset = (seq - self.buf_seq).max(0) as usize;
        let len = max_len
            .min(payload.buf.len())
            .min((data_end - seq).max(0) as usize);
        let end_of_data = seq + len;
        // A retransmission carries the FIN only if it was sent before (it is then part of the
        // record); a FIN not sent yet goes out as new data, where it is recorded.
        let with_fin =
            self.fin_queued && end_of_data == data_end && (seq >= self.snd_max || self.fin_sent());
        let mut flags = TcpFlags::ACK;
        if len > 0 && end_of_data == data_end {
            flags |= TcpFlags::PSH;
        }
        if with_fin {
            flags |= TcpFlags::FIN;
        }
        let mut repr = self.build(now, seq, flags);
        if let Some(up) = self.snd_up {
            if up > seq {
                repr.flags |= TcpFlags::URG;
                repr.urgent = (up - seq).min(0xffff) as u16;
            }
        }
        if len > 0 && len < self.snd_mss as usize {
            self.snd_sml = end_of_data;
        }
        if len > 0 {
            self.rcvd_since_sent = 0;
        }
        let end = end_of_data + u32::from(with_fin);
        let retransmission = seq < self.snd_max;
        let seg_len = (end - seq).max(0) as u32;
        let tsval = repr.options.timestamps.map_or(0, |(v, _)| v);
        let prior_pipe = self.sent.pipe();
        let rate = &mut self.rate;
        let mut tx = move || rate.on_send(now, prior_pipe == 0, prior_pipe.saturating_add(seg_len));
        if self.snd_una == self.snd_max && end > seq {
            // Nothing was outstanding: this data starts the user-timeout clock.
            self.unacked_since = Some(now);
        }
        if seq < self.snd_max {
            self.stats.retransmissions += 1;
            self.stats.bytes_retransmitted += len as u64;
            // Only a recovery's own retransmissions count towards undoing it (a later tail
            // loss probe is not one of them).
            let in_episode = self.recovery != Recovery::Open;
            if let Some(undo) = self.undo.as_mut().filter(|_| in_episode) {
                if undo.tsval.is_none() && !undo.retransmitted {
                    undo.tsval = repr.options.timestamps.map(|(v, _)| (v, end));
                }
                undo.retransmitted = true;
                undo.retrans_out += 1;
            }
            self.sent.retransmitted(seq, seg_len, now, tsval, tx());
            tracing::trace!(local = %self.local, remote = %self.remote, %seq, len, "retransmit");
        } else if end > seq {
            self.stats.bytes_sent += len as u64;
            self.sent.push(seq, end, now, tsval, tx);
            self.snd_max = end;
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if matches!(self.recovery, Recovery::Fast { .. }) {
            self.prr.on_sent(seg_len);
        }
        self.pace(now, seg_len);
        let kind = if retransmission {
            SegmentKind::Retransmission(self.rtx_cause)
        } else {
            SegmentKind::New
        };
        // The result is built, then the payload copied, last: a read of something just
        // written that misses the store buffer's forwarding (a struct copied wider than it was
        // written) waits for every store before it, and after a copy that is all of the copy.
        let transmit = Transmit {
            repr,
            payload_len: len,
            kind,
        };
        if len >= payload.share_min {
            if let Some(pieces) = self.send_buf.pieces(offset, len) {
                // With partial checksums the payload is never summed (the sum is unused).
                let sum = if self.partial_ok {
                    0
                } else {
                    self.send_buf.range_sum(offset, len)
                };
                payload.pieces = Some((Box::new(pieces), sum));
                return transmit;
            }
        }
        let copied = self.send_buf.copy_out(offset, &mut payload.buf[..len]);
        debug_assert_eq!(copied, len);
        transmit
    }

    /// Advances the pacing deadline by the time `bytes` take at the controller's pacing
    /// rate. The deadline may lag behind `now` by up to [`PACING_CREDIT`], so a timer that
    /// fires late (the runtime's timers tick in milliseconds) costs no rate: the backlog
    /// goes out as a short burst.
    fn pace(&mut self, now: Instant, bytes: u32) {
        let Some(rate) = self.cc.pacing_rate().filter(|&r| r > 0) else {
            self.pacing_next = None;
            return;
        };
        let floor = Instant::from_micros(
            now.as_micros()
                .saturating_sub(PACING_CREDIT.as_micros() as u64),
        );
        let from = self.pacing_next.map_or(now, |t| t.max(floor));
        let gap = Duration::from_nanos(
            (u128::from(bytes) * 1_000_000_000 / u128::from(rate)).min(u128::from(u64::MAX)) as u64,
        );
        self.pacing_next = Some(from + gap);
    }

    /// Fills a header: ports, numbers, window and options. Sending an ACK settles what we owed.
    #[inline(always)]
    fn build(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags) -> TcpRepr {
        let syn = flags.contains(TcpFlags::SYN);
        let tsval = (now.as_millis() as u32).wrapping_add(self.ts_offset);
        let mut options = TcpOptions::default();
        let window;
        if syn {
            let active = !flags.contains(TcpFlags::ACK);
            options.mss = Some(self.cfg.mss);
            // An active opener offers everything configured; a SYN+ACK only echoes what the
            // peer offered (RFC 7323 §2.2, RFC 2018 §2).
            if (active && self.cfg.window_scaling) || (!active && self.wscale_ok) {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = if active { self.cfg.sack } else { self.sack_ok };
            options.partial_checksums = if active {
                self.cfg.partial_checksums
            } else {
                self.partial_ok
            };
            if active && self.cfg.timestamps {
                options.timestamps = Some((tsval, 0));
            } else if !active && self.ts_ok {
                options.timestamps = Some((tsval, self.ts_recent));
            }
            // The window in a SYN is never scaled (RFC 7323 §2.2).
            let w = self.recv_buf.window().min(0xffff) as u32;
            self.rcv_adv = self.rcv_nxt + w;
            window = w as u16;
        } else {
            if self.ts_ok {
                options.timestamps = Some((tsval, self.ts_recent));
            }
            if let Some(blocks) = self.sack_option() {
                options.sack = blocks;
                if self.dsack.take().is_some() {
                    self.stats.dsacks_sent += 1;
                }
            }
            window = self.window_to_advertise();
        }
        let mut ack = 0;
        if flags.contains(TcpFlags::ACK) {
            ack = self.rcv_nxt.0;
            self.ack_now = false;
            self.ack_urgent = false;
            self.timers.delayed_ack = None;
            self.rcvd_since_ack = 0;
            self.short_tail = false;
            self.last_ack_sent = self.rcv_nxt;
        }
        self.stats.segments_sent += 1;
        self.last_send = now;
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: seq.0,
            ack,
            flags,
            window,
            urgent: 0,
            options,
        }
    }

    /// The SACK option the next segment carries, if any: a pending D-SACK first (RFC 2883
    /// §4), then the blocks holding the most recently received out-of-order segments, then
    /// the others in sequence order, as many as fit beside the timestamps (RFC 2018 §3, §4).
    fn sack_option(&self) -> Option<SackBlocks> {
        if !self.sack_ok || (self.dsack.is_none() && !self.recv_buf.has_out_of_order()) {
            return None;
        }
        let max_blocks = if self.ts_ok { 3 } else { 4 };
        let mut blocks = SackBlocks::new();
        let mut first_regular = 0;
        if let Some((l, r)) = self.dsack {
            blocks.push(l.0, r.0);
            first_regular = 1;
            // The block holding the duplicate, if it is held out of order, follows it.
            let held = self.recv_buf.ranges().iter().find(|&&(s, e)| {
                let (s, e) = (self.rcv_nxt + s, self.rcv_nxt + e);
                s <= l && r <= e
            });
            if let Some(&(s, e)) = held {
                blocks.push((self.rcv_nxt + s).0, (self.rcv_nxt + e).0);
            }
        }
        let ranges = self.recv_buf.ranges();
        let add = |blocks: &mut SackBlocks, (s, e): (usize, usize)| {
            let block = ((self.rcv_nxt + s).0, (self.rcv_nxt + e).0);
            if blocks.len() < max_blocks && !blocks.as_slice()[first_regular..].contains(&block) {
                blocks.push(block.0, block.1);
            }
        };
        for seq in self.sack_recent.iter().flatten() {
            if let Some(&r) = ranges
                .iter()
                .find(|&&(s, e)| seq.between(self.rcv_nxt + s, self.rcv_nxt + e))
            {
                add(&mut blocks, r);
            }
        }
        for &r in ranges {
            add(&mut blocks, r);
        }
        Some(blocks)
    }

    /// The window field for a non-SYN segment: free buffer space, scaled, never moving the
    /// right edge left (RFC 9293 §3.8.6.2.2, RFC 7323 §2.4) and not opening it by slivers
    /// (receiver SWS avoidance).
    fn window_to_advertise(&mut self) -> u16 {
        let free = self.recv_buf.window().min(MAX_WINDOW) as u32;
        let current = (self.rcv_adv - self.rcv_nxt).max(0) as u32;
        let threshold = ((self.recv_buf.capacity() / 2) as u32)
            .min(self.rcv_mss)
            .max(1);
        let mut wnd = free;
        if wnd > current && wnd - current < threshold {
            wnd = current;
        }
        wnd = wnd.max(current);
        let shift = self.rcv_wscale;
        let mut scaled = (wnd >> shift).min(0xffff);
        if (scaled << shift) < current && scaled < 0xffff {
            // Rounding down by the scale would shrink the window: round up instead.
            scaled += 1;
        }
        let edge = self.rcv_nxt + (scaled << shift);
        if edge > self.rcv_adv {
            self.mark_recv_rtt(edge);
            self.rcv_adv = edge;
        }
        scaled as u16
    }
}
