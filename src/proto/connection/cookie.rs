//! Opening a connection from a SYN cookie (RFC 4987 §3.6): the passive open replayed from
//! what the cookie ACK gives back, with no state kept in between.

use super::{Config, Connection, Instant, State};
use crate::proto::syncookie::Cookie;
use crate::wire::TcpRepr;
use std::net::SocketAddr;

impl Connection {
    /// The connection a valid cookie ACK completes: SYN-RECEIVED rebuilt from `cookie`, with
    /// the SYN+ACK counted as sent, then `ack` (and any `payload` it carries) processed as
    /// the handshake's third segment. `None` if the rebuilt connection does not accept the
    /// ACK (it then has nothing to say: the caller answers as for an unknown connection).
    ///
    /// The handshake gives no round-trip sample: the SYN+ACK was sent before any state
    /// existed, so its send time is unknown (as for a retransmitted segment, RFC 6298 §3).
    ///
    /// The SYN+ACK that carried the cookie must have been built from the same `cfg` and
    /// from the SYN as [`SynCookies::clamp`](crate::proto::syncookie::SynCookies::clamp)
    /// leaves it, so that both ends agree on the options in use.
    pub fn accept_cookie(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        cookie: &Cookie,
        ack: &TcpRepr,
        payload: &[u8],
        now: Instant,
    ) -> Option<Connection> {
        let syn = cookie.syn(ack);
        let mut c = Connection::accept(cfg, local, remote, &syn, cookie.iss, now)?;
        // The SYN+ACK went out with the cookie; here it is only counted as sent.
        let mut scratch = [0u8; 0];
        c.poll_transmit(now, &mut scratch)?;
        c.syn_sent_at = None;
        c.on_segment(now, ack, payload);
        matches!(
            c.state,
            State::Established | State::CloseWait | State::FinWait1
        )
        .then_some(c)
    }
}
