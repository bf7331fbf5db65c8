//! The stats role and the stats queries.
//!
//! The worker publishes an [`herald_queue::AttemptCompleted`] event for every
//! attempt it records. [`aggregate::run`] consumes them, counts each attempt
//! once into its endpoint's minute bucket (outcome counters and a latency
//! histogram, `herald_core::stats::Bucket`) in batched transactions, and acks
//! the events only after the batch is committed; the store remembers counted
//! attempt ids, so a batch redelivered after a crash is not counted twice.
//! Old minute buckets are rolled up into hour buckets, so storage stays
//! bounded.
//!
//! [`report`] answers any window by merging the buckets that start in it: its
//! cost grows with the number of buckets (at most one per endpoint and minute),
//! never with the number of attempts.

#[cfg(feature = "aggregator")]
pub mod aggregate;
pub mod report;

#[cfg(feature = "aggregator")]
pub use aggregate::{register_metrics, run, AggregatorConfig};
pub use report::{build_report, report, Granularity, LatencySummary, Point, Report};
