//! Retry policy for deliveries: the schedule of delays between attempts and the
//! decision taken after each attempt (succeed, retry later, give up, or disable
//! the endpoint), and the delivery state each decision leads to
//! ([`Decision::next_state`]). Pure arithmetic — no clock, no I/O — so the
//! worker supplies the random source and tests pin it with a seeded RNG.

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

use crate::{DeliveryState, ErrorClass};

/// Largest delay a schedule may hold between two attempts. Longer waits would
/// outlive any sensible retention of the message and of the TTL-queue ladder.
pub const MAX_SCHEDULED_DELAY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Most retries (delays) a schedule may hold, so one message cannot keep a
/// delivery alive for ever.
pub const MAX_RETRIES: usize = 50;

/// Upper bound on a receiver's `Retry-After`: a receiver may slow us down, but
/// not park a delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Shortest wait before a task whose attempt could not be recorded is sent
/// again (see [`RetrySchedule::decide_unrecorded`]), whatever the schedule's
/// first delay: never a tight loop against the receiver.
pub const MIN_UNRECORDED_DELAY: Duration = Duration::from_secs(1);

/// Why a retry schedule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryScheduleError {
    #[error("retry schedule must contain at least one delay")]
    Empty,
    #[error("retry schedule has {count} delays, at most {MAX_RETRIES} are allowed")]
    TooMany { count: usize },
    /// `position` is 1-based, as a person counts the list.
    #[error("retry delay #{position} ({value:?}) is not a whole number of seconds")]
    NotSeconds { position: usize, value: String },
    #[error("retry delay #{position} ({value:?}) is negative")]
    Negative { position: usize, value: String },
    #[error("retry delay #{position} is {seconds} s, at most 7 days (604800 s) is allowed")]
    TooLarge { position: usize, seconds: u64 },
    #[error("exponential retry factor must be a finite number of at least 1, got {factor}")]
    InvalidFactor { factor: f64 },
}

/// The delays between consecutive attempts of one delivery. The first attempt
/// is always immediate; delay `i` (0-based) is waited after attempt `i + 1`
/// fails, so a schedule of `n` delays allows `n + 1` attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// The design's default (herald.md §5): immediately, then 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h, 10 h — 8 attempts over roughly 28 hours.
    fn default() -> Self {
        const DEFAULT_SECONDS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];
        Self {
            delays: DEFAULT_SECONDS.map(Duration::from_secs).to_vec(),
        }
    }
}

impl RetrySchedule {
    /// Parses the `HERALD_RETRY_SCHEDULE` format: comma-separated whole seconds
    /// between attempts, e.g. `"5,300,1800"`; whitespace around values is ignored.
    pub fn parse(input: &str) -> Result<Self, RetryScheduleError> {
        if input.trim().is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        let delays = input
            .split(',')
            .enumerate()
            .map(|(index, raw)| parse_seconds(index + 1, raw.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_delays(delays)
    }

    /// A schedule from explicit delays, checked against the same bounds as
    /// [`RetrySchedule::parse`].
    pub fn from_delays(delays: Vec<Duration>) -> Result<Self, RetryScheduleError> {
        if delays.is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        if delays.len() > MAX_RETRIES {
            return Err(RetryScheduleError::TooMany {
                count: delays.len(),
            });
        }
        if let Some(index) = delays.iter().position(|d| *d > MAX_SCHEDULED_DELAY) {
            return Err(RetryScheduleError::TooLarge {
                position: index + 1,
                seconds: delays[index].as_secs(),
            });
        }
        Ok(Self { delays })
    }

    /// Exponential backoff with a cap: `attempts` attempts in all, the first
    /// retry after `initial`, each later one `factor` times longer, none longer
    /// than `max_delay`.
    pub fn exponential(
        initial: Duration,
        factor: f64,
        max_delay: Duration,
        attempts: u32,
    ) -> Result<Self, RetryScheduleError> {
        // A factor below 1 would make retries speed up against a failing
        // receiver, which is the opposite of backing off.
        if !factor.is_finite() || factor < 1.0 {
            return Err(RetryScheduleError::InvalidFactor { factor });
        }
        let retries = attempts.saturating_sub(1) as usize;
        // Checked before building so an absurd count never allocates.
        if retries > MAX_RETRIES {
            return Err(RetryScheduleError::TooMany { count: retries });
        }
        let mut delays = Vec::with_capacity(retries);
        let mut next = initial.min(max_delay);
        for _ in 0..retries {
            delays.push(next);
            // Compare in floating point before multiplying, so a large factor
            // saturates at the cap instead of overflowing `Duration`.
            next = if next.as_secs_f64() * factor >= max_delay.as_secs_f64() {
                max_delay
            } else {
                next.mul_f64(factor)
            };
        }
        Self::from_delays(delays)
    }

    /// The delays between attempts, in order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Attempts in all, counting the immediate first one.
    pub fn max_attempts(&self) -> u32 {
        // At most MAX_RETRIES + 1, so the conversion cannot truncate.
        self.delays.len() as u32 + 1
    }

    /// What to do after `attempt` finished, with the server's defaults: jitter
    /// on, other 4xx answers retried. See [`RetrySchedule::decide_with`].
    pub fn decide(&self, attempt: &FinishedAttempt, rng: &mut impl Rng) -> Decision {
        self.decide_with(attempt, true, ClientErrors::Retry, rng)
    }

    /// What to do after `attempt` finished.
    ///
    /// - 2xx: done.
    /// - 410 Gone wins over everything but success, even on the last attempt:
    ///   the receiver told us the endpoint is gone for good.
    /// - An attempt the SSRF guard refused or that could not be built
    ///   ([`ErrorClass::Blocked`], [`ErrorClass::Invalid`]) cannot succeed by
    ///   retrying, and neither can a 4xx other than 408 and 429 when the
    ///   endpoint's policy says `final`: [`Decision::Final`].
    /// - Anything else is retried on the schedule (`jitter` moves each delay
    ///   by ±20%) while attempts are left; a `Retry-After` on 429 or 503 can
    ///   lengthen the wait, up to [`MAX_RETRY_AFTER`].
    pub fn decide_with(
        &self,
        attempt: &FinishedAttempt,
        jitter: bool,
        client_errors: ClientErrors,
        rng: &mut impl Rng,
    ) -> Decision {
        if attempt.succeeded {
            return Decision::Succeeded;
        }
        if attempt.status == 410 {
            return Decision::DisableEndpoint;
        }
        if matches!(
            attempt.error_class,
            Some(ErrorClass::Blocked | ErrorClass::Invalid)
        ) {
            return Decision::Final;
        }
        let client_error =
            (400..500).contains(&attempt.status) && !matches!(attempt.status, 408 | 429);
        if client_error && client_errors == ClientErrors::Final {
            return Decision::Final;
        }
        // Attempt numbers start at 1; a 0 is read as 1 rather than panicking.
        let finished = attempt.attempt.max(1) as usize;
        let Some(&scheduled) = self.delays.get(finished - 1) else {
            return Decision::Exhausted;
        };
        let delay = if jitter {
            jittered(scheduled, rng)
        } else {
            scheduled
        };
        // RFC 9110 §10.2.3: Retry-After accompanies 503 and, per RFC 6585, 429.
        // It can only lengthen our wait; the cap applies to the receiver's value
        // so an operator's own long schedule is never shortened.
        let delay = match attempt.retry_after {
            Some(retry_after) if matches!(attempt.status, 429 | 503) => {
                delay.max(retry_after.min(MAX_RETRY_AFTER))
            }
            _ => delay,
        };
        Decision::RetryAfter(delay)
    }

    /// What to do with a task after the `failures`-th (1-based) time its
    /// attempt was made but could not be recorded (the database refused the
    /// write). The receiver's answer is lost with the record, so the schedule
    /// cannot decide; the task is sent again after a capped exponential
    /// backoff — the schedule's first delay (at least
    /// [`MIN_UNRECORDED_DELAY`]) doubled per failure, at most its longest
    /// delay, jittered like every retry — and is given up
    /// ([`Decision::Exhausted`]) once `failures` reaches
    /// [`RetrySchedule::max_attempts`]: an attempt that cannot be recorded
    /// costs the receiver no more requests than a delivery that always fails.
    pub fn decide_unrecorded(&self, failures: u32, rng: &mut impl Rng) -> Decision {
        if failures >= self.max_attempts() {
            return Decision::Exhausted;
        }
        let first = self
            .delays
            .first()
            .copied()
            .unwrap_or_default()
            .max(MIN_UNRECORDED_DELAY);
        let longest = self.delays.iter().copied().max().unwrap_or_default();
        let doubled = first
            .checked_mul(1 << failures.saturating_sub(1).min(31))
            .unwrap_or(Duration::MAX);
        Decision::RetryAfter(jittered(doubled.min(longest.max(first)), rng))
    }
}

impl FromStr for RetrySchedule {
    type Err = RetryScheduleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

fn parse_seconds(position: usize, raw: &str) -> Result<Duration, RetryScheduleError> {
    match raw.parse::<u64>() {
        Ok(seconds) if seconds > MAX_SCHEDULED_DELAY.as_secs() => {
            Err(RetryScheduleError::TooLarge { position, seconds })
        }
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        // Named separately because "-5 is not a whole number" reads oddly.
        Err(_) if raw.parse::<i64>().is_ok_and(|n| n < 0) => Err(RetryScheduleError::Negative {
            position,
            value: raw.to_owned(),
        }),
        Err(_) => Err(RetryScheduleError::NotSeconds {
            position,
            value: raw.to_owned(),
        }),
    }
}

/// The outcome of one delivery attempt, as the worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinishedAttempt {
    /// 1-based number of the attempt that just finished.
    pub attempt: u32,
    /// The receiver answered 2xx.
    pub succeeded: bool,
    /// HTTP status, or 0 when no response arrived (connect, DNS, TLS, timeout).
    pub status: u16,
    /// The response's `Retry-After`, already converted to a duration from now.
    pub retry_after: Option<Duration>,
    /// Why it failed, when it did.
    pub error_class: Option<ErrorClass>,
}

/// What a delivery's policy does with a 4xx answer other than 408, 410 and 429.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientErrors {
    /// Retried like a 5xx, as Svix does: the default.
    #[default]
    Retry,
    /// The delivery ends failed after that attempt.
    Final,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The receiver accepted the message; the delivery is done.
    Succeeded,
    /// 410 Gone: the delivery ends failed and the endpoint is disabled.
    DisableEndpoint,
    /// Retrying cannot help (see [`RetrySchedule::decide_with`]): the delivery
    /// ends failed.
    Final,
    /// Try again after this delay.
    RetryAfter(Duration),
    /// No attempts left: the delivery goes dead.
    Exhausted,
}

impl Decision {
    /// The state the delivery moves to with the attempt this decision follows,
    /// and for [`Decision::RetryAfter`] the delay until the next attempt is
    /// due (`None` otherwise). `manual` says the attempt was a manual one
    /// (resend or recover).
    ///
    /// - `Succeeded` → `Succeeded`.
    /// - `DisableEndpoint` → `Failed` (the endpoint is disabled beside it).
    /// - `Final` → `Failed`.
    /// - `RetryAfter(delay)` → `Sending`, due again after `delay`.
    /// - `Exhausted` → `Dead`; but after a manual attempt (a resend of a
    ///   failed or dead delivery, past the schedule) `Failed`: it is neither
    ///   retried nor dead-lettered again.
    pub fn next_state(self, manual: bool) -> (DeliveryState, Option<Duration>) {
        match self {
            Self::Succeeded => (DeliveryState::Succeeded, None),
            Self::DisableEndpoint | Self::Final => (DeliveryState::Failed, None),
            Self::RetryAfter(delay) => (DeliveryState::Sending, Some(delay)),
            Self::Exhausted if manual => (DeliveryState::Failed, None),
            Self::Exhausted => (DeliveryState::Dead, None),
        }
    }
}

/// `delay` moved by a uniformly random ±20%, so deliveries that failed together
/// (a receiver outage) do not all come back in the same instant. Integer
/// nanosecond arithmetic keeps the result inside the bounds exactly, never
/// negative, and zero stays zero.
pub fn jittered(delay: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = delay.as_nanos();
    let spread = nanos / 5;
    let offset = rng.gen_range(0..=2 * spread);
    duration_from_nanos_saturating(nanos - spread + offset)
}

fn duration_from_nanos_saturating(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below one second, so it fits in u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x4e52_414c_4421)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn failed(attempt: u32, status: u16, retry_after: Option<Duration>) -> FinishedAttempt {
        FinishedAttempt {
            attempt,
            succeeded: false,
            status,
            retry_after,
            error_class: ErrorClass::from_status(status),
        }
    }

    fn assert_within_jitter(actual: Duration, scheduled: Duration) {
        assert!(
            actual >= scheduled * 4 / 5 && actual <= scheduled * 6 / 5,
            "{actual:?} is outside ±20% of {scheduled:?}"
        );
    }

    #[test]
    fn default_schedule_matches_the_design() {
        let schedule = RetrySchedule::default();
        let expected = [5, 300, 1800, 7200, 18000, 36000, 36000].map(secs);
        assert_eq!(schedule.delays(), expected);
        assert_eq!(schedule.max_attempts(), 8);
    }

    #[test]
    fn parse_accepts_the_env_format_with_whitespace() {
        let parsed = RetrySchedule::parse(" 5, 300 ,1800,7200,18000,36000 , 36000\n").unwrap();
        assert_eq!(parsed, RetrySchedule::default());
        assert_eq!("0".parse::<RetrySchedule>().unwrap().delays(), [secs(0)]);
        let longest = RetrySchedule::parse(&vec!["604800"; MAX_RETRIES].join(",")).unwrap();
        assert_eq!(longest.max_attempts(), 51);
    }

    #[test]
    fn parse_rejects_empty_input() {
        assert_eq!(RetrySchedule::parse(""), Err(RetryScheduleError::Empty));
        assert_eq!(RetrySchedule::parse("  "), Err(RetryScheduleError::Empty));
    }

    #[test]
    fn parse_rejects_negative_and_non_numbers_with_their_position() {
        assert_eq!(
            RetrySchedule::parse("5,-10"),
            Err(RetryScheduleError::Negative {
                position: 2,
                value: "-10".to_owned()
            })
        );
        assert_eq!(
            RetrySchedule::parse("5s"),
            Err(RetryScheduleError::NotSeconds {
                position: 1,
                value: "5s".to_owned()
            })
        );
        assert!(matches!(
            RetrySchedule::parse("5,,300"),
            Err(RetryScheduleError::NotSeconds { position: 2, .. })
        ));
        assert!(RetrySchedule::parse("1.5").is_err());
        assert!(RetrySchedule::parse("5,300,").is_err());
    }

    #[test]
    fn parse_rejects_too_many_and_too_large_delays() {
        let too_many = vec!["1"; MAX_RETRIES + 1].join(",");
        assert_eq!(
            RetrySchedule::parse(&too_many),
            Err(RetryScheduleError::TooMany { count: 51 })
        );
        assert_eq!(
            RetrySchedule::parse("5,604801"),
            Err(RetryScheduleError::TooLarge {
                position: 2,
                seconds: 604_801
            })
        );
        // Larger than u64: still a number, so not reported as negative.
        assert!(matches!(
            RetrySchedule::parse("99999999999999999999999"),
            Err(RetryScheduleError::NotSeconds { position: 1, .. })
        ));
    }

    #[test]
    fn parse_errors_read_as_lowercase_sentences() {
        let error = RetrySchedule::parse("5,abc").unwrap_err();
        assert_eq!(
            error.to_string(),
            "retry delay #2 (\"abc\") is not a whole number of seconds"
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_spreads() {
        let mut rng = rng();
        for scheduled in [
            secs(1),
            secs(5),
            secs(300),
            secs(36000),
            MAX_SCHEDULED_DELAY,
        ] {
            let samples: Vec<_> = (0..10_000).map(|_| jittered(scheduled, &mut rng)).collect();
            for &sample in &samples {
                assert_within_jitter(sample, scheduled);
            }
            // Uniform over ±20%, so 10 000 samples reach close to both ends.
            let lowest = samples.iter().min().unwrap();
            let highest = samples.iter().max().unwrap();
            assert!(*lowest < scheduled.mul_f64(0.81), "{lowest:?}");
            assert!(*highest > scheduled.mul_f64(1.19), "{highest:?}");
        }
    }

    #[test]
    fn jitter_keeps_zero_at_zero_and_never_overflows() {
        let mut rng = rng();
        assert_eq!(jittered(Duration::ZERO, &mut rng), Duration::ZERO);
        // One nanosecond has no room to move.
        assert_eq!(
            jittered(Duration::from_nanos(1), &mut rng),
            Duration::from_nanos(1)
        );
        let huge = jittered(Duration::MAX, &mut rng);
        assert!(huge >= Duration::MAX / 5 * 4);
    }

    #[test]
    fn success_ends_the_delivery() {
        let attempt = FinishedAttempt {
            attempt: 1,
            succeeded: true,
            status: 204,
            retry_after: None,
            error_class: None,
        };
        assert_eq!(
            RetrySchedule::default().decide(&attempt, &mut rng()),
            Decision::Succeeded
        );
    }

    #[test]
    fn server_error_on_first_attempt_retries_after_jittered_five_seconds() {
        let decision = RetrySchedule::default().decide(&failed(1, 500, None), &mut rng());
        let Decision::RetryAfter(delay) = decision else {
            panic!("expected a retry, got {decision:?}");
        };
        assert_within_jitter(delay, secs(5));
    }

    #[test]
    fn connection_failure_uses_the_delay_for_the_attempt_number() {
        let decision = RetrySchedule::default().decide(&failed(4, 0, None), &mut rng());
        let Decision::RetryAfter(delay) = decision else {
            panic!("expected a retry, got {decision:?}");
        };
        assert_within_jitter(delay, secs(7200));
    }

    #[test]
    fn server_error_on_the_last_attempt_exhausts_the_delivery() {
        let schedule = RetrySchedule::default();
        let last = schedule.max_attempts();
        assert_eq!(
            schedule.decide(&failed(last, 500, None), &mut rng()),
            Decision::Exhausted
        );
        assert_eq!(
            schedule.decide(&failed(last + 1, 500, None), &mut rng()),
            Decision::Exhausted
        );
        // Retry-After cannot buy an attempt the schedule does not have.
        assert_eq!(
            schedule.decide(&failed(last, 503, Some(secs(60))), &mut rng()),
            Decision::Exhausted
        );
    }

    #[test]
    fn gone_disables_the_endpoint_even_on_the_last_attempt() {
        let schedule = RetrySchedule::default();
        for attempt in [1, schedule.max_attempts()] {
            assert_eq!(
                schedule.decide(&failed(attempt, 410, None), &mut rng()),
                Decision::DisableEndpoint
            );
        }
    }

    #[test]
    fn too_many_requests_waits_for_a_longer_retry_after() {
        let decision =
            RetrySchedule::default().decide(&failed(1, 429, Some(secs(120))), &mut rng());
        assert_eq!(decision, Decision::RetryAfter(secs(120)));
    }

    #[test]
    fn too_many_requests_keeps_the_schedule_when_retry_after_is_shorter() {
        let decision = RetrySchedule::default().decide(&failed(2, 429, Some(secs(1))), &mut rng());
        let Decision::RetryAfter(delay) = decision else {
            panic!("expected a retry, got {decision:?}");
        };
        assert_within_jitter(delay, secs(300));
    }

    #[test]
    fn unavailable_retry_after_beyond_a_day_is_capped() {
        let decision =
            RetrySchedule::default().decide(&failed(1, 503, Some(secs(3 * 86_400))), &mut rng());
        assert_eq!(decision, Decision::RetryAfter(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_is_ignored_on_other_statuses() {
        let decision =
            RetrySchedule::default().decide(&failed(1, 500, Some(secs(3600))), &mut rng());
        let Decision::RetryAfter(delay) = decision else {
            panic!("expected a retry, got {decision:?}");
        };
        assert_within_jitter(delay, secs(5));
    }

    #[test]
    fn decisions_map_to_delivery_states() {
        for manual in [false, true] {
            assert_eq!(
                Decision::Succeeded.next_state(manual),
                (DeliveryState::Succeeded, None)
            );
            assert_eq!(
                Decision::DisableEndpoint.next_state(manual),
                (DeliveryState::Failed, None)
            );
            for delay in [Duration::ZERO, secs(5), MAX_RETRY_AFTER] {
                assert_eq!(
                    Decision::RetryAfter(delay).next_state(manual),
                    (DeliveryState::Sending, Some(delay))
                );
            }
        }
        assert_eq!(
            Decision::Exhausted.next_state(false),
            (DeliveryState::Dead, None)
        );
    }

    #[test]
    fn a_manual_attempt_past_the_schedule_ends_failed_not_dead() {
        assert_eq!(
            Decision::Exhausted.next_state(true),
            (DeliveryState::Failed, None)
        );
        // As decided after a failed resend of a delivery that used its attempts.
        let schedule = RetrySchedule::default();
        let decision = schedule.decide(&failed(schedule.max_attempts() + 1, 500, None), &mut rng());
        assert_eq!(decision.next_state(true), (DeliveryState::Failed, None));
        assert_eq!(decision.next_state(false), (DeliveryState::Dead, None));
    }

    fn unrecorded_delays(schedule: &RetrySchedule) -> Vec<Option<Duration>> {
        (1..=schedule.max_attempts())
            .map(
                |failures| match schedule.decide_unrecorded(failures, &mut rng()) {
                    Decision::RetryAfter(delay) => Some(delay),
                    Decision::Exhausted => None,
                    other => panic!("unexpected decision {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn unrecorded_attempts_back_off_from_the_first_delay_and_give_up_with_the_schedule() {
        let delays = unrecorded_delays(&RetrySchedule::default());
        // Eight attempts allowed: seven doublings of 5 s, then give up.
        assert_eq!(delays.len(), 8);
        assert_eq!(delays[7], None);
        for (failures, delay) in delays[..7].iter().enumerate() {
            let delay = delay.expect("a retry before the last attempt");
            assert_within_jitter(delay, secs(5 << failures));
        }
    }

    #[test]
    fn unrecorded_attempts_back_off_to_the_longest_delay_at_most() {
        let schedule = RetrySchedule::parse("1,1,1,4").unwrap();
        let delays = unrecorded_delays(&schedule);
        for (delay, nominal) in delays[..4].iter().zip([1, 2, 4, 4]) {
            assert_within_jitter(delay.expect("a retry"), secs(nominal));
        }
        assert_eq!(delays[4], None);
        // A first delay longer than the rest is the cap itself.
        let falling = RetrySchedule::parse("10,3").unwrap();
        for delay in &unrecorded_delays(&falling)[..2] {
            assert_within_jitter(delay.expect("a retry"), secs(10));
        }
    }

    #[test]
    fn unrecorded_attempts_wait_at_least_a_second_even_on_an_immediate_schedule() {
        let schedule = RetrySchedule::parse("0").unwrap();
        let delays = unrecorded_delays(&schedule);
        assert_within_jitter(delays[0].expect("a retry"), MIN_UNRECORDED_DELAY);
        assert_eq!(delays[1], None);
        // Past the limit (a counter from an older, longer schedule): given up.
        assert_eq!(
            schedule.decide_unrecorded(40, &mut rng()),
            Decision::Exhausted
        );
    }

    #[test]
    fn exponential_schedule_doubles_up_to_the_cap() {
        let schedule = RetrySchedule::exponential(secs(1), 2.0, secs(60), 9).unwrap();
        assert_eq!(schedule.delays(), [1, 2, 4, 8, 16, 32, 60, 60].map(secs));
        assert_eq!(schedule.max_attempts(), 9);
    }

    #[test]
    fn exponential_schedule_saturates_instead_of_overflowing() {
        let schedule = RetrySchedule::exponential(secs(1), 1e6, MAX_SCHEDULED_DELAY, 51).unwrap();
        assert_eq!(schedule.delays().len(), MAX_RETRIES);
        assert_eq!(schedule.delays()[0], secs(1));
        assert!(schedule.delays()[2..]
            .iter()
            .all(|d| *d == MAX_SCHEDULED_DELAY));
    }

    #[test]
    fn exponential_schedule_rejects_bad_parameters() {
        assert!(matches!(
            RetrySchedule::exponential(secs(1), 0.5, secs(60), 5),
            Err(RetryScheduleError::InvalidFactor { .. })
        ));
        assert!(matches!(
            RetrySchedule::exponential(secs(1), f64::NAN, secs(60), 5),
            Err(RetryScheduleError::InvalidFactor { .. })
        ));
        assert_eq!(
            RetrySchedule::exponential(secs(1), 2.0, secs(60), 1),
            Err(RetryScheduleError::Empty)
        );
        assert_eq!(
            RetrySchedule::exponential(secs(1), 2.0, secs(60), 52),
            Err(RetryScheduleError::TooMany { count: 51 })
        );
        let eight_days = secs(8 * 86_400);
        assert!(matches!(
            RetrySchedule::exponential(eight_days, 2.0, eight_days, 5),
            Err(RetryScheduleError::TooLarge { position: 1, .. })
        ));
    }

    #[test]
    fn attempts_that_cannot_succeed_by_retrying_are_final() {
        for class in [ErrorClass::Blocked, ErrorClass::Invalid] {
            let attempt = FinishedAttempt {
                error_class: Some(class),
                ..failed(1, 0, None)
            };
            assert_eq!(
                RetrySchedule::default().decide(&attempt, &mut rng()),
                Decision::Final,
                "{class:?}"
            );
        }
        assert_eq!(
            Decision::Final.next_state(false),
            (DeliveryState::Failed, None)
        );
    }

    #[test]
    fn client_errors_are_retried_unless_the_policy_says_final() {
        let schedule = RetrySchedule::default();
        for status in [400, 401, 404, 422] {
            let attempt = failed(1, status, None);
            assert!(matches!(
                schedule.decide_with(&attempt, true, ClientErrors::Retry, &mut rng()),
                Decision::RetryAfter(_)
            ));
            assert_eq!(
                schedule.decide_with(&attempt, true, ClientErrors::Final, &mut rng()),
                Decision::Final,
                "{status}"
            );
        }
        // 408 and 429 ask to come back later; 5xx is the receiver's trouble.
        for status in [408, 429, 500, 503] {
            let attempt = failed(1, status, None);
            assert!(matches!(
                schedule.decide_with(&attempt, true, ClientErrors::Final, &mut rng()),
                Decision::RetryAfter(_)
            ));
        }
    }

    #[test]
    fn without_jitter_the_schedule_is_followed_exactly() {
        let schedule = RetrySchedule::parse("1,2").expect("valid");
        for (attempt, expected) in [(1, secs(1)), (2, secs(2))] {
            assert_eq!(
                schedule.decide_with(
                    &failed(attempt, 500, None),
                    false,
                    ClientErrors::Retry,
                    &mut rng()
                ),
                Decision::RetryAfter(expected)
            );
        }
        assert_eq!(
            schedule.decide_with(
                &failed(3, 500, None),
                false,
                ClientErrors::Retry,
                &mut rng()
            ),
            Decision::Exhausted
        );
    }
}
