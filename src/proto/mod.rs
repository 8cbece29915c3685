//! The sans-IO TCP engine: one connection's state machine, its buffers, RTT estimation,
//! loss detection and recovery, and congestion control; and the [`Endpoint`] above the
//! connections (demultiplexing, listen backlog, TIME-WAIT reuse, RSTs for strangers).
//!
//! Nothing here performs I/O or reads a clock. Segments come in as parsed
//! [`TcpRepr`](crate::wire::TcpRepr)s with their payload, time comes in as an [`Instant`], and
//! the engine hands back segments to transmit and the next deadline. The runtime drives it;
//! tests drive it by hand with fixed ISNs and virtual time.

pub mod cc;
mod config;
mod connection;
pub mod endpoint;
mod error;
mod info;
mod isn;
pub mod recovery;
pub mod recv;
pub mod rtt;
pub mod send;
mod seq;
pub mod syncookie;
mod time;

pub use config::{Config, Keepalive};
pub use connection::{
    Connection, RetransmitCause, Sample, SegmentKind, SharedPayload, State, Transmit,
};
pub use endpoint::{reset_for, Endpoint};
pub use error::Error;
pub use info::TcpInfo;
pub use isn::IsnGenerator;
pub use seq::SeqNum;
pub use time::Instant;
