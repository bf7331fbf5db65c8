//! Delivery statistics: what the stats service counts per endpoint and time
//! bucket. A [`Bucket`] holds the outcome counters of a set of attempts and a
//! histogram of their latencies; buckets merge exactly (counters add,
//! histograms add), so an hour bucket holds exactly what its minute buckets
//! hold, and any window is answered by merging the buckets it covers.
//!
//! Latencies are kept in an HdrHistogram of microseconds from 1 µs to one hour
//! with two significant digits: every quantile is within 1% of the true value,
//! in a few kilobytes whatever the number of attempts. Longer durations are
//! clamped to one hour.

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::ErrorClass;

/// Largest latency the histogram tells apart: one hour, in microseconds.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Smallest latency the histogram tells apart, in microseconds.
const MIN_LATENCY_US: u64 = 1;
/// Significant decimal digits of the histogram: at most 1% relative error.
const SIGNIFICANT_DIGITS: u8 = 2;

/// Outcome counters of a set of attempts: `attempts = successes + failures()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub attempts: u64,
    pub successes: u64,
    pub timeout: u64,
    pub connect: u64,
    pub dns: u64,
    pub tls: u64,
    pub blocked: u64,
    pub http3xx: u64,
    pub http4xx: u64,
    pub http5xx: u64,
    pub other: u64,
}

impl OutcomeCounts {
    /// Failed attempts, of every class.
    pub fn failures(&self) -> u64 {
        ErrorClass::BREAKDOWN
            .iter()
            .map(|&class| self.failures_of(class))
            .fold(0, u64::saturating_add)
    }

    /// Failed attempts counted under `class`'s breakdown counter
    /// ([`ErrorClass::breakdown`]): `Invalid` and `Other` both read `other`.
    pub fn failures_of(&self, class: ErrorClass) -> u64 {
        match class.breakdown() {
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Connect => self.connect,
            ErrorClass::Dns => self.dns,
            ErrorClass::Tls => self.tls,
            ErrorClass::Blocked => self.blocked,
            ErrorClass::Http3xx => self.http3xx,
            ErrorClass::Http4xx => self.http4xx,
            ErrorClass::Http5xx => self.http5xx,
            ErrorClass::Invalid | ErrorClass::Other => self.other,
        }
    }

    fn failures_of_mut(&mut self, class: ErrorClass) -> &mut u64 {
        match class.breakdown() {
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Dns => &mut self.dns,
            ErrorClass::Tls => &mut self.tls,
            ErrorClass::Blocked => &mut self.blocked,
            ErrorClass::Http3xx => &mut self.http3xx,
            ErrorClass::Http4xx => &mut self.http4xx,
            ErrorClass::Http5xx => &mut self.http5xx,
            ErrorClass::Invalid | ErrorClass::Other => &mut self.other,
        }
    }

    /// Adds `other`'s counters to these.
    pub fn merge(&mut self, other: &OutcomeCounts) {
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.successes = self.successes.saturating_add(other.successes);
        for class in ErrorClass::BREAKDOWN {
            let count = self.failures_of_mut(class);
            *count = count.saturating_add(other.failures_of(class));
        }
    }

    /// The share of attempts that succeeded, `None` when there were none.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.successes as f64 / self.attempts as f64)
    }
}

/// Attempts of one endpoint in one time bucket: counters plus a latency
/// histogram (HdrHistogram of microseconds, 1 µs to 1 hour, 2 significant
/// digits = ≤ 1% relative error; values above the maximum are clamped).
#[derive(Debug, Clone)]
pub struct Bucket {
    counts: OutcomeCounts,
    latency: Histogram<u64>,
}

fn empty_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(MIN_LATENCY_US, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

fn same_shape(a: &Histogram<u64>, b: &Histogram<u64>) -> bool {
    a.low() == b.low() && a.high() == b.high() && a.sigfig() == b.sigfig()
}

/// Adds `source` to `target`, clamping values `target` cannot hold (only
/// possible when `source` has other bounds).
fn add_histogram(target: &mut Histogram<u64>, source: &Histogram<u64>) {
    if same_shape(target, source) && target.add(source).is_ok() {
        return;
    }
    for value in source.iter_recorded() {
        target.saturating_record_n(value.value_iterated_to(), value.count_at_value());
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.latency == other.latency
    }
}

impl Bucket {
    /// An empty bucket.
    pub fn new() -> Self {
        Self {
            counts: OutcomeCounts::default(),
            latency: empty_histogram(),
        }
    }

    /// Counts one attempt. `success` decides whether it succeeded; a failed
    /// attempt is counted under its `error_class`'s breakdown counter (see
    /// [`ErrorClass::breakdown`]; `None` counts as `other`). Every attempt's
    /// duration is recorded, failures' too.
    pub fn record(&mut self, success: bool, error_class: Option<ErrorClass>, duration_us: u64) {
        self.counts.attempts = self.counts.attempts.saturating_add(1);
        if success {
            self.counts.successes = self.counts.successes.saturating_add(1);
        } else {
            let class = error_class.unwrap_or(ErrorClass::Other);
            let count = self.counts.failures_of_mut(class);
            *count = count.saturating_add(1);
        }
        self.latency.saturating_record(duration_us);
    }

    /// Adds `other`'s attempts to this bucket, as if they had been recorded here.
    pub fn merge(&mut self, other: &Bucket) {
        self.counts.merge(&other.counts);
        add_histogram(&mut self.latency, &other.latency);
    }

    pub fn counts(&self) -> &OutcomeCounts {
        &self.counts
    }

    /// Whether no attempt was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.attempts == 0 && self.latency.is_empty()
    }

    /// Latency at quantile `q` (clamped to 0..=1) in milliseconds, `None` when
    /// the bucket is empty or `q` is NaN. Like every HdrHistogram quantile, it
    /// is the highest value equivalent to the recorded one: at most 1% above.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        if self.latency.is_empty() || q.is_nan() {
            return None;
        }
        Some(micros_to_ms(
            self.latency.value_at_quantile(q.clamp(0.0, 1.0)),
        ))
    }

    /// The largest latency recorded, in milliseconds, `None` when empty.
    pub fn max_latency_ms(&self) -> Option<f64> {
        (!self.latency.is_empty()).then(|| micros_to_ms(self.latency.max()))
    }

    /// The histogram serialized compactly (HdrHistogram's V2 deflate format).
    pub fn latency_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.latency, &mut bytes)
            .expect("serializing a u64 histogram into memory cannot fail");
        bytes
    }

    /// A bucket from its counters and [`Bucket::latency_bytes`]. A histogram
    /// stored with other bounds is converted to this type's (values clamped).
    pub fn from_parts(counts: OutcomeCounts, latency_bytes: &[u8]) -> Result<Self, String> {
        let stored: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &latency_bytes[..])
            .map_err(|e| format!("invalid latency histogram: {e:?}"))?;
        let latency = if same_shape(&stored, &empty_histogram()) {
            stored
        } else {
            let mut latency = empty_histogram();
            add_histogram(&mut latency, &stored);
            latency
        };
        Ok(Self { counts, latency })
    }
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The exact nearest-rank quantile of `sorted` (µs), in milliseconds.
    fn exact_ms(sorted: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        micros_to_ms(sorted[rank - 1])
    }

    fn assert_within_one_percent(bucket: &Bucket, sorted: &[u64], q: f64) {
        let estimate = bucket.latency_ms(q).unwrap();
        let exact = exact_ms(sorted, q);
        let error = (estimate - exact).abs() / exact;
        assert!(
            error <= 0.01,
            "p{q}: {estimate} ms vs exact {exact} ms ({:.3}% off)",
            error * 100.0
        );
    }

    fn log_uniform(rng: &mut StdRng, n: usize) -> Vec<u64> {
        // 100 µs .. 60 s, uniform in log space.
        let (low, high) = (100f64.ln(), 60_000_000f64.ln());
        (0..n)
            .map(|_| rng.gen_range(low..high).exp().round() as u64)
            .collect()
    }

    const QUANTILES: [f64; 9] = [0.0, 0.01, 0.1, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];

    #[test]
    fn quantiles_of_a_known_distribution_are_within_one_percent() {
        let mut bucket = Bucket::new();
        let mut values = Vec::new();
        for (us, n) in [(10_000, 50), (100_000, 45), (1_000_000, 5)] {
            for _ in 0..n {
                bucket.record(true, None, us);
                values.push(us);
            }
        }
        values.sort_unstable();
        for q in QUANTILES {
            assert_within_one_percent(&bucket, &values, q);
        }
        let near = |a: f64, b: f64| (a - b).abs() / b <= 0.01;
        assert!(near(bucket.latency_ms(0.5).unwrap(), 10.0));
        assert!(near(bucket.latency_ms(0.95).unwrap(), 100.0));
        assert!(near(bucket.latency_ms(0.99).unwrap(), 1000.0));
        assert!(near(bucket.max_latency_ms().unwrap(), 1000.0));
        assert_eq!(bucket.counts().attempts, 100);
        assert_eq!(bucket.counts().successes, 100);
        assert_eq!(bucket.counts().success_rate(), Some(1.0));
    }

    #[test]
    fn quantiles_of_a_log_uniform_sample_are_within_one_percent() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut values = log_uniform(&mut rng, 20_000);
        let mut bucket = Bucket::new();
        for &us in &values {
            bucket.record(true, None, us);
        }
        values.sort_unstable();
        for q in QUANTILES
            .into_iter()
            .chain((1..100).map(|p| p as f64 / 100.0))
        {
            assert_within_one_percent(&bucket, &values, q);
        }
    }

    #[test]
    fn an_empty_bucket_has_no_latency_or_rate() {
        let bucket = Bucket::default();
        assert!(bucket.is_empty());
        assert_eq!(bucket.latency_ms(0.5), None);
        assert_eq!(bucket.max_latency_ms(), None);
        assert_eq!(bucket.counts().success_rate(), None);
        assert_eq!(bucket.counts().failures(), 0);
    }

    #[test]
    fn durations_beyond_an_hour_are_clamped_and_quantiles_are_clamped() {
        let mut bucket = Bucket::new();
        bucket.record(false, Some(ErrorClass::Timeout), 10 * MAX_LATENCY_US);
        bucket.record(true, None, 0);
        let max = bucket.max_latency_ms().unwrap();
        assert!((max - 3_600_000.0).abs() / 3_600_000.0 <= 0.01, "{max}");
        assert_eq!(bucket.latency_ms(2.0), bucket.latency_ms(1.0));
        assert_eq!(bucket.latency_ms(-1.0), Some(0.0));
        assert_eq!(bucket.latency_ms(f64::NAN), None);
    }

    #[test]
    fn merging_two_buckets_equals_recording_everything_in_one() {
        let mut rng = StdRng::seed_from_u64(11);
        let classes: Vec<Option<ErrorClass>> = std::iter::once(None)
            .chain(ErrorClass::ALL.map(Some))
            .collect();
        let (mut a, mut b, mut all) = (Bucket::new(), Bucket::new(), Bucket::new());
        for (i, us) in log_uniform(&mut rng, 5_000).into_iter().enumerate() {
            let class = classes[rng.gen_range(0..classes.len())];
            let part = if i % 3 == 0 { &mut a } else { &mut b };
            part.record(class.is_none(), class, us);
            all.record(class.is_none(), class, us);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, all);
        assert_eq!(merged.counts(), all.counts());
        for q in QUANTILES {
            assert_eq!(merged.latency_ms(q), all.latency_ms(q));
        }
        let counts = all.counts();
        assert_eq!(counts.attempts, 5_000);
        assert_eq!(counts.successes + counts.failures(), counts.attempts);
        assert!(ErrorClass::BREAKDOWN
            .iter()
            .all(|&c| counts.failures_of(c) > 0));

        // Merging an empty bucket changes nothing, either way round.
        let mut with_empty = all.clone();
        with_empty.merge(&Bucket::new());
        assert_eq!(with_empty, all);
        let mut empty = Bucket::new();
        empty.merge(&all);
        assert_eq!(empty, all);
    }

    #[test]
    fn buckets_round_trip_through_bytes() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut bucket = Bucket::new();
        for us in log_uniform(&mut rng, 1_000) {
            bucket.record(
                us % 7 != 0,
                (us % 7 == 0).then_some(ErrorClass::Http5xx),
                us,
            );
        }
        let bytes = bucket.latency_bytes();
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        let back = Bucket::from_parts(*bucket.counts(), &bytes).unwrap();
        assert_eq!(back, bucket);
        assert_eq!(back.latency_ms(0.99), bucket.latency_ms(0.99));

        let empty = Bucket::from_parts(OutcomeCounts::default(), &Bucket::new().latency_bytes());
        assert_eq!(empty.unwrap(), Bucket::new());

        assert!(Bucket::from_parts(OutcomeCounts::default(), b"not a histogram").is_err());
        assert!(Bucket::from_parts(OutcomeCounts::default(), &[]).is_err());
        assert!(Bucket::from_parts(OutcomeCounts::default(), &bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn a_histogram_stored_with_other_bounds_is_converted() {
        let mut wide = Histogram::<u64>::new_with_bounds(1, 10 * MAX_LATENCY_US, 3).unwrap();
        wide.record(5_000).unwrap();
        wide.record(5 * MAX_LATENCY_US).unwrap();
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&wide, &mut bytes)
            .unwrap();
        let counts = OutcomeCounts {
            attempts: 2,
            successes: 2,
            ..Default::default()
        };
        let mut bucket = Bucket::from_parts(counts, &bytes).unwrap();
        assert!((bucket.latency_ms(0.5).unwrap() - 5.0).abs() / 5.0 <= 0.01);
        assert!(bucket.max_latency_ms().unwrap() <= 3_600_000.0 * 1.01);
        // And it still merges with a bucket of the usual shape.
        bucket.merge(&Bucket::new());
        let mut other = Bucket::new();
        other.merge(&bucket);
        assert_eq!(other.counts().attempts, 2);
    }

    #[test]
    fn error_classes_are_counted_under_their_breakdown_class() {
        let mut bucket = Bucket::new();
        for class in ErrorClass::BREAKDOWN {
            bucket.record(false, Some(class), 1_000);
        }
        bucket.record(false, Some(ErrorClass::Invalid), 1_000);
        // An unknown stored name reads as `other`, counted there too.
        bucket.record(false, Some(ErrorClass::from_stored("expired")), 1_000);
        bucket.record(false, None, 1_000);
        bucket.record(true, None, 1_000);
        let counts = bucket.counts();
        assert_eq!(counts.attempts, 13);
        assert_eq!(counts.successes, 1);
        assert_eq!(counts.failures(), 12);
        assert_eq!(counts.failures_of(ErrorClass::Other), 4);
        assert_eq!(counts.failures_of(ErrorClass::Invalid), 4);
        assert_eq!(counts.other, 4);
        for class in ErrorClass::BREAKDOWN
            .into_iter()
            .filter(|&c| c != ErrorClass::Other)
        {
            assert_eq!(counts.failures_of(class), 1, "{class}");
        }
        assert_eq!(counts.success_rate(), Some(1.0 / 13.0));
    }

    #[test]
    fn outcome_counts_merge_field_by_field() {
        let a = OutcomeCounts {
            attempts: 5,
            successes: 2,
            timeout: 1,
            http5xx: 2,
            ..Default::default()
        };
        let b = OutcomeCounts {
            attempts: 3,
            successes: 1,
            dns: 1,
            other: 1,
            ..Default::default()
        };
        let mut sum = a;
        sum.merge(&b);
        assert_eq!(
            sum,
            OutcomeCounts {
                attempts: 8,
                successes: 3,
                timeout: 1,
                dns: 1,
                http5xx: 2,
                other: 1,
                ..Default::default()
            }
        );
        assert_eq!(sum.failures(), 5);
    }
}
