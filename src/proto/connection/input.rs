//! Segment arrival: RFC 9293 §3.10.7 ("SEGMENT ARRIVES"), with RFC 5961's defences against
//! blind RST, SYN and data injection, RFC 7323's PAWS, and RFC 5681/6582 loss detection.

use super::{Connection, State};
use crate::proto::{Error, Instant, SeqNum};
use crate::wire::{TcpFlags, TcpOptions, TcpRepr};
use bytes::Bytes;

/// RFC 9293 §3.7.1: the MSS assumed when the peer sends none.
const DEFAULT_MSS_V4: u32 = 536;
const DEFAULT_MSS_V6: u32 = 1220;
/// Smallest MSS accepted from a peer (as Linux's `tcp_min_snd_mss`), so a hostile SYN
/// cannot make us send one-byte segments.
const MIN_PEER_MSS: u32 = 48;
/// Least time between ACKs answering out-of-window pure ACKs, and between challenge ACKs
/// (RFC 5961 §7; Linux's `tcp_invalid_ratelimit`: 500 ms).
const OOW_ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// TCP header bytes taken by the timestamp option, padded (RFC 7323 §3.2).
const TS_OPTION_LEN: u32 = 12;

impl Connection {
    /// Processes one arriving segment addressed to this connection.
    ///
    /// `payload` is the segment's data. Replies (ACKs, RSTs, data) come out of
    /// [`poll_transmit`](Self::poll_transmit); state changes and errors are visible at once.
    ///
    /// Returns whether the segment was *accepted* as the peer's: a SYN that opened the
    /// connection, a SYN+ACK that completed it, or a segment inside the receive window with
    /// an acceptable acknowledgment (RFC 9293 §3.10.7.4 up to its fifth step). A driver that
    /// learns where the peer is from arriving packets (the UDP datapath's return addresses)
    /// should learn only from accepted ones, so that a stranger's forged segment redirects
    /// nothing.
    pub fn on_segment(&mut self, now: Instant, seg: &TcpRepr, payload: &[u8]) -> bool {
        self.on_segment_shared(now, seg, payload, None)
    }

    /// [`on_segment`](Self::on_segment), with the buffer the payload lies in when the
    /// connection may keep part of it instead of copying (`RecvBuffer::insert_shared`): a
    /// driver that received the segment into storage of its own hands that storage over,
    /// and does not write to it again while the connection holds a slice of it.
    pub fn on_segment_shared(
        &mut self,
        now: Instant,
        seg: &TcpRepr,
        payload: &[u8],
        arrival: Option<&Bytes>,
    ) -> bool {
        self.stats.segments_received += 1;
        let now = self.clock(now);
        self.accepted = false;
        match self.state {
            // A closed connection has no TCB; the driver answers with `reset_for`.
            State::Closed => {}
            State::Listen => self.on_listen(now, seg),
            State::SynSent => self.on_syn_sent(now, seg, payload),
            _ => self.on_synchronized(now, seg, (payload, arrival)),
        }
        self.accepted
    }

    /// RFC 9293 §3.10.7.2.
    fn on_listen(&mut self, now: Instant, seg: &TcpRepr) {
        if seg.flags.contains(TcpFlags::RST) {
            return;
        }
        if seg.flags.contains(TcpFlags::ACK) {
            self.reply = Some(Box::new(self.rst_reply(seg.ack)));
            return;
        }
        if !seg.flags.contains(TcpFlags::SYN) {
            return;
        }
        self.irs = SeqNum(seg.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.rcv_adv = self.rcv_nxt;
        self.last_ack_sent = self.rcv_nxt;
        self.negotiate(&seg.options);
        // The window in a SYN is never scaled (RFC 7323 §2.2).
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = self.iss;
        // Data on a SYN is not accepted (no TCP Fast Open): the peer sends it again.
        self.snd_nxt = self.iss;
        self.last_send = now;
        self.accepted = true;
        self.set_state(State::SynReceived);
    }

    /// Applies the options of the peer's SYN (or SYN+ACK): each is used only if both sides
    /// offered it.
    fn negotiate(&mut self, opts: &TcpOptions) {
        // RFC 7323 §2.2: scaling only if both SYNs carry the option; shifts above 14 are
        // treated as 14 (§2.3).
        self.wscale_ok = self.cfg.window_scaling && opts.window_scale.is_some();
        match opts.window_scale {
            Some(shift) if self.cfg.window_scaling => self.snd_wscale = shift.min(14),
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.sack_ok = self.cfg.sack && opts.sack_permitted;
        self.ts_ok = self.cfg.timestamps && opts.timestamps.is_some();
        self.partial_ok = self.cfg.partial_checksums && opts.partial_checksums;
        if self.partial_ok {
            // Segments leave with the pseudo-header sum only: no sums of the payload.
            self.send_buf.forget_sums();
        }
        // Without timestamps `ts_recent` times the window instead (`mark_recv_rtt`), from
        // nothing: not from a TSval or a mark of an earlier handshake that went back to
        // LISTEN.
        self.ts_recent = opts
            .timestamps
            .filter(|_| self.ts_ok)
            .map_or(0, |(tsval, _)| tsval);
        let default_mss = if self.remote.is_ipv4() {
            DEFAULT_MSS_V4
        } else {
            DEFAULT_MSS_V6
        };
        let peer_mss = opts.mss.map_or(default_mss, u32::from).max(MIN_PEER_MSS);
        let ts_len = if self.ts_ok { TS_OPTION_LEN } else { 0 };
        // RFC 9293 §3.7.1: Eff.snd.MSS = min(SendMSS, MMS_S) - options.
        self.snd_mss = peer_mss.min(u32::from(self.cfg.mss.max(64))) - ts_len;
        self.cc = self.cfg.congestion.build(self.snd_mss);
    }

    /// RFC 9293 §3.10.7.3.
    fn on_syn_sent(&mut self, now: Instant, seg: &TcpRepr, payload: &[u8]) {
        let ack = SeqNum(seg.ack);
        let has_ack = seg.flags.contains(TcpFlags::ACK);
        if has_ack && (ack <= self.iss || ack > self.snd_max) {
            if !seg.flags.contains(TcpFlags::RST) {
                self.reply = Some(Box::new(self.rst_reply(seg.ack)));
            }
            return;
        }
        if seg.flags.contains(TcpFlags::RST) {
            // RFC 5961 §3.2: in SYN-SENT a RST is acceptable only if it acknowledges our SYN.
            if has_ack {
                self.fail(Error::ConnectionRefused);
            }
            return;
        }
        if !seg.flags.contains(TcpFlags::SYN) {
            return;
        }
        self.irs = SeqNum(seg.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.rcv_adv = self.rcv_nxt;
        self.accepted = true;
        self.negotiate(&seg.options);
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = ack;
        if has_ack {
            self.snd_una = ack;
            self.syn_rtt_sample(now);
            self.handshake_done();
            self.establish(now);
            self.ack_now = true;
            if !payload.is_empty() || seg.flags.contains(TcpFlags::FIN) {
                let fin = seg.flags.contains(TcpFlags::FIN);
                self.process_text(now, self.rcv_nxt, (payload, None), fin);
            }
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8): answer SYN+ACK with our ISN.
            self.snd_nxt = self.iss;
            self.set_state(State::SynReceived);
        }
    }

    /// Our SYN is acknowledged: stop its timer. RFC 6298 §5.7: if it had to be retransmitted
    /// and no RTT was measured, data starts with an RTO of 3 s.
    fn handshake_done(&mut self) {
        // A retransmission timeout (or a repeated SYN) may have moved SND.NXT back to the
        // ISS to send the SYN again; the ACK of it arrived first. RFC 9293 §3.10.7.3/4 set
        // SND.UNA = SEG.ACK, and SND.UNA =< SND.NXT must hold (RFC 9293 §3.3.1), or the
        // first data would be sent from below SND.UNA.
        self.snd_nxt = self.snd_nxt.max(self.snd_una);
        self.timers.retransmit = None;
        if self.retries > 0 {
            self.rtt.raise_unmeasured(std::time::Duration::from_secs(3));
        }
        self.retries = 0;
        self.rtt.reset_backoff();
    }

    /// RST in SYN-RECEIVED of a passive open (RFC 9293 §3.10.7.4): back to LISTEN.
    fn return_to_listen(&mut self) {
        self.clear_timers();
        self.snd_nxt = self.iss;
        self.snd_una = self.iss;
        self.snd_max = self.iss;
        self.retries = 0;
        self.syn_sent_at = None;
        self.ack_now = false;
        self.set_state(State::Listen);
    }

    fn establish(&mut self, now: Instant) {
        if self.fin_queued {
            self.set_state(State::FinWait1);
        } else {
            self.set_state(State::Established);
        }
        self.arm_keepalive(now);
    }

    /// RFC 9293 §3.10.7.4, for SYN-RECEIVED and every synchronized state.
    fn on_synchronized(
        &mut self,
        now: Instant,
        seg: &TcpRepr,
        (payload, arrival): (&[u8], Option<&Bytes>),
    ) {
        let flags = seg.flags;
        let rst = flags.contains(TcpFlags::RST);
        let mut syn = flags.contains(TcpFlags::SYN);
        let fin = flags.contains(TcpFlags::FIN);
        let mut seq = SeqNum(seg.seq);

        if self.state == State::SynReceived && syn && !rst && seq == self.irs {
            if !flags.contains(TcpFlags::ACK) {
                // The peer lost our SYN+ACK and repeats its SYN: repeat the SYN+ACK.
                self.snd_nxt = self.iss;
                return;
            }
            // Simultaneous open (RFC 9293 §3.5 figure 8): the peer's SYN+ACK repeats the SYN
            // we already have; drop that part and keep its ACK.
            syn = false;
            seq += 1u32;
        }
        let seg_len = payload.len() as u32 + u32::from(syn) + u32::from(fin);

        // RFC 7323 §5.3: PAWS rejects segments with an old timestamp.
        if self.ts_ok && !rst {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    tracing::trace!(local = %self.local, remote = %self.remote, tsval, "segment dropped by PAWS");
                    // RFC 7323 §5.3 R1: acknowledge and drop; pure ACKs under the same
                    // limit as other out-of-window ones (RFC 5961 §7).
                    if self.may_answer_out_of_window(now, seg_len) {
                        self.ack_now = true;
                    }
                    return;
                }
            }
        }

        // First: is the sequence number acceptable?
        let wnd = (self.rcv_adv - self.rcv_nxt).max(0) as u32;
        let mut text_allowed = true;
        // Taken only for its acknowledgment (see `stale_ack_advances`).
        let mut stale_ack = false;
        let acceptable = match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            // RFC 9293 §3.10.7.4 wants RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND. A peer that
            // filled our window exactly, and lost it all, sends every pure ACK at
            // SND.NXT = our right edge until its retransmission arrives; dropping those
            // would ignore its acknowledgments, window updates and keepalive answers for
            // as long as its RTO backs off. Like Linux (`tcp_sequence`), take a zero-length
            // segment exactly at the edge; not a RST, whose rules RFC 5961 §3.2 keeps strict.
            (0, _) => seq.in_window(self.rcv_nxt, wnd) || (!rst && seq == self.rcv_nxt + wnd),
            (_, 0) => false,
            (_, _) => {
                seq.in_window(self.rcv_nxt, wnd)
                    || (seq + (seg_len - 1)).in_window(self.rcv_nxt, wnd)
            }
        };
        if !acceptable {
            if wnd == 0 && seq == self.rcv_nxt {
                // A zero window still takes ACKs, URGs and RSTs (RFC 9293 §3.10.7.4); the
                // text is not acceptable and draws an ACK.
                text_allowed = false;
                self.ack_now = true;
            } else {
                tracing::trace!(local = %self.local, remote = %self.remote, %seq, len = seg_len, rcv_nxt = %self.rcv_nxt, "segment outside the receive window");
                if !rst && !payload.is_empty() && seq + payload.len() <= self.rcv_nxt {
                    // Data received before: report the duplicate (RFC 2883 §4).
                    self.note_duplicate(seq, seq + payload.len());
                }
                if syn && !rst {
                    // RFC 5961 §4.2: a SYN, "irrespective of the sequence number", draws a
                    // (rate-limited) challenge ACK.
                    self.challenge_ack(now);
                } else if !rst && self.may_answer_out_of_window(now, seg_len) {
                    self.ack_now = true;
                    if self.state == State::TimeWait && fin {
                        // A repeated FIN: acknowledge it and restart the 2×MSL wait.
                        self.timers.time_wait = Some(now + self.cfg.time_wait);
                    }
                }
                if !self.stale_ack_advances(seg, seg_len, seq) {
                    return;
                }
                // Its acknowledgment is taken; nothing else of it.
                text_allowed = false;
                stale_ack = true;
            }
        }

        // Second: RST (RFC 5961 §3.2: exact match resets, in-window draws a challenge ACK).
        if rst {
            if seq != self.rcv_nxt {
                self.challenge_ack(now);
                return;
            }
            match self.state {
                // RFC 9293 §3.10.7.4: a passive open returns to LISTEN; the user is not told.
                State::SynReceived if self.passive && self.spawned => self.enter_closed(),
                State::SynReceived if self.passive => self.return_to_listen(),
                State::SynReceived => self.fail(Error::ConnectionRefused),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(Error::ConnectionReset)
                }
                _ => self.enter_closed(),
            }
            return;
        }

        // Fourth: a SYN in a synchronized state draws a challenge ACK (RFC 5961 §4.2).
        if syn {
            self.challenge_ack(now);
            return;
        }

        // Fifth: the ACK field.
        if !flags.contains(TcpFlags::ACK) {
            return;
        }
        let ack = SeqNum(seg.ack);
        if self.state == State::SynReceived {
            if self.snd_una < ack && ack <= self.snd_max {
                self.snd_una = ack;
                self.syn_rtt_sample(now);
                self.handshake_done();
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                self.establish(now);
            } else {
                self.reply = Some(Box::new(self.rst_reply(seg.ack)));
                return;
            }
        }
        // RFC 5961 §5.2: only (SND.UNA - MAX.SND.WND) <= SEG.ACK <= SND.NXT is acceptable;
        // an ACK for data never sent, or far older than any window we had, is discarded
        // and challenged.
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd.max(self.snd_mss) {
            self.challenge_ack(now);
            return;
        }
        // Record the timestamp to echo (RFC 7323 §4.3), only now that the segment passed
        // every check: a segment that is then dropped (a forged one, RFC 5961) must not move
        // TS.Recent, or a single blind guess with a huge TSval would make PAWS reject all of
        // the genuine peer's segments from then on. Nor does a segment left of the window,
        // taken for its acknowledgment only.
        if self.ts_ok && !stale_ack {
            if let Some((tsval, tsecr)) = seg.options.timestamps {
                if seq <= self.last_ack_sent && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                    self.ts_recent = tsval;
                }
                if !payload.is_empty() && text_allowed {
                    self.sample_recv_rtt(now, tsecr);
                }
            }
        }
        self.accepted = true;
        self.process_ack(now, seg, payload.len());
        if self.state == State::Closed {
            return;
        }
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => {
                    self.set_state(State::FinWait2);
                    self.arm_orphan_timeout(now);
                }
                State::Closing => self.enter_time_wait(now),
                State::LastAck => {
                    self.enter_closed();
                    return;
                }
                _ => {}
            }
        }

        // Sixth: the urgent pointer (RFC 6093: it points just past the urgent data).
        if flags.contains(TcpFlags::URG)
            && text_allowed
            && self.state.receives_data()
            && seg.urgent > 0
        {
            let up = seq + u32::from(seg.urgent);
            if self.rcv_up.is_none_or(|cur| up > cur) {
                self.rcv_up = Some(up);
            }
        }

        // Seventh and eighth: the text and the FIN.
        if self.state.receives_data() {
            let data = if text_allowed { payload } else { &[][..] };
            self.process_text(now, seq, (data, arrival), fin && text_allowed);
        }
        if self.cfg.keepalive.is_some() {
            self.probes_out = 0;
            self.arm_keepalive(now);
        }
    }

    /// Whether a pure ACK just left of the window still carries news to take: it acknowledges
    /// data beyond SND.UNA (RFC 5961 §5.2's bounds still apply later). A peer whose window we
    /// thought closed, and who took a probe or retransmission from us anyway, sends its pure
    /// ACKs at what it believes our window's edge, below our RCV.NXT; if both sides are in
    /// that state, each drops the other's ACKs and neither ever learns what arrived (found by
    /// `fuzz_engine`). As FreeBSD's `tcp_input` ("keep on processing for RST or ACK"), the
    /// acknowledgment of such a segment is processed — only a pure ACK, within a receive
    /// buffer's length below RCV.NXT, that moves SND.UNA forward — and its window under
    /// RFC 9293's SND.WL1/SND.WL2 rule; never text, FIN or urgent pointer.
    fn stale_ack_advances(&self, seg: &TcpRepr, seg_len: u32, seq: SeqNum) -> bool {
        let below = self.rcv_nxt - seq;
        seg_len == 0
            && self.state.is_synchronized()
            && seg.flags.contains(TcpFlags::ACK)
            && !seg
                .flags
                .intersects(TcpFlags::RST | TcpFlags::SYN | TcpFlags::FIN)
            && below > 0
            && (below as usize) <= self.recv_buf.capacity()
            && SeqNum(seg.ack) > self.snd_una
            && SeqNum(seg.ack) <= self.snd_max
    }

    /// Whether an out-of-window segment may be answered with an ACK now. Pure ACKs are
    /// answered at most once per [`OOW_ACK_INTERVAL`] (RFC 5961 §7, as Linux's
    /// `tcp_invalid_ratelimit`): two stacks that each find the other's ACKs outside their
    /// window would otherwise ACK each other forever. Segments with data, SYN or FIN are
    /// always answered.
    fn may_answer_out_of_window(&mut self, now: Instant, seg_len: u32) -> bool {
        seg_len > 0 || !self.oow_rate_limited(now)
    }

    /// RFC 5961 §7 (ACK throttling): whether an ACK answering a segment we did not accept
    /// must be held back because one was sent less than [`OOW_ACK_INTERVAL`] ago; if not,
    /// counts this one. The limit is per connection, as Linux's `tcp_oow_rate_limited`: a
    /// limit shared by every connection of the host would let an off-path attacker learn,
    /// by counting the challenge ACKs it draws, whether its guesses hit someone else's
    /// connection (CVE-2016-5696).
    fn oow_rate_limited(&mut self, now: Instant) -> bool {
        if self
            .last_oow_ack
            .is_some_and(|t| now.saturating_since(t) < OOW_ACK_INTERVAL)
        {
            return true;
        }
        self.last_oow_ack = Some(now);
        false
    }

    /// Answers a segment that may be a blind attacker's guess — a RST inside the window but
    /// not at RCV.NXT (RFC 5961 §3.2), a SYN on a synchronized connection (§4.2), an
    /// unacceptable ACK (§5.2) — with a challenge ACK `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`,
    /// rate-limited (§7). The genuine peer answers it with what it would have sent (an exact
    /// RST, a new SYN after its own RST); an attacker learns nothing it can use.
    fn challenge_ack(&mut self, now: Instant) {
        if self.oow_rate_limited(now) {
            self.stats.challenge_acks_skipped += 1;
            return;
        }
        self.stats.challenge_acks += 1;
        self.ack_now = true;
    }

    /// RFC 9293 §3.10.7.4 "seventh, process the segment text" and "eighth, check the FIN bit".
    fn process_text(
        &mut self,
        now: Instant,
        seq: SeqNum,
        (payload, arrival): (&[u8], Option<&Bytes>),
        fin: bool,
    ) {
        let mut seq = seq;
        let mut data = payload;
        let mut fin = fin;
        // Trim what was already received, and report it as a duplicate (RFC 2883 §4).
        if seq < self.rcv_nxt {
            let skip = (self.rcv_nxt - seq) as usize;
            if !data.is_empty() {
                self.note_duplicate(seq, seq + skip.min(data.len()));
            }
            if skip > data.len() {
                // Only an old FIN (already consumed) could remain.
                return;
            }
            data = &data[skip..];
            seq = self.rcv_nxt;
        }
        // Never accept bytes past the peer's FIN.
        if let Some(fin_at) = self.fin_seq_rcvd {
            let room = (fin_at - seq).max(0) as usize;
            if data.len() > room {
                data = &data[..room];
                fin = false;
            }
        }
        // Trim to the room in the buffer; a trimmed segment loses its FIN.
        let mut room = self.recv_buf.window();
        let offset = (seq - self.rcv_nxt) as usize;
        if self.memory_pressure {
            // The stack is short of memory (as Linux's `tcp_try_rmem_schedule` failing): no
            // out-of-order data is held and the storage does not grow; what does not fit is
            // dropped, acknowledged as missing, and sent again by the peer.
            room = if offset > 0 {
                0
            } else {
                room.min(self.recv_buf.room_without_growth())
            };
            if data.len() > room {
                self.ack_now = true;
                self.stats.pressure_drops += 1;
            }
        }
        if offset + data.len() > room {
            data = &data[..room.saturating_sub(offset).min(data.len())];
            fin = false;
        }

        if !data.is_empty() {
            if self.read_closed {
                // RFC 1122 §4.2.2.13: data for an application that closed is lost: reset.
                self.abort();
                return;
            }
            self.rcv_mss = self.rcv_mss.max(data.len() as u32);
            let had_gap = self.recv_buf.has_out_of_order();
            if had_gap {
                if let Some((l, r)) = self.recv_buf.held_overlap(offset, data.len()) {
                    // Out-of-order data received twice (RFC 2883 §4).
                    self.note_duplicate(self.rcv_nxt + l, self.rcv_nxt + r);
                }
            }
            // Short of memory, data is copied into storage already there: a piece would keep
            // a new arrival buffer alive (the datapath allocates another for its slot).
            let arrival = arrival.filter(|_| !self.memory_pressure);
            let ins = self
                .recv_buf
                .insert_shared(offset, data, arrival, self.cfg.max_out_of_order);
            if ins.dropped {
                // Too many holes held already: the sender resends this one later.
                self.stats.out_of_order_drops += 1;
            }
            if ins.advanced > 0 {
                self.rcv_nxt += ins.advanced;
                self.stats.bytes_received += ins.advanced as u64;
                self.sample_recv_rtt_by_window();
            }
            if offset > 0 {
                // Out of order: an immediate duplicate ACK drives the sender's loss
                // detection (RFC 5681 §4.2), with SACK blocks naming what arrived.
                self.note_sack_arrival(seq);
                self.ack_now = true;
                self.ack_urgent = true;
            } else if had_gap {
                // Filling a hole is acknowledged at once (RFC 5681 §4.2).
                self.ack_now = true;
                self.ack_urgent = true;
            } else {
                self.rcvd_since_ack += ins.advanced as u32;
                self.rcvd_since_sent = self.rcvd_since_sent.saturating_add(ins.advanced as u32);
                self.short_tail = data.len() < self.rcv_mss as usize;
                // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second full-sized
                // segment; otherwise within the delayed-ACK time.
                if self.cfg.delayed_ack.is_zero() || self.rcvd_since_ack >= 2 * self.rcv_mss {
                    self.ack_now = true;
                } else if self.timers.delayed_ack.is_none() {
                    self.timers.delayed_ack = Some(now + self.cfg.delayed_ack);
                }
            }
        }
        if fin && self.fin_seq_rcvd.is_none() {
            self.fin_seq_rcvd = Some(seq + data.len());
        }
        self.consume_fin(now);
    }

    /// A duplicate of `[left, right)` arrived: the next ACK reports it first (RFC 2883 §4),
    /// and goes at once (RFC 5681 §4.2).
    fn note_duplicate(&mut self, left: SeqNum, right: SeqNum) {
        if self.sack_ok && left < right {
            self.dsack = Some((left, right));
        }
        self.ack_now = true;
        self.ack_urgent = true;
    }

    /// An out-of-order segment starting at `seq` arrived: its block goes first in the next
    /// SACK option, the previously reported ones after it (RFC 2018 §4).
    fn note_sack_arrival(&mut self, seq: SeqNum) {
        let recent = &mut self.sack_recent;
        let at = recent
            .iter()
            .position(|r| *r == Some(seq))
            .unwrap_or(recent.len() - 1);
        recent.copy_within(0..at, 1);
        recent[0] = Some(seq);
    }

    /// Takes the peer's FIN once everything before it has arrived.
    fn consume_fin(&mut self, now: Instant) {
        if self.fin_rcvd || self.fin_seq_rcvd != Some(self.rcv_nxt) {
            return;
        }
        self.fin_rcvd = true;
        self.rcv_nxt += 1u32;
        self.ack_now = true;
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait),
            State::FinWait1 if self.fin_acked() => self.enter_time_wait(now),
            State::FinWait1 => self.set_state(State::Closing),
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        self.clear_timers();
        self.timers.time_wait = Some(now + self.cfg.time_wait);
    }

    /// A RST carrying `seq` and no ACK: the answer to an unacceptable ACK (RFC 9293 §3.10.7).
    pub(super) fn rst_reply(&self, seq: u32) -> TcpRepr {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            flags: TcpFlags::RST,
            ..TcpRepr::default()
        }
    }
}
