//! The contract of retention: payload expiry, pruning by age in bounded
//! batches, nothing in flight touched, and the job lease.

use chrono::{DateTime, Duration, Utc};
use herald_core::{AttemptId, MessageId, TenantId};
use herald_store::{Application, AttemptTrigger, DeliveryState, Endpoint, Message, Store};

use super::{application, attempt_of, endpoint, finished, id_ref, message, tenant};

/// A message created at `at` (its id carries that second, `n` apart from
/// the others made at once) that expires at `expires_at`.
fn message_at(app: &Application, at: DateTime<Utc>, n: i64, expires_at: DateTime<Utc>) -> Message {
    let at = at + Duration::seconds(n);
    Message {
        id: MessageId::lower_bound_at(at),
        created_at: at,
        expires_at,
        ..message(&app.id)
    }
}

/// Stores `msg` for `ep` with one attempt made at the message's time that
/// leaves its delivery in `state`.
async fn delivered(
    store: &dyn Store,
    t: &TenantId,
    msg: &Message,
    ep: &Endpoint,
    state: DeliveryState,
) {
    store
        .insert_message(t, msg, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    let mut attempt = attempt_of(msg, ep, 500, AttemptTrigger::Scheduled);
    attempt.id = AttemptId::lower_bound_at(msg.created_at);
    attempt.created_at = msg.created_at;
    store
        .record_attempt(t, &attempt, &finished(state))
        .await
        .unwrap();
}

async fn payload_of(store: &dyn Store, t: &TenantId, msg: &Message) -> Option<Vec<u8>> {
    store
        .message(t, &msg.app_id, &id_ref(msg.id.as_str()))
        .await
        .unwrap()
        .expect("message still stored")
        .payload
}

pub async fn retention_expires_payloads_and_prunes_old_rows_but_nothing_in_flight(
    store: &dyn Store,
) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let now = herald_store::now();
    let old = now - Duration::days(100);

    // Three old messages, finished, with expired payloads; one old message
    // still being delivered; a fresh one whose payload expired; a fresh one
    // whose payload has not.
    let finished_old: Vec<Message> = (0..3)
        .map(|n| message_at(&app, old, n, old + Duration::days(1)))
        .collect();
    for msg in &finished_old {
        delivered(store, &t, msg, &ep, DeliveryState::Failed).await;
    }
    let in_flight = message_at(&app, old, 10, old + Duration::days(1));
    delivered(store, &t, &in_flight, &ep, DeliveryState::Pending).await;
    let expired = message_at(&app, now, -20, now - Duration::seconds(1));
    delivered(store, &t, &expired, &ep, DeliveryState::Succeeded).await;
    let fresh = message_at(&app, now, -10, now + Duration::days(1));
    delivered(store, &t, &fresh, &ep, DeliveryState::Succeeded).await;

    assert_eq!(
        store.oldest_message().await.unwrap(),
        Some(finished_old[0].created_at)
    );

    // Payloads: the three old ones and the fresh expired one, two a batch;
    // the one in flight keeps its payload.
    assert_eq!(store.expire_payloads(now, 2).await.unwrap(), 2);
    assert_eq!(store.expire_payloads(now, 2).await.unwrap(), 2);
    assert_eq!(store.expire_payloads(now, 2).await.unwrap(), 0);
    assert_eq!(payload_of(store, &t, &expired).await, None);
    assert!(payload_of(store, &t, &in_flight).await.is_some());
    assert!(payload_of(store, &t, &fresh).await.is_some());

    // Rows older than 90 days: attempts, deliveries, then messages, two a
    // batch.
    let before = now - Duration::days(90);
    // Each batch goes on after the last key the one before deleted.
    let first = store.prune_attempts(before, "", 2).await.unwrap();
    assert_eq!(first.removed, 2);
    let second = store
        .prune_attempts(before, &first.cursor, 2)
        .await
        .unwrap();
    assert_eq!(second.removed, 1);
    assert!(second.cursor > first.cursor);
    let last = store
        .prune_attempts(before, &second.cursor, 2)
        .await
        .unwrap();
    assert_eq!((last.removed, &last.cursor), (0, &second.cursor));
    // Deliveries by message: two messages' worth, then the third's; the
    // message in flight is passed over.
    let first = store.prune_deliveries(before, "", 2).await.unwrap();
    assert_eq!(first.removed, 2);
    let second = store
        .prune_deliveries(before, &first.cursor, 2)
        .await
        .unwrap();
    assert_eq!(second.removed, 1);
    let last = store
        .prune_deliveries(before, &second.cursor, 2)
        .await
        .unwrap();
    assert_eq!((last.removed, &last.cursor), (0, &second.cursor));
    assert_eq!(
        store.prune_messages(before, "", 2).await.unwrap().removed,
        2
    );
    assert_eq!(
        store.prune_messages(before, "", 2).await.unwrap().removed,
        1
    );
    assert_eq!(
        store.prune_messages(before, "", 2).await.unwrap().removed,
        0
    );
    for msg in &finished_old {
        assert!(store
            .message(&t, &app.id, &id_ref(msg.id.as_str()))
            .await
            .unwrap()
            .is_none());
        assert!(store.delivery(&t, &msg.id, &ep.id).await.unwrap().is_none());
    }
    // What is in flight or younger stays, with its attempts.
    for msg in [&in_flight, &expired, &fresh] {
        assert!(store
            .message(&t, &app.id, &id_ref(msg.id.as_str()))
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store.attempts_of_message(&t, &msg.id).await.unwrap().len(),
            1
        );
    }
    assert_eq!(
        store.oldest_message().await.unwrap(),
        Some(in_flight.created_at)
    );

    // Once its delivery ends, the old message goes too.
    store
        .record_attempt(
            &t,
            &attempt_of(&in_flight, &ep, 200, AttemptTrigger::Scheduled),
            &finished(DeliveryState::Succeeded),
        )
        .await
        .unwrap();
    assert_eq!(store.expire_payloads(now, 10).await.unwrap(), 1);
    assert_eq!(
        store
            .prune_deliveries(before, "", 10)
            .await
            .unwrap()
            .removed,
        1
    );
    assert_eq!(
        store.prune_messages(before, "", 10).await.unwrap().removed,
        1
    );
    assert!(store
        .attempts_of_message(&t, &in_flight.id)
        .await
        .unwrap()
        .is_empty());
}

pub async fn the_job_lease_has_one_holder_until_it_lapses(store: &dyn Store) {
    let now = herald_store::now();
    let until = now + Duration::seconds(60);
    assert!(store.take_lease("job", "a", now, until).await.unwrap());
    // The holder renews; another waits while it runs.
    assert!(store.take_lease("job", "a", now, until).await.unwrap());
    assert!(!store.take_lease("job", "b", now, until).await.unwrap());
    // Another job's lease is its own.
    assert!(store.take_lease("other", "b", now, until).await.unwrap());
    // Lapsed, it is taken over; given up, it is free at once.
    let later = until + Duration::seconds(1);
    assert!(store
        .take_lease("job", "b", later, later + Duration::seconds(60))
        .await
        .unwrap());
    assert!(!store.take_lease("job", "a", later, later).await.unwrap());
    store.release_lease("job", "a").await.unwrap();
    assert!(!store.take_lease("job", "a", later, later).await.unwrap());
    store.release_lease("job", "b").await.unwrap();
    assert!(store.take_lease("job", "a", later, later).await.unwrap());
}
