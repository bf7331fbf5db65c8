//! Retry policies set on an application or an endpoint (`retryPolicy`), and the
//! policy a delivery follows: each setting from the endpoint if it sets it,
//! else from its application, else the server's default
//! (`HERALD_RETRY_SCHEDULE`, jitter on, other 4xx retried).

use std::borrow::Cow;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::retry::{ClientErrors, Decision, FinishedAttempt, RetrySchedule};
use crate::value::ValidationError;

/// Exponential backoff: the first retry after `initialDelay` seconds, each
/// later one `multiplier` times longer, none longer than `maxDelay`;
/// `maxAttempts` attempts in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExponentialBackoff {
    pub initial_delay: u64,
    pub multiplier: f64,
    pub max_delay: u64,
    pub max_attempts: u32,
}

/// A retry policy as an application or endpoint sets it: every part optional,
/// an unset part inherited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(as = RetryPolicy))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicySpec {
    /// Explicit seconds between attempts: `[1, 2]` is three attempts, the
    /// second 1 s after the first, the third 2 s after the second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Vec<u64>>,
    /// Exponential backoff instead of an explicit schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential: Option<ExponentialBackoff>,
    /// Whether each delay moves by a random ±20% (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// What a 4xx other than 408, 410 and 429 does (default `retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_errors: Option<ClientErrors>,
}

impl RetryPolicySpec {
    /// Checks the spec, reporting problems under `field` (`retryPolicy`).
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        self.schedule(field).map(drop)
    }

    /// The schedule the spec sets, if it sets one.
    pub fn schedule(&self, field: &str) -> Result<Option<RetrySchedule>, ValidationError> {
        let refused = |msg: String| ValidationError::new(field, msg);
        match (&self.schedule, &self.exponential) {
            (Some(_), Some(_)) => Err(refused(
                "give either schedule or exponential, not both".to_owned(),
            )),
            (Some(seconds), None) => RetrySchedule::from_delays(
                seconds.iter().copied().map(Duration::from_secs).collect(),
            )
            .map(Some)
            .map_err(|e| refused(format!("schedule: {e}"))),
            (None, Some(backoff)) => {
                if backoff.max_attempts < 2 {
                    return Err(refused(
                        "exponential.maxAttempts must be at least 2 (the first attempt and a retry)"
                            .to_owned(),
                    ));
                }
                if backoff.initial_delay > backoff.max_delay {
                    return Err(refused(
                        "exponential.initialDelay must not exceed exponential.maxDelay".to_owned(),
                    ));
                }
                RetrySchedule::exponential(
                    Duration::from_secs(backoff.initial_delay),
                    backoff.multiplier,
                    Duration::from_secs(backoff.max_delay),
                    backoff.max_attempts,
                )
                .map(Some)
                .map_err(|e| refused(format!("exponential: {e}")))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The policy a delivery follows.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub schedule: RetrySchedule,
    pub jitter: bool,
    pub client_errors: ClientErrors,
}

impl RetryPolicy {
    /// The server's default: `schedule`, jitter on, other 4xx retried.
    pub fn server_default(schedule: RetrySchedule) -> Self {
        Self {
            schedule,
            jitter: true,
            client_errors: ClientErrors::Retry,
        }
    }

    /// The policy of an endpoint with its own spec (if any) in an application
    /// with its spec (if any): each part from the first that sets it, else
    /// `self`. Borrows `self` when neither sets anything. Specs are validated
    /// when they are set, so a stored one that no longer parses is skipped.
    pub fn inherited<'a>(
        &'a self,
        endpoint: Option<&RetryPolicySpec>,
        app: Option<&RetryPolicySpec>,
    ) -> Cow<'a, Self> {
        if endpoint.is_none() && app.is_none() {
            return Cow::Borrowed(self);
        }
        let specs = [endpoint, app];
        let schedule = specs
            .iter()
            .flatten()
            .find_map(|spec| spec.schedule("retryPolicy").ok().flatten())
            .unwrap_or_else(|| self.schedule.clone());
        Cow::Owned(Self {
            schedule,
            jitter: specs
                .iter()
                .flatten()
                .find_map(|spec| spec.jitter)
                .unwrap_or(self.jitter),
            client_errors: specs
                .iter()
                .flatten()
                .find_map(|spec| spec.client_errors)
                .unwrap_or(self.client_errors),
        })
    }

    /// What to do after `attempt`; see [`RetrySchedule::decide_with`].
    pub fn decide(&self, attempt: &FinishedAttempt, rng: &mut impl Rng) -> Decision {
        self.schedule
            .decide_with(attempt, self.jitter, self.client_errors, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> RetryPolicySpec {
        serde_json::from_str(json).expect("a spec")
    }

    #[test]
    fn parts_are_inherited_one_by_one() {
        let default = RetryPolicy::server_default(RetrySchedule::default());
        assert!(matches!(default.inherited(None, None), Cow::Borrowed(_)));
        let app = spec(r#"{"schedule": [1, 2], "clientErrors": "final"}"#);
        let endpoint = spec(r#"{"jitter": false}"#);
        let policy = default.inherited(Some(&endpoint), Some(&app));
        assert_eq!(
            policy.schedule.delays(),
            [Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert!(!policy.jitter);
        assert_eq!(policy.client_errors, ClientErrors::Final);
        let own = spec(
            r#"{"exponential": {"initialDelay": 2, "multiplier": 3, "maxDelay": 10, "maxAttempts": 4}}"#,
        );
        let policy = default.inherited(Some(&own), Some(&app));
        assert_eq!(
            policy.schedule.delays(),
            [2, 6, 10].map(Duration::from_secs)
        );
        assert!(policy.jitter, "the server's default");
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        for bad in [
            r#"{"schedule": [1], "exponential": {"initialDelay": 1, "multiplier": 2, "maxDelay": 5, "maxAttempts": 3}}"#,
            r#"{"schedule": []}"#,
            r#"{"schedule": [700000]}"#,
            r#"{"exponential": {"initialDelay": 1, "multiplier": 0.5, "maxDelay": 5, "maxAttempts": 3}}"#,
            r#"{"exponential": {"initialDelay": 9, "multiplier": 2, "maxDelay": 5, "maxAttempts": 3}}"#,
            r#"{"exponential": {"initialDelay": 1, "multiplier": 2, "maxDelay": 5, "maxAttempts": 1}}"#,
        ] {
            let error = spec(bad).validate("retryPolicy").expect_err(bad);
            assert_eq!(error.loc, ["body", "retryPolicy"], "{bad}");
        }
        for bad in [
            r#"{"schedul": [1]}"#,
            r#"{"clientErrors": "sometimes"}"#,
            r#"{"schedule": [-1]}"#,
        ] {
            assert!(
                serde_json::from_str::<RetryPolicySpec>(bad).is_err(),
                "{bad}"
            );
        }
        assert!(spec("{}").validate("retryPolicy").is_ok());
    }
}
