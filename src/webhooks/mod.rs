//! Webhooks in: one module per sender. Each verifies over the raw bytes, in constant time,
//! before anything is parsed or stored.

pub mod intake;
pub mod receive;
pub mod replay;
pub mod slack_signature;
