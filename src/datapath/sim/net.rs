//! The simulated network's shared state: its hosts, each with an inbox of packets ordered
//! by arrival time, and the routing of a packet over a link to its destination host.

use super::*;

/// The network's state, behind one lock.
pub(super) struct Net {
    pub(super) rng: Rng,
    /// Orders packets due at the same instant: first sent, first delivered.
    pub(super) seq: u64,
    /// Indexed by host id; ids are never reused, removed hosts leave `None`.
    pub(super) hosts: Vec<Option<Host>>,
    pub(super) owners: HashMap<IpAddr, usize>,
    pub(super) paths: HashMap<(IpAddr, IpAddr), LinkConfig>,
    pub(super) default_link: LinkConfig,
    pub(super) loopback_link: LinkConfig,
    /// When the link from one host to another is free again (bandwidth-limited links only).
    pub(super) busy: HashMap<(usize, usize), Instant>,
    pub(super) stats: SimStats,
    /// Spent packet buffers, reused by `send`.
    pub(super) pool: Vec<Vec<u8>>,
}

impl Net {
    pub(super) fn host(&self, id: usize) -> Option<&Host> {
        self.hosts.get(id).and_then(Option::as_ref)
    }

    pub(super) fn host_mut(&mut self, id: usize) -> Option<&mut Host> {
        self.hosts.get_mut(id).and_then(Option::as_mut)
    }

    pub(super) fn snapshot(&self) -> SimStats {
        let mut stats = self.stats;
        stats.in_flight = self
            .hosts
            .iter()
            .flatten()
            .map(|h| h.inbox.len() as u64)
            .sum();
        stats
    }

    /// Sends one packet from host `from`, queueing it (and any duplicate) in the receiver's
    /// inbox; wakers of receivers whose next delivery moved earlier go to `wake`.
    pub(super) fn route(
        &mut self,
        from: usize,
        packet: &[u8],
        now: Instant,
        wake: &mut Vec<Waker>,
    ) {
        let len = packet.len();
        self.stats.sent += 1;
        self.stats.bytes_sent += len as u64;
        let Ok(view) = PacketView::new(packet) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let (src, dst, header_len) = (view.src(), view.dst(), view.header_len());
        let (to, config) = if dst.is_loopback() {
            (from, self.loopback_link)
        } else {
            match self.owners.get(&dst) {
                Some(&to) => {
                    let fallback = if to == from {
                        self.loopback_link
                    } else {
                        self.default_link
                    };
                    (to, self.paths.get(&(src, dst)).copied().unwrap_or(fallback))
                }
                None => {
                    self.stats.dropped_no_route += 1;
                    return;
                }
            }
        };
        if len > config.mtu {
            self.stats.dropped_mtu += 1;
            return;
        }
        let mut departs = now;
        if let Some(bandwidth) = config.bandwidth {
            let busy = self.busy.entry((from, to)).or_insert(now);
            let start = (*busy).max(now);
            if config
                .queue_limit
                .is_some_and(|limit| start.saturating_duration_since(now) > limit)
            {
                self.stats.dropped_queue += 1;
                return;
            }
            departs = later(start, transmission_time(len, bandwidth));
            *busy = departs;
        }
        if self.rng.chance(config.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(config.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = config
                .latency
                .saturating_add(self.rng.duration_upto(config.jitter));
            if self.rng.chance(config.reorder) {
                delay = delay.saturating_add(config.reorder_delay);
            }
            let at = later(departs, delay);
            let mut data = self.pool.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(packet);
            if self.rng.chance(config.corrupt) && flip_bit(&mut data, header_len, &mut self.rng) {
                self.stats.corrupted += 1;
            }
            self.seq += 1;
            let seq = self.seq;
            let Some(host) = self.hosts.get_mut(to).and_then(Option::as_mut) else {
                self.stats.dropped_no_route += 1;
                return;
            };
            let earlier = host.inbox.peek().is_none_or(|Reverse(head)| at < head.at);
            host.inbox.push(Reverse(Queued { at, seq, data }));
            if earlier {
                if let Some(w) = host.waker.take() {
                    wake.push(w);
                }
            }
        }
    }
}

/// One host's state.
pub(super) struct Host {
    pub(super) addrs: Vec<IpAddr>,
    /// Packets on their way here, earliest (then first sent) on top.
    pub(super) inbox: BinaryHeap<Reverse<Queued>>,
    /// The task that last found nothing due.
    pub(super) waker: Option<Waker>,
    /// Armed for the inbox's head while the receiver waits for it; `None` when the inbox is
    /// empty.
    pub(super) sleep: Option<Pin<Box<Sleep>>>,
    /// Claimed ports and the addresses claimed on each.
    pub(super) ports: PortClaims,
}

/// A packet in an inbox.
pub(super) struct Queued {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) data: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
