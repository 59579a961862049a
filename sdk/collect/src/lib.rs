//! Helpers shared by ward's first-party collectors: [`Reader`] reads Mac paths under the
//! configured `root` within a byte budget for everything one call returns, and [`rfc3339`]
//! turns event and property-list times into seconds since the epoch.

pub mod reader;
pub mod rfc3339;

pub use ward_sdk::config_u64;

pub use reader::{CHUNK, DEFAULT_MAX_TOTAL_BYTES, MAX_NOTES, Reader, json_artifact, summary_cost};
