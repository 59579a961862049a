//! Operating a running agent: the control socket `ward ctl` talks to, and the metrics
//! endpoint a Prometheus scraper reads.

pub mod control;
pub mod fleet;
pub mod metrics;
