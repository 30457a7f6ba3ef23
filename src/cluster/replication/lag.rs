//! Replication lag as a histogram: for each acknowledged REPL_CHANGES frame, the time from
//! the commit of its oldest change on the primary to the backup's acknowledgement. Fixed
//! bucket bounds (Prometheus style), so histograms of cores and streams add up.

/// Upper bounds of the buckets, in microseconds; one more bucket holds everything above.
pub const BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LagHistogram {
    /// Samples per bucket (not cumulative); the last bucket is above every bound.
    pub counts: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl LagHistogram {
    pub fn record(&mut self, us: u64) {
        let i = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn merge(&mut self, other: &LagHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (µs) of the bucket that holds quantile `q` (0..=1): the lag is at
    /// most this for a fraction `q` of the samples. `None` without samples; `u64::MAX`
    /// above the last bound.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BOUNDS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds_and_histograms_add_up() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile_bound_us(0.99), None);
        for _ in 0..98 {
            h.record(80);
        }
        h.record(3_000);
        h.record(9_000_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_bound_us(0.5), Some(100));
        assert_eq!(h.quantile_bound_us(0.98), Some(100));
        assert_eq!(h.quantile_bound_us(0.99), Some(5_000));
        assert_eq!(h.quantile_bound_us(1.0), Some(u64::MAX), "above the last bound");
        let mut sum = LagHistogram::default();
        sum.merge(&h);
        sum.merge(&h);
        assert_eq!((sum.count(), sum.sum_us), (200, 2 * (98 * 80 + 3_000 + 9_000_000)));
        // A sample on a bound falls in that bound's bucket.
        let mut b = LagHistogram::default();
        b.record(1_000);
        assert_eq!(b.quantile_bound_us(1.0), Some(1_000));
    }
}
