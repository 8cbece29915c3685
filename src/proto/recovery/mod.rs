//! Loss detection and recovery bookkeeping for the sending side of a connection, each
//! mechanism in its own file with its RFC:
//!
//! - [`sent`]: every segment in flight with its send time and SACK/lost/retransmitted state
//!   — the scoreboard and `pipe` of RFC 6675, and the per-segment transmit times RACK needs;
//! - [`rack`]: RACK-TLP (RFC 8985), time-based loss marking with an adaptive reordering
//!   window, and tail loss probes;
//! - [`prr`]: Proportional Rate Reduction (RFC 6937), the sending rate during fast recovery;
//! - [`rate`]: delivery-rate samples and packet-timed rounds
//!   (draft-cheng-iccrg-delivery-rate-estimation) for the congestion controllers.
//!
//! The connection (`connection/ack.rs`) ties them together: which ACK marks what, when
//! recovery starts and ends, what is retransmitted next and how spurious responses are undone
//! (RFC 3522, RFC 3708 with DSACK, RFC 2883).

pub mod prr;
pub mod rack;
pub mod rate;
pub mod sent;

pub use prr::Prr;
pub use rack::{ProbeOutcome, Rack, Tlp};
pub use rate::RateEstimator;
pub use sent::{Delivered, Sent, SentQueue, TxState};
