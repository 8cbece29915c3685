//! Connections made outside the ordinary open and close: from a SYN cookie (RFC 4987 §3.6),
//! the passive open replayed from what the cookie ACK gives back with no state kept in
//! between; and the stand-in for a connection whose engine panicked, with the RST that tells
//! its peer.

use super::{Config, Connection, Instant, SeqNum, State};
use crate::proto::syncookie::{Cookie, SynCookies};
use crate::wire::TcpRepr;
use std::net::SocketAddr;

impl Connection {
    /// The SYN+ACK a listener sends for `syn` instead of keeping it in its SYN queue: what a
    /// passive open from [`SynCookies::clamp`]`(syn)` would send, with `iss` (a cookie from
    /// [`SynCookies::make`]) as its ISN and, when timestamps are on, the options folded into
    /// its TSval ([`SynCookies::timestamp`]). `None` if `syn` does not open a connection.
    ///
    /// Nothing is kept: the connection that built it is dropped.
    pub fn cookie_syn_ack(
        cfg: Config,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpRepr,
        iss: SeqNum,
        now: Instant,
    ) -> Option<TcpRepr> {
        let clamped = SynCookies::clamp(syn);
        let mut c = Connection::accept(cfg, local, remote, &clamped, iss, now)?;
        let mut scratch = [0u8; 0];
        let mut syn_ack = c.poll_transmit(now, &mut scratch)?.repr;
        if let Some((tsval, tsecr)) = syn_ack.options.timestamps {
            syn_ack.options.timestamps = Some((SynCookies::timestamp(&clamped, tsval), tsecr));
        }
        Some(syn_ack)
    }

    /// The connection a valid cookie ACK completes: SYN-RECEIVED rebuilt from `cookie`, with
    /// the SYN+ACK counted as sent, then `ack` (and any `payload` it carries) processed as
    /// the handshake's third segment. `None` if the rebuilt connection does not accept the
    /// ACK (it then has nothing to say: the caller answers as for an unknown connection).
    ///
    /// The handshake gives no round-trip sample: the SYN+ACK was sent before any state
    /// existed, so its send time is unknown (as for a retransmitted segment, RFC 6298 §3).
    ///
    /// The SYN+ACK that carried the cookie must have been built from the same `cfg` and
    /// from the SYN as [`SynCookies::clamp`] leaves it (as
    /// [`cookie_syn_ack`](Connection::cookie_syn_ack) builds it), so that both ends agree on
    /// the options in use.
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

impl Connection {
    /// A connection standing in for one whose engine panicked mid-update and can no longer
    /// be trusted: CLOSED, with [`Error::ConnectionAborted`](super::Error::ConnectionAborted)
    /// for whoever holds it, nothing to send and no timer, so a driver can keep serving the
    /// application's handle until it lets go.
    pub fn aborted(cfg: Config, local: SocketAddr, remote: SocketAddr) -> Connection {
        // CLOSED arms no timer, so the time it was made at never matters.
        let mut c = Connection::new(cfg, local, remote, SeqNum(0), Instant::ZERO);
        c.error = Some(super::Error::ConnectionAborted);
        c
    }

    /// `<SEQ=SND.NXT><CTL=RST>` (RFC 9293 §3.10.7.3), telling the peer this connection is
    /// gone; `None` before the handshake completed. Built from plain fields, with no state
    /// machine involved, so it can be asked of a connection whose engine panicked.
    pub fn reset_segment(&self) -> Option<TcpRepr> {
        self.state
            .is_synchronized()
            .then(|| self.rst_reply(self.snd_nxt.0))
    }
}
