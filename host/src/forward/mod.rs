//! What leaves the agent: the finding records, one NDJSON line each ([`finding`]), committed
//! to the [`outbox`] and delivered from there by the [`sink`]s in a [`format`] each.

pub mod bridge;
pub mod finding;
pub mod format;
pub mod outbox;
pub mod sink;
