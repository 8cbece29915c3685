//! Proportional Rate Reduction (RFC 6937): how much may be sent during fast recovery, so
//! that the flight comes down to ssthresh smoothly — sending in proportion to what is
//! delivered while the flight exceeds ssthresh, and slow-starting back up to it (the
//! Slow Start Reduction Bound) when losses took it below.

/// PRR's state for one recovery episode (RFC 6937 §3).
#[derive(Debug, Clone, Copy, Default)]
pub struct Prr {
    /// `prr_delivered`: bytes delivered since recovery began.
    delivered: u64,
    /// `prr_out`: bytes sent since recovery began.
    out: u64,
    /// `RecoverFS`: the flight when recovery began.
    recover_fs: u32,
}

impl Prr {
    /// Recovery begins with `flight` bytes outstanding (RFC 6937 §3 initialization).
    pub fn start(flight: u32) -> Prr {
        Prr {
            delivered: 0,
            out: 0,
            recover_fs: flight.max(1),
        }
    }

    /// Bytes were sent (new data or retransmissions).
    pub fn on_sent(&mut self, bytes: u32) {
        self.out += u64::from(bytes);
    }

    /// RFC 6937 §3 "on every ACK during recovery": `delivered` bytes were newly delivered,
    /// leaving `pipe` in flight. Returns `sndcnt`, the bytes that may be sent now. `force`
    /// asks for at least one segment when nothing was sent yet in this recovery and a loss is
    /// known (the fast retransmit itself, as RFC 6937's successor and Linux ensure).
    pub fn on_ack(
        &mut self,
        delivered: u32,
        pipe: u32,
        ssthresh: u32,
        mss: u32,
        force: bool,
    ) -> u32 {
        self.delivered += u64::from(delivered);
        let sndcnt = if pipe > ssthresh {
            // Proportional: sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out.
            let allowed = (u128::from(self.delivered) * u128::from(ssthresh))
                .div_ceil(u128::from(self.recover_fs));
            allowed
                .saturating_sub(u128::from(self.out))
                .min(u128::from(u32::MAX)) as u32
        } else {
            // PRR-SSRB: limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS.
            let limit = self
                .delivered
                .saturating_sub(self.out)
                .max(u64::from(delivered))
                .saturating_add(u64::from(mss));
            (ssthresh - pipe).min(limit.min(u64::from(u32::MAX)) as u32)
        };
        if force && self.out == 0 {
            sndcnt.max(mss)
        } else {
            sndcnt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6937 Appendix/§4 example: 20 segments in flight, one lost, ssthresh 10: PRR sends
    /// one segment for every two delivered.
    #[test]
    fn proportional_part_sends_half_while_above_ssthresh() {
        let mss = 1000;
        let mut prr = Prr::start(20 * mss);
        let mut sent = 0;
        let mut pipe = 19 * mss; // the lost segment left the pipe
        for i in 0..19 {
            let sndcnt = prr.on_ack(mss, pipe - mss, 10 * mss, mss, i == 0);
            pipe -= mss;
            let n = sndcnt / mss;
            prr.on_sent(n * mss);
            pipe += n * mss;
            sent += n;
        }
        // Nineteen deliveries allow ceil(19 * 10 / 20) = 10 segments.
        assert_eq!(sent, 10);
        assert_eq!(pipe, 10 * mss, "the flight ends at ssthresh");
    }

    #[test]
    fn slow_start_reduction_bound_below_ssthresh() {
        let mss = 1000;
        let mut prr = Prr::start(20 * mss);
        // Heavy loss: the pipe is already far below ssthresh.
        let sndcnt = prr.on_ack(mss, 3 * mss, 10 * mss, mss, true);
        assert_eq!(sndcnt, 2 * mss, "MAX(delivered - out, delivered) + MSS");
        prr.on_sent(2 * mss);
        let sndcnt = prr.on_ack(mss, 4 * mss, 10 * mss, mss, true);
        assert_eq!(
            sndcnt,
            2 * mss,
            "forcing applies only before anything was sent"
        );
        // Never above ssthresh.
        assert_eq!(prr.on_ack(50 * mss, 9 * mss, 10 * mss, mss, false), mss);
    }

    #[test]
    fn the_first_ack_always_allows_the_fast_retransmit() {
        let mss = 1000;
        let mut prr = Prr::start(100 * mss);
        assert_eq!(prr.on_ack(0, 99 * mss, 50 * mss, mss, true), mss);
        assert_eq!(prr.on_ack(0, 99 * mss, 50 * mss, mss, false), 0);
    }
}
