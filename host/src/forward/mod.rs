//! What leaves the agent: the finding records, one NDJSON line each ([`finding`]).

pub mod finding;
