//! Herald's delivery side: the part that talks to endpoint URLs.
//!
//! [`send`] makes one signed delivery attempt and classifies its outcome;
//! [`ssrf`] decides which addresses an attempt may connect to; [`dispatch`] is
//! the delivery loop built on them (outbox relay, task consumer, attempt
//! records, retry and dead-letter decisions); [`dead_letters`] drains the
//! dead-letter queue into the database; [`retention`] removes expired
//! payloads and old messages and attempts; [`metrics`] names the series it
//! records; [`operational`] is what it tells the tenant through operational
//! webhooks (an endpoint disabled, a delivery failing, exhausted, recovered).
//!
//! Architecture invariant: this crate never depends on axum; the API process
//! never talks to endpoint URLs and the worker serves no HTTP (the `herald`
//! binary serves its metrics on `HERALD_METRICS_ADDR`).

pub mod dead_letters;
pub mod dispatch;
mod endpoints;
pub mod metrics;
pub mod operational;
pub mod retention;
pub mod send;
pub mod ssrf;

pub use dead_letters::{DeadLetterDrain, DrainError};
pub use dispatch::{DispatchError, Dispatcher, WorkerConfig};
pub use retention::{Pruned, RetentionConfig, RetentionJob};
pub use send::{
    AttemptOutcome, DeliveryRequest, ErrorClass, Sender, SenderBuildError, SenderConfig,
    DEFAULT_USER_AGENT, EVENT_TYPE_HEADER,
};
pub use ssrf::{Blocked, FilteringResolver, ResolveError, SsrfPolicy};
