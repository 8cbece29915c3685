//! Listeners of a stack split into shards (see `StackBuilder::shards`): one UDP socket per
//! shard at the listener's address, joined in one `SO_REUSEPORT` group, with a classic BPF
//! program that makes the kernel hand each datagram to the socket of the shard that owns its
//! TCP connection.
//!
//! # Steering
//!
//! The program reads the TCP ports of the IP packet a datagram carries (for a reuseport
//! group the kernel runs it with the UDP payload at offset 0) and returns
//! [`shard_of`](crate::datapath::shard_of)`(source port, destination port)`, the index of a
//! socket in the group. Indices follow the order sockets joined the group, so the sockets of
//! an address are opened together, shard 0 first, and closed together: a [`Group`] keeps
//! every member open until the last shard lets the address go. A shard that let go while
//! others still use the address stops reading its socket: a SYN steered there meanwhile is
//! not answered (the peer's next SYN may be), where a lone listener would answer it with a
//! RST.
//!
//! A connection's segments all carry the same two ports, so they all reach one shard. An
//! outgoing connection needs no steering here: its packets leave through its shard's own
//! shared socket, and the peer answers there.
//!
//! A group is opened only at an address nobody holds (its first socket is bound there plain,
//! and joins `SO_REUSEPORT` only then), so a second sharded stack gets `AddrInUse` as any
//! other would, and port 0 never lands on another group's port. A process of
//! the same user that joins the group later with `SO_REUSEPORT` of its own gets sockets
//! after this stack's, which are never chosen: it receives nothing and takes nothing away.

use super::{bound_port, context, open, register, SOCKET_BUFFER};
use crate::datapath::registered::RecvSocket;
use crate::datapath::steering_ops;
use socket2::Socket;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// One datapath's place among its stack's shards.
#[derive(Clone)]
pub(super) struct Member {
    /// This shard's index.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
    /// The listener groups all the shards share.
    pub groups: Arc<Groups>,
}

/// The listener addresses of a set of sharded datapaths, each with its group of sockets.
#[derive(Default)]
pub(super) struct Groups {
    by_addr: Mutex<HashMap<(IpAddr, u16), Group>>,
}

/// The sockets at one listener address, one per shard, in the order they joined.
struct Group {
    sockets: Vec<Slot>,
    /// Which shards hold the address now.
    held: Vec<bool>,
}

/// A shard's socket of a group: opened, or already handed to its shard's runtime.
enum Slot {
    Opened(Socket),
    Registered(Arc<RecvSocket>),
    /// Between the two (only while its registration is under way, under the lock).
    Taken,
}

impl Member {
    /// Claims `local` (port 0: a port the kernel chooses) for this shard: its socket of the
    /// group at that address, which is opened (every shard's socket, steering program
    /// attached) by the first shard to claim it. Must be called inside this shard's runtime,
    /// which the socket is registered with. `AddrInUse` if this shard holds it already or
    /// another owner holds the port.
    pub fn claim(&self, local: SocketAddr) -> io::Result<(SocketAddr, Arc<RecvSocket>)> {
        let mut groups = self
            .groups
            .by_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (local.ip(), local.port());
        let key = match groups.get(&key) {
            Some(_) if local.port() != 0 => key,
            _ => {
                let (port, group) = self.open_group(local)?;
                let key = (local.ip(), port);
                groups.insert(key, group);
                key
            }
        };
        let Some(group) = groups.get_mut(&key) else {
            return Err(io::ErrorKind::AddrInUse.into());
        };
        let i = self.index;
        if group.held[i] {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let sock = match std::mem::replace(&mut group.sockets[i], Slot::Taken) {
            Slot::Opened(s) => match register(s) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    if !group.held.iter().any(|h| *h) {
                        groups.remove(&key);
                    }
                    return Err(context(e, &format!("udp datapath: listener at {local}")));
                }
            },
            Slot::Registered(s) => s,
            Slot::Taken => return Err(io::ErrorKind::AddrInUse.into()),
        };
        group.sockets[i] = Slot::Registered(Arc::clone(&sock));
        group.held[i] = true;
        Ok((SocketAddr::new(key.0, key.1), sock))
    }

    /// Lets go of `local` for this shard; the group's sockets close when no shard holds it.
    /// Returns whether `local` was a group's address.
    pub fn release(&self, local: SocketAddr) -> bool {
        let mut groups = self
            .groups
            .by_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (local.ip(), local.port());
        let Some(group) = groups.get_mut(&key) else {
            return false;
        };
        group.held[self.index] = false;
        if !group.held.iter().any(|h| *h) {
            groups.remove(&key);
        }
        true
    }

    /// Opens every shard's socket at `local`, shard 0's first (its port, when `local` asks
    /// for port 0, is everyone's), and attaches the steering program.
    ///
    /// Shard 0's socket is bound without `SO_REUSEPORT`, which is set on it only once it is
    /// bound; the others join it at its port. Bound plain, it fails with `AddrInUse` where
    /// anyone holds the address, and port 0 gets a port nobody holds. Bound with
    /// `SO_REUSEPORT` from the start, port 0 could get the port of another group of the same
    /// user (the kernel's search for a free port passes over the sockets a reuseport socket
    /// could join): the two groups became one, and each stack's steering program sent
    /// segments to the other's sockets. Seen as `AddrInUse` from the next shard's bind and as
    /// RSTs between two sharded stacks of one process (`tests/shards.rs`).
    fn open_group(&self, local: SocketAddr) -> io::Result<(u16, Group)> {
        let what = |e| context(e, &format!("udp datapath: listener at {local}"));
        let first = open(local, SOCKET_BUFFER, false).map_err(what)?;
        first.set_reuse_port(true).map_err(what)?;
        let port = bound_port(&first)?;
        let mut sockets = vec![first];
        for _ in 1..self.count {
            let s = open(SocketAddr::new(local.ip(), port), SOCKET_BUFFER, true).map_err(what)?;
            sockets.push(s);
        }
        // The group exists once a second socket joined (the kernel then gives shard 0's
        // socket its group too), so the program goes on through the last one. A lone socket
        // receives everything anyway.
        if let Some(last) = sockets.last().filter(|_| self.count > 1) {
            steer(last, self.count).map_err(|e| {
                context(
                    e,
                    "udp datapath: cannot attach the shard steering program (SO_ATTACH_REUSEPORT_CBPF)",
                )
            })?;
        }
        Ok((
            port,
            Group {
                sockets: sockets.into_iter().map(Slot::Opened).collect(),
                held: vec![false; self.count],
            },
        ))
    }
}

/// Attaches to `sock`'s reuseport group a classic BPF program returning, for a datagram
/// carrying an IPv4 or IPv6 packet, [`shard_of`](crate::datapath::shard_of) of the ports in
/// the TCP header inside.
fn steer(sock: &Socket, count: usize) -> io::Result<()> {
    use nix::libc::{sock_filter, sock_fprog};
    use nix::sys::socket::{setsockopt, sockopt};
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND
    const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (P[k] & 0xf)
    const ST: u16 = 0x02; // BPF_ST: M[k] = A
    const LDX_MEM: u16 = 0x61; // BPF_LDX | BPF_W | BPF_MEM: X = M[k]
    const TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
    const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const RET_A: u16 = 0x16; // BPF_RET | BPF_A
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let mut program = vec![
        // The IP version: 4 goes on, anything else is taken for 6.
        op(LD_B_ABS, 0, 0, 0),
        op(RSH_K, 0, 0, 4),
        op(JEQ_K, 0, 6, 4),
        // IPv4: the TCP header follows the 4 × IHL bytes of the IP header.
        op(LDX_B_MSH, 0, 0, 0),
        op(LD_H_IND, 0, 0, 0),
        op(ST, 0, 0, 0),
        op(LD_H_IND, 0, 0, 2),
        op(LDX_MEM, 0, 0, 0),
        op(JA, 0, 0, 3),
        // IPv6: the TCP header follows the fixed 40-byte header.
        op(LD_H_ABS, 0, 0, 40),
        op(TAX, 0, 0, 0),
        op(LD_H_ABS, 0, 0, 42),
    ];
    // Both: the shard of the two ports, returned as the socket's index.
    program.extend(steering_ops(count).map(|(code, k)| op(code, 0, 0, k)));
    program.push(op(RET_A, 0, 0, 0));
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // The kernel copies the program during the call.
    setsockopt(sock, sockopt::AttachReusePortCbpf, &fprog).map_err(io::Error::from)
}
