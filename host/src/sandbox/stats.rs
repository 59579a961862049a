//! What is counted of each plugin: calls, events, results, faults by kind, time (with a
//! histogram of nanoseconds per event), memory high-water mark, verdict deadlines missed.
//! Kept by the thread that calls the plugin and published as snapshots for the control
//! socket and the metrics endpoint.

use std::time::Duration;

use serde::Serialize;

/// Buckets of [`Histogram`]: bucket `i` holds values in `[2^(i/2), 2^((i+1)/2))` ns
/// (half powers of two, so quantiles are within a factor of about 1.41).
const BUCKETS: usize = 96;

/// A histogram of nanoseconds on half-powers-of-two buckets: constant size, O(1) to
/// record, quantiles within a factor of √2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
    max: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    fn bucket(ns: u64) -> usize {
        if ns < 2 {
            return 0;
        }
        let log2 = 63 - u64::from(ns.leading_zeros());
        // The half step: is `ns` past 2^log2 * √2 (≈ 1.414)?
        let base = u128::from(1u64 << log2);
        let half = u64::from(u128::from(ns) > base + base * 53 / 128);
        usize::try_from(log2 * 2 + half)
            .unwrap_or(BUCKETS - 1)
            .min(BUCKETS - 1)
    }

    fn upper(bucket: usize) -> u64 {
        // The top of bucket `b` is 2^((b+1)/2).
        let b = bucket as u64 + 1;
        let base = 1u64
            .checked_shl(u32::try_from(b / 2).unwrap_or(63))
            .unwrap_or(u64::MAX);
        if b % 2 == 1 {
            base.saturating_add(base / 128 * 53)
        } else {
            base
        }
    }

    /// Records `n` values of `ns` each.
    pub fn record_n(&mut self, ns: u64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.counts.get_mut(Self::bucket(ns)) {
            *c = c.saturating_add(n);
        }
        self.total = self.total.saturating_add(n);
        self.max = self.max.max(ns);
        self.sum = self.sum.saturating_add(ns.saturating_mul(n));
    }

    /// The sum of the values recorded (saturating).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// An upper bound of the `q` quantile (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    /// Adds `other` to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total = self.total.saturating_add(other.total);
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("count", &self.total)?;
        m.serialize_entry("p50_ns", &self.quantile(0.5))?;
        m.serialize_entry("p99_ns", &self.quantile(0.99))?;
        m.serialize_entry("max_ns", &self.max)?;
        m.end()
    }
}

/// Counters per plugin.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PluginStats {
    /// Export calls made (retries of split batches included).
    pub calls: u64,
    /// Events delivered.
    pub events: u64,
    /// Results (findings, artifacts, actions) accepted.
    pub results: u64,
    /// `err(plugin-error)` returns.
    pub plugin_errors: u64,
    /// Guest faults blamed on the plugin.
    pub faults: u64,
    /// Of those, timeouts.
    pub timeouts: u64,
    /// Of those, traps (panics, aborts, stack overflows).
    pub traps: u64,
    /// Of those, memory-limit hits.
    pub memory_limits: u64,
    /// Faults on a batch that was then split and retried (not blamed).
    pub retried: u64,
    /// Fresh instances created.
    pub instantiations: u64,
    /// Times the plugin was quarantined.
    pub quarantines: u64,
    /// Times a quarantine ended and the plugin was called again.
    pub releases: u64,
    /// Strings of its results cut to the field cap.
    pub fields_cut: u64,
    /// AUTH verdicts it did not give in time (late, timed out, no time left, busy).
    pub deadlines_missed: u64,
    /// Largest linear memory any of its instances asked for, bytes.
    pub memory_high_water: usize,
    /// Wall time spent inside the plugin's calls (instantiation included).
    #[serde(serialize_with = "micros")]
    pub busy: Duration,
    /// Nanoseconds per event, one sample per call (`on-events`: the call's time over its
    /// events; `authorize`: the call's time).
    pub ns_per_event: Histogram,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl PluginStats {
    /// Adds `other` (another lane's counters for the same plugin).
    pub fn add(&mut self, other: &PluginStats) {
        self.calls += other.calls;
        self.events += other.events;
        self.results += other.results;
        self.plugin_errors += other.plugin_errors;
        self.faults += other.faults;
        self.timeouts += other.timeouts;
        self.traps += other.traps;
        self.memory_limits += other.memory_limits;
        self.retried += other.retried;
        self.instantiations += other.instantiations;
        self.quarantines += other.quarantines;
        self.releases += other.releases;
        self.fields_cut += other.fields_cut;
        self.deadlines_missed += other.deadlines_missed;
        self.memory_high_water = self.memory_high_water.max(other.memory_high_water);
        self.busy += other.busy;
        self.ns_per_event.merge(&other.ns_per_event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_half_power_of_two() {
        let mut h = Histogram::default();
        for ns in 1..=10_000u64 {
            h.record_n(ns, 1);
        }
        let p50 = h.quantile(0.5);
        assert!((5_000..=7_072).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((9_900..=10_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.count(), 10_000);
        let mut other = Histogram::default();
        other.record_n(u64::MAX, 3);
        h.merge(&other);
        assert_eq!((h.count(), h.max()), (10_003, u64::MAX));
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
