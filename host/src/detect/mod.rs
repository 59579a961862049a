//! The detection stage: events batched (by count and bytes) and routed to the detectors
//! that subscribed ([`router`]), faults split and retried ([`pipeline`]), and AUTH events
//! answered apart from the bulk stream ([`auth_lane`], under the policy of [`auth`]).

pub mod auth;
pub mod auth_lane;
pub mod pipeline;
pub mod router;
pub mod run;
pub mod swap;
