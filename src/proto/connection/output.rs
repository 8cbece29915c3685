//! Segment generation: what to send now, in priority order — stateless replies, RST,
//! SYN or SYN+ACK, fast retransmissions, probes, data and FIN as the windows, Nagle and
//! silly-window avoidance allow, and finally a bare ACK when one is owed.

use super::{Connection, State, Transmit, MAX_WINDOW};
use crate::proto::{Instant, SeqNum};
use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

impl Connection {
    /// The next segment to send at `now`, or `None` when nothing is due.
    ///
    /// Payload bytes are copied to the front of `payload`, whose length also caps the
    /// segment size. Call it repeatedly until it returns `None` after every input
    /// ([`on_segment`](Self::on_segment), an application call, or
    /// [`handle_timeout`](Self::handle_timeout)).
    pub fn poll_transmit(&mut self, now: Instant, payload: &mut [u8]) -> Option<Transmit> {
        if let Some(repr) = self.reply.take() {
            self.stats.segments_sent += 1;
            return Some(Transmit {
                repr,
                payload_len: 0,
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
            self.rtt_probe = Some((self.snd_nxt, now));
        } else {
            self.stats.retransmissions += 1;
        }
        if self.timers.retransmit.is_none() {
            self.arm_retransmit(now);
        }
        Some(Transmit {
            repr,
            payload_len: 0,
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
        })
    }

    fn transmit_synchronized(&mut self, now: Instant, payload: &mut [u8]) -> Option<Transmit> {
        if self.rtx_now {
            self.rtx_now = false;
            if self.snd_una < self.snd_max {
                // The oldest unacknowledged segment, regardless of the congestion and send
                // windows: fast retransmit (RFC 5681 §3.2 step 2), or the first segment after
                // a timeout, which probes a window that shrank to zero (RFC 9293 §3.8.6.1).
                // No more than the peer's window (a probe of one byte into a closed one).
                let len = self.snd_mss.min(self.snd_wnd.max(1)) as usize;
                let t = self.segment_at(now, self.snd_una, len, payload);
                self.high_rxt = self.high_rxt.max(self.snd_una + t.payload_len);
                if self.timers.retransmit.is_none() {
                    self.arm_retransmit(now);
                }
                return Some(t);
            }
        }
        if let Some((seq, len)) = self.rtx_hole.take() {
            if self.snd_una <= seq && seq < self.snd_max {
                // A hole the peer's SACK blocks show lost (RFC 6675).
                let t = self.segment_at(now, seq, len as usize, payload);
                self.high_rxt = self.high_rxt.max(seq + t.payload_len);
                self.stats.fast_retransmits += 1;
                return Some(t);
            }
        }
        if self.probe_now {
            self.probe_now = false;
            // An ACK with an old sequence number: the peer must answer with its window
            // (zero-window probe, RFC 9293 §3.8.6.1; keepalive, RFC 1122 §4.2.3.6).
            let repr = self.build(now, self.snd_una - 1u32, TcpFlags::ACK);
            return Some(Transmit {
                repr,
                payload_len: 0,
            });
        }
        if let Some(t) = self.transmit_data(now, payload) {
            return Some(t);
        }
        self.transmit_ack(now)
    }

    /// Data and FIN from SND.NXT, within the windows and the Nagle / SWS rules.
    fn transmit_data(&mut self, now: Instant, payload: &mut [u8]) -> Option<Transmit> {
        if self.snd_nxt < self.snd_max {
            // Resending after a timeout: skip what the peer reported holding.
            if let Some(end) = self.scoreboard.covering(self.snd_nxt) {
                self.snd_nxt = end.min(self.snd_max);
            }
        }
        let seq = self.snd_nxt;
        let data_end = self.data_end();
        let avail = (data_end - seq).max(0) as usize;
        let retransmission = seq < self.snd_max;
        let fin_due = self.fin_queued && seq <= data_end;
        if avail == 0 && !fin_due {
            return None;
        }
        let nothing_in_flight = self.snd_una == self.snd_max;
        if !retransmission && nothing_in_flight && now - self.last_send > self.rtt.rto() {
            // RFC 5681 §4.1: restart slowly after an idle period.
            self.cc.on_idle_restart(self.snd_mss);
        }
        let mut cwnd = self.cc.window();
        if !self.in_recovery && self.dupacks > 0 {
            // RFC 3042 limited transmit: one new segment per duplicate ACK, up to two.
            cwnd = cwnd.saturating_add(self.dupacks.min(2) * self.snd_mss);
        }
        let edge = self.snd_una + self.snd_wnd.min(cwnd);
        let usable = (edge - seq).max(0) as usize;
        let mut len = avail
            .min(self.snd_mss as usize)
            .min(usable)
            .min(payload.len());
        if retransmission {
            if let Some(next) = self.scoreboard.next_start_after(seq) {
                len = len.min((next - seq).max(0) as usize);
            }
        }
        let with_fin = fin_due && seq + len == data_end;
        if len == 0 && !with_fin {
            if avail > 0 && nothing_in_flight && self.timers.persist.is_none() {
                // Window closed with data waiting: probe it (RFC 9293 §3.8.6.1).
                self.timers.persist = Some(now + self.rtt.rto());
            }
            return None;
        }
        if len > 0 && !retransmission && !self.force_send {
            // Sender SWS avoidance (RFC 9293 §3.8.6.2.1) and Nagle (RFC 1122 §4.2.3.4) in
            // Minshall's variant, as Linux runs it: a short segment waits only while an
            // earlier short segment is unacknowledged, so a large write's tail goes at once.
            let full = len >= self.snd_mss as usize;
            let all_queued = len == avail;
            let small_outstanding = !nothing_in_flight && self.snd_sml > self.snd_una;
            let may_push = all_queued && (self.cfg.nodelay || !small_outstanding || with_fin);
            let half_window = self.max_snd_wnd > 0 && len >= (self.max_snd_wnd / 2) as usize;
            if !(full || may_push || half_window) {
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
        Some(t)
    }

    /// Builds the segment starting at `seq` with up to `max_len` data bytes, plus the FIN if
    /// it falls right after them; updates SND.NXT / SND.MAX, RTT timing and statistics.
    fn segment_at(
        &mut self,
        now: Instant,
        seq: SeqNum,
        max_len: usize,
        payload: &mut [u8],
    ) -> Transmit {
        let data_end = self.data_end();
        let offset = (seq - self.buf_seq).max(0) as usize;
        let len = max_len
            .min(payload.len())
            .min((data_end - seq).max(0) as usize);
        let copied = self.send_buf.copy_out(offset, &mut payload[..len]);
        debug_assert_eq!(copied, len);
        let end_of_data = seq + len;
        let with_fin = self.fin_queued && end_of_data == data_end;
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
        let end = end_of_data + u32::from(with_fin);
        if seq < self.snd_max {
            self.stats.retransmissions += 1;
            if let Some(undo) = self.undo.as_mut() {
                if undo.tsval.is_none() {
                    undo.tsval = repr.options.timestamps.map(|(tsval, _)| tsval);
                }
            }
            if self.rtt_probe.is_some_and(|(probe_end, _)| probe_end > seq) {
                // Karn: a retransmitted range gives no RTT sample.
                self.rtt_probe = None;
            }
            tracing::trace!(local = %self.local, remote = %self.remote, %seq, len, "retransmit");
        } else if self.rtt_probe.is_none() && end > seq {
            self.rtt_probe = Some((end, now));
        }
        if self.snd_una == self.snd_max && end > seq {
            // Nothing was outstanding: this data starts the user-timeout clock.
            self.unacked_since = Some(now);
        }
        if end > self.snd_max {
            let new_data = (end_of_data - self.snd_max.max(seq)).max(0);
            self.stats.bytes_sent += new_data as u64;
            self.snd_max = end;
        }
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        Transmit {
            repr,
            payload_len: len,
        }
    }

    /// Fills a header: ports, numbers, window and options. Sending an ACK settles what we owed.
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
            if self.sack_ok && self.recv_buf.has_out_of_order() {
                self.fill_sack(&mut options);
            }
            window = self.window_to_advertise();
        }
        let mut ack = 0;
        if flags.contains(TcpFlags::ACK) {
            ack = self.rcv_nxt.0;
            self.ack_now = false;
            self.timers.delayed_ack = None;
            self.rcvd_since_ack = 0;
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

    /// SACK blocks for the out-of-order data held, the most recent first (RFC 2018 §4).
    fn fill_sack(&self, options: &mut TcpOptions) {
        let max_blocks = if self.ts_ok { 3 } else { 4 };
        let ranges = self.recv_buf.ranges();
        let to_seq = |&(s, e): &(usize, usize)| ((self.rcv_nxt + s).0, (self.rcv_nxt + e).0);
        let latest = self.sack_latest.and_then(|l| {
            ranges
                .iter()
                .position(|&(s, e)| l.between(self.rcv_nxt + s, self.rcv_nxt + e))
        });
        if let Some(i) = latest {
            options
                .sack
                .push(to_seq(&ranges[i]).0, to_seq(&ranges[i]).1);
        }
        for (i, r) in ranges.iter().enumerate() {
            if options.sack.as_slice().len() >= max_blocks {
                break;
            }
            if Some(i) != latest {
                let (l, r) = to_seq(r);
                options.sack.push(l, r);
            }
        }
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
            self.rcv_adv = edge;
        }
        scaled as u16
    }
}
