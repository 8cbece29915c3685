//! ICMP errors on the UDP datapath: the kernel queues "port unreachable" with the datagram
//! that drew it, and the datapath answers the TCP segment inside with the RST a refused
//! connection would get (RFC 9293 §3.10.7.1), so a connect to a closed port fails at once.

use super::*;

/// Waits for the error readiness of a shared socket.
pub(super) type ErrorWait = Pin<Box<dyn Future<Output = io::Result<tokio::io::Ready>> + Send>>;

/// Asks the kernel to queue ICMP errors (port unreachable) on `sock` with the datagram that
/// drew them (`IP_RECVERR` / `IPV6_RECVERR`).
pub(super) fn report_icmp_errors(sock: Socket) -> io::Result<Socket> {
    let r = match sock.local_addr()?.as_socket() {
        Some(SocketAddr::V6(_)) => setsockopt(&sock, sockopt::Ipv6RecvErr, &true),
        _ => setsockopt(&sock, sockopt::Ipv4RecvErr, &true),
    };
    r.map_err(io::Error::from)?;
    Ok(sock)
}

/// Reads one entry of `sock`'s error queue into `buf`: its length, and whether it was a
/// "connection refused" (port unreachable).
pub(super) fn read_error_queue(sock: &RecvSocket, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut refused = false;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) = c {
            refused |= e.ee_errno == nix::libc::ECONNREFUSED as u32;
        }
    }
    Ok((msg.bytes, refused))
}

/// The RST answering the TCP segment in `original` (an IP packet, perhaps cut short after its
/// headers), written into `slot`; its length, or `None` if `original` is not TCP over IP.
pub(super) fn refusal_reset(original: &[u8], slot: &mut [u8]) -> Option<usize> {
    let view = PacketView::new(original).ok()?;
    let t = view.tcp()?;
    let seg = TcpRepr {
        src_port: t.src_port(),
        dst_port: t.dst_port(),
        seq: t.seq(),
        ack: t.ack(),
        flags: t.flags(),
        ..TcpRepr::default()
    };
    let payload_len = view
        .declared_len()
        .saturating_sub(view.header_len() + t.header_len());
    let rst = crate::proto::reset_for(&seg, payload_len)?;
    emit_tcp_packet(view.dst(), view.src(), 64, &rst, &[], slot).ok()
}
