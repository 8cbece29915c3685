//! Port claims for the datapaths that own their addresses outright (the simulated network and
//! TUN): which addresses hold each port under the kernel's bind rules, and the search for a
//! free ephemeral port. The UDP and raw datapaths leave both to the kernel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// The first port handed out for port 0 (IANA dynamic range, RFC 6335 §6).
pub(crate) const EPHEMERAL_FIRST: u16 = 49152;
/// How many ephemeral ports there are (49152..=65535).
pub(crate) const EPHEMERAL_COUNT: u16 = 16384;

/// The claimed ports of one host: which addresses hold each port.
#[derive(Debug)]
pub(crate) struct PortClaims {
    bound: HashMap<u16, Vec<IpAddr>>,
    /// Where the search for a free ephemeral port starts.
    next: u16,
}

impl PortClaims {
    /// No claims; the ephemeral search starts `offset` ports into the range (a random start,
    /// RFC 6056 §3.3.1, makes the next port hard to guess).
    pub(crate) fn new(offset: u16) -> PortClaims {
        PortClaims {
            bound: HashMap::new(),
            next: EPHEMERAL_FIRST + offset % EPHEMERAL_COUNT,
        }
    }

    /// Whether `ip:port` clashes with a claim as the kernel's bind rules see it: the same
    /// family, and the same address or either unspecified.
    pub(crate) fn conflicts(&self, ip: IpAddr, port: u16) -> bool {
        self.bound.get(&port).is_some_and(|ips| {
            ips.iter().any(|&b| {
                b.is_ipv4() == ip.is_ipv4()
                    && (b == ip || b.is_unspecified() || ip.is_unspecified())
            })
        })
    }

    /// Claims `local`, or the next free ephemeral port on its address when its port is 0.
    /// `None` when the port is taken or no ephemeral port is left.
    pub(crate) fn claim(&mut self, local: SocketAddr) -> Option<SocketAddr> {
        let ip = local.ip();
        if local.port() != 0 {
            if self.conflicts(ip, local.port()) {
                return None;
            }
            self.bound.entry(local.port()).or_default().push(ip);
            return Some(local);
        }
        for _ in 0..EPHEMERAL_COUNT {
            let port = self.next;
            self.next = port.checked_add(1).unwrap_or(EPHEMERAL_FIRST);
            if !self.conflicts(ip, port) {
                self.bound.entry(port).or_default().push(ip);
                let mut claimed = local;
                claimed.set_port(port);
                return Some(claimed);
            }
        }
        None
    }

    /// Gives back a claim made by [`claim`](PortClaims::claim); unknown addresses are ignored.
    pub(crate) fn release(&mut self, local: SocketAddr) {
        if let Some(ips) = self.bound.get_mut(&local.port()) {
            if let Some(i) = ips.iter().position(|&ip| ip == local.ip()) {
                ips.swap_remove(i);
            }
            if ips.is_empty() {
                self.bound.remove(&local.port());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn follows_the_kernels_bind_rules() {
        let mut p = PortClaims::new(0);
        assert_eq!(p.claim(addr("10.77.0.2:80")), Some(addr("10.77.0.2:80")));
        assert_eq!(p.claim(addr("10.77.0.2:80")), None, "same address");
        assert_eq!(
            p.claim(addr("0.0.0.0:80")),
            None,
            "wildcard over a specific claim"
        );
        assert_eq!(p.claim(addr("10.77.0.3:80")), Some(addr("10.77.0.3:80")));
        // The other family does not clash.
        assert_eq!(p.claim(addr("[::]:80")), Some(addr("[::]:80")));
        assert_eq!(
            p.claim(addr("[fd77::2]:80")),
            None,
            "specific under a wildcard"
        );
        assert_eq!(p.claim(addr("0.0.0.0:443")), Some(addr("0.0.0.0:443")));
        assert_eq!(
            p.claim(addr("10.77.0.2:443")),
            None,
            "specific under a wildcard"
        );
        p.release(addr("10.77.0.2:80"));
        p.release(addr("10.77.0.3:80"));
        p.release(addr("[::]:80"));
        p.release(addr("10.0.0.9:80")); // never claimed: ignored
        assert_eq!(p.claim(addr("0.0.0.0:80")), Some(addr("0.0.0.0:80")));
        assert!(p.conflicts("10.77.0.3".parse().unwrap(), 80));
    }

    #[test]
    fn hands_out_every_ephemeral_port_once_then_none() {
        let mut p = PortClaims::new(100);
        let first = p.claim(addr("10.77.0.2:0")).unwrap();
        assert_eq!(first.port(), EPHEMERAL_FIRST + 100);
        let mut seen = std::collections::HashSet::from([first.port()]);
        for _ in 1..EPHEMERAL_COUNT {
            let got = p.claim(addr("10.77.0.2:0")).unwrap();
            assert!(got.port() >= EPHEMERAL_FIRST);
            assert!(seen.insert(got.port()), "{got} handed out twice");
        }
        assert_eq!(p.claim(addr("10.77.0.2:0")), None);
        assert_eq!(p.claim(addr("0.0.0.0:0")), None);
        assert!(
            p.claim(addr("[fd77::2]:0")).is_some(),
            "the other family has its own"
        );
        p.release(addr("10.77.0.2:50000"));
        assert_eq!(p.claim(addr("10.77.0.2:0")), Some(addr("10.77.0.2:50000")));
    }
}
