//! rawtcp: TCP in user space.

pub mod proto;
pub mod wire;
