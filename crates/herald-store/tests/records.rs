//! The records' and pages' own rules, which need no database: secret
//! rotation, stats bucket boundaries, and where a payload-bounded page ends.

use chrono::{DateTime, Utc};
use herald_core::EndpointSecret;
use herald_store::page::payload_cut;
use herald_store::{EndpointSecrets, StatsGranularity};

#[test]
fn rotation_keeps_old_secret_for_the_grace_period_and_caps_history() {
    let now = Utc::now();
    let mut secrets = EndpointSecrets::new(EndpointSecret::generate());
    let first = secrets.current.clone();
    secrets.rotate(EndpointSecret::generate(), chrono::Duration::hours(1), now);
    assert_eq!(secrets.valid_at(now).len(), 2);
    assert!(secrets.valid_at(now).contains(&&first));
    assert_eq!(secrets.valid_at(now + chrono::Duration::hours(2)).len(), 1);
    for _ in 0..20 {
        secrets.rotate(EndpointSecret::generate(), chrono::Duration::hours(1), now);
    }
    assert_eq!(secrets.previous.len(), EndpointSecrets::MAX_PREVIOUS);
}

#[test]
fn stats_granularities_truncate_to_their_start() {
    let at = DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456Z")
        .unwrap()
        .with_timezone(&Utc);
    let minute = StatsGranularity::Minute.truncate(at);
    let hour = StatsGranularity::Hour.truncate(at);
    assert_eq!(minute.to_rfc3339(), "2024-05-06T07:08:00+00:00");
    assert_eq!(hour.to_rfc3339(), "2024-05-06T07:00:00+00:00");
    assert_eq!(StatsGranularity::Minute.truncate(minute), minute);
    let before_epoch = DateTime::from_timestamp(-1, 0).unwrap();
    assert_eq!(
        StatsGranularity::Minute.truncate(before_epoch).timestamp(),
        -60
    );
    for g in [StatsGranularity::Minute, StatsGranularity::Hour] {
        assert_eq!(StatsGranularity::parse(g.as_str()), Some(g));
    }
    assert_eq!(StatsGranularity::parse("day"), None);
}

#[test]
fn rotation_with_zero_grace_invalidates_the_old_secret_at_once() {
    let now = Utc::now();
    let mut secrets = EndpointSecrets::new(EndpointSecret::generate());
    secrets.rotate(EndpointSecret::generate(), chrono::Duration::zero(), now);
    assert_eq!(secrets.valid_at(now).len(), 1);
}

fn sizes(list: &[i64]) -> Vec<(String, Option<i64>)> {
    list.iter()
        .enumerate()
        .map(|(i, s)| (format!("k{i}"), Some(*s)))
        .collect()
}

#[test]
fn a_page_within_the_budget_is_not_cut() {
    assert_eq!(payload_cut(&sizes(&[10, 10, 10]), 3, 30), None);
    // The row past the limit only tells that more exist; its size is not counted.
    assert_eq!(payload_cut(&sizes(&[10, 10, 10, 1_000]), 3, 30), None);
    assert_eq!(payload_cut(&[], 50, 0), None);
}

#[test]
fn a_page_ends_before_the_payload_that_would_go_past_the_budget() {
    let cut = payload_cut(&sizes(&[10, 10, 11, 5]), 50, 30).expect("cut");
    assert_eq!(cut.count, 2);
    assert_eq!(cut.last_key, "k1");
}

#[test]
fn the_first_message_is_listed_whatever_its_size() {
    assert_eq!(payload_cut(&sizes(&[100]), 50, 30), None);
    let cut = payload_cut(&sizes(&[100, 1]), 50, 30).expect("cut");
    assert_eq!((cut.count, cut.last_key.as_str()), (1, "k0"));
}

#[test]
fn expunged_payloads_count_nothing() {
    let rows = vec![("a".to_owned(), None), ("b".to_owned(), Some(30))];
    assert_eq!(payload_cut(&rows, 50, 30), None);
}
