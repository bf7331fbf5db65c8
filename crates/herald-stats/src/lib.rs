//! The stats role and the stats queries.
//!
//! The worker publishes an [`herald_queue::AttemptCompleted`] event for every
//! attempt it records. [`aggregate::run`] consumes them, counts each attempt
//! once into its endpoint's minute bucket and hour bucket (outcome counters
//! and a latency histogram, `herald_core::stats::Bucket`) in batched
//! transactions, and acks the events only after the batch is committed; the
//! store remembers counted attempt ids, so a batch redelivered after a crash
//! is not counted twice. Old minute buckets are deleted by whole hours (their
//! hour buckets already hold them), so storage stays bounded.
//!
//! [`report`] answers any window by merging the buckets that cover it: hour
//! buckets for hourly and daily reports, minute buckets (and hour buckets
//! where the minutes are gone) for minute reports. Its cost grows with the
//! number of buckets, never with the number of attempts.

#[cfg(feature = "aggregator")]
pub mod aggregate;
pub mod report;

#[cfg(feature = "aggregator")]
pub use aggregate::{register_metrics, run, AggregatorConfig};
pub use report::{build_report, report, Granularity, LatencySummary, Point, Report};
