//! The contract of the dead-letter view: `list_dead_letters`,
//! `redrive_dead_letters` and the worker drain's `confirm_dead_letters`.

use herald_core::{EventTypeName, MessageId, TenantId};
use herald_store::{
    dead_letter_key, AttemptTrigger, Cursor, DeadDelivery, DeadLetterCheck, DeadLetterFilter,
    DeadLetterKey, DeliveryKey, DeliveryState, Endpoint, ListQuery, Message, Ordering, Store,
};

use super::{application, attempt_of, endpoint, finished, message, tenant};

/// Stores `msg` for `endpoints` and records one failed attempt per endpoint
/// that leaves the delivery dead.
async fn dead_message(store: &dyn Store, t: &TenantId, msg: &Message, endpoints: &[&Endpoint]) {
    let ids: Vec<_> = endpoints.iter().map(|e| e.id.clone()).collect();
    store.insert_message(t, msg, &ids).await.unwrap();
    for ep in endpoints {
        store
            .record_attempt(
                t,
                &attempt_of(msg, ep, 500, AttemptTrigger::Scheduled),
                &finished(DeliveryState::Dead),
            )
            .await
            .unwrap();
    }
}

fn keys(items: &[DeadDelivery]) -> Vec<String> {
    items.iter().map(DeadDelivery::key).collect()
}

fn newest_first(query_limit: u16) -> ListQuery {
    ListQuery {
        limit: query_limit,
        cursor: None,
        ordering: Ordering::Descending,
    }
}

pub async fn dead_letters_are_listed_newest_first_filtered_and_paged(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let (a, b) = (endpoint(&app.id, None), endpoint(&app.id, None));
    store.insert_endpoint(&t, &a).await.unwrap();
    store.insert_endpoint(&t, &b).await.unwrap();

    let mut old = message(&app.id);
    old.created_at -= chrono::Duration::hours(2);
    let mut other_type = message(&app.id);
    other_type.event_type = EventTypeName::parse("c.d").unwrap();
    let delivered = message(&app.id);
    dead_message(store, &t, &old, &[&a, &b]).await;
    dead_message(store, &t, &other_type, &[&a, &b]).await;
    dead_message(store, &t, &delivered, &[&a]).await;
    // A delivery that is not dead is not listed.
    let alive = message(&app.id);
    store
        .insert_message(&t, &alive, std::slice::from_ref(&b.id))
        .await
        .unwrap();

    let all = store
        .list_dead_letters(&t, &app.id, &newest_first(50), &DeadLetterFilter::default())
        .await
        .unwrap();
    assert!(all.done);
    let mut expected: Vec<String> = [
        (&old.id, &a.id),
        (&old.id, &b.id),
        (&other_type.id, &a.id),
        (&other_type.id, &b.id),
        (&delivered.id, &a.id),
    ]
    .into_iter()
    .map(|(m, e)| dead_letter_key(m, e))
    .collect();
    expected.sort();
    expected.reverse();
    assert_eq!(keys(&all.items), expected);
    let first = all.items.iter().find(|d| d.msg_id == old.id).unwrap();
    assert_eq!(first.attempts, 1);
    assert_eq!(first.last_status_code, Some(500));
    assert_eq!(
        first.last_error_class,
        Some(herald_core::ErrorClass::Http5xx)
    );
    assert_eq!(first.event_type.as_str(), "a.b");
    assert_eq!(first.msg_created_at, old.created_at);

    // Keyset pages of two cover the list once, in order, both ways.
    let mut walked = Vec::new();
    let mut query = newest_first(2);
    loop {
        let page = store
            .list_dead_letters(&t, &app.id, &query, &DeadLetterFilter::default())
            .await
            .unwrap();
        walked.extend(keys(&page.items));
        if page.done {
            break;
        }
        query.cursor = Some(Cursor::After(page.items.last().unwrap().key()));
    }
    assert_eq!(walked, expected);
    let back = ListQuery {
        limit: 2,
        cursor: Some(Cursor::Before(expected[3].clone())),
        ordering: Ordering::Descending,
    };
    let page = store
        .list_dead_letters(&t, &app.id, &back, &DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(keys(&page.items), expected[1..3].to_vec());

    let by = |filter: DeadLetterFilter| {
        let app_id = app.id.clone();
        let t = t.clone();
        async move {
            let page = store
                .list_dead_letters(&t, &app_id, &newest_first(50), &filter)
                .await
                .unwrap();
            let mut keys = keys(&page.items);
            keys.sort();
            keys
        }
    };
    let sorted = |pairs: &[(&MessageId, &herald_core::EndpointId)]| {
        let mut keys: Vec<String> = pairs.iter().map(|(m, e)| dead_letter_key(m, e)).collect();
        keys.sort();
        keys
    };
    assert_eq!(
        by(DeadLetterFilter {
            event_types: Some(vec![EventTypeName::parse("c.d").unwrap()]),
            ..DeadLetterFilter::default()
        })
        .await,
        sorted(&[(&other_type.id, &a.id), (&other_type.id, &b.id)])
    );
    assert_eq!(
        by(DeadLetterFilter {
            endpoint_id: Some(b.id.clone()),
            ..DeadLetterFilter::default()
        })
        .await,
        sorted(&[(&old.id, &b.id), (&other_type.id, &b.id)])
    );
    let hour_ago = herald_store::now() - chrono::Duration::hours(1);
    assert_eq!(
        by(DeadLetterFilter {
            before: Some(hour_ago),
            ..DeadLetterFilter::default()
        })
        .await,
        sorted(&[(&old.id, &a.id), (&old.id, &b.id)])
    );
    assert_eq!(
        by(DeadLetterFilter {
            after: Some(hour_ago),
            msg_ids: Some(vec![delivered.id.clone(), old.id.clone()]),
            ..DeadLetterFilter::default()
        })
        .await,
        sorted(&[(&delivered.id, &a.id)])
    );

    // Another tenant sees none of it, even naming the application.
    let stranger = tenant(store, "stranger").await;
    let theirs = store
        .list_dead_letters(
            &stranger,
            &app.id,
            &newest_first(50),
            &DeadLetterFilter::default(),
        )
        .await
        .unwrap();
    assert!(theirs.items.is_empty());
}

pub async fn redrive_requests_a_fresh_schedule_in_bounded_batches(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let (a, b) = (endpoint(&app.id, None), endpoint(&app.id, None));
    store.insert_endpoint(&t, &a).await.unwrap();
    store.insert_endpoint(&t, &b).await.unwrap();
    let msgs: Vec<Message> = (0..3).map(|_| message(&app.id)).collect();
    for msg in &msgs {
        dead_message(store, &t, msg, &[&a, &b]).await;
    }

    // Nothing of another tenant's is redriven.
    let stranger = tenant(store, "stranger").await;
    let none = store
        .redrive_dead_letters(&stranger, &app.id, &DeadLetterFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(none, 0);

    // A filtered redrive takes exactly what matches.
    let only = DeadLetterFilter {
        msg_ids: Some(vec![msgs[0].id.clone()]),
        endpoint_id: Some(b.id.clone()),
        ..DeadLetterFilter::default()
    };
    assert_eq!(
        store
            .redrive_dead_letters(&t, &app.id, &only, 100)
            .await
            .unwrap(),
        1
    );
    let redriven = store
        .delivery(&t, &msgs[0].id, &b.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redriven.state, DeliveryState::Pending);
    assert!(redriven.manual);
    assert_eq!(redriven.attempts, 0, "a redrive starts a fresh schedule");
    let due = store
        .claim_due_deliveries(
            herald_store::now() + chrono::Duration::seconds(1),
            chrono::Duration::seconds(30),
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery.msg_id, msgs[0].id);

    // The rest goes in batches of at most `limit`, then nothing is left.
    let all = DeadLetterFilter::default();
    let mut batches = Vec::new();
    loop {
        let n = store
            .redrive_dead_letters(&t, &app.id, &all, 2)
            .await
            .unwrap();
        batches.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(batches, vec![2, 2, 1, 0]);
    let left = store
        .list_dead_letters(&t, &app.id, &newest_first(50), &all)
        .await
        .unwrap();
    assert!(left.items.is_empty());
}

pub async fn drained_dead_letters_mark_only_deliveries_still_at_their_attempt(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let a = endpoint(&app.id, None);
    store.insert_endpoint(&t, &a).await.unwrap();
    let key = |msg: &Message, attempt: u32| DeadLetterKey {
        delivery: DeliveryKey {
            tenant_id: t.clone(),
            app_id: app.id.clone(),
            msg_id: msg.id.clone(),
            endpoint_id: a.id.clone(),
        },
        attempt,
    };

    let dead = message(&app.id);
    dead_message(store, &t, &dead, &[&a]).await;
    // In flight at attempt 1 whose attempt could not be recorded.
    let stuck = message(&app.id);
    store
        .insert_message_claimed(&t, &stuck, std::slice::from_ref(&a.id))
        .await
        .unwrap();
    // Dead, then redriven before its letter was drained.
    let redriven = message(&app.id);
    dead_message(store, &t, &redriven, &[&a]).await;
    store
        .redrive_dead_letters(
            &t,
            &app.id,
            &DeadLetterFilter {
                msg_ids: Some(vec![redriven.id.clone()]),
                ..DeadLetterFilter::default()
            },
            10,
        )
        .await
        .unwrap();
    // A letter of a message that is gone, and one of another tenant.
    let gone = message(&app.id);
    let mut foreign = key(&stuck, 1);
    foreign.delivery.tenant_id = tenant(store, "stranger").await;

    let check = store
        .confirm_dead_letters(&[
            key(&dead, 1),
            key(&stuck, 1),
            key(&redriven, 1),
            key(&gone, 1),
            foreign,
        ])
        .await
        .unwrap();
    assert_eq!(
        check,
        DeadLetterCheck {
            already_dead: 1,
            marked_dead: 1,
            moved_on: 3,
        }
    );
    let state = |msg: &Message| {
        let msg_id = msg.id.clone();
        let endpoint_id = a.id.clone();
        let t = t.clone();
        async move {
            store
                .delivery(&t, &msg_id, &endpoint_id)
                .await
                .unwrap()
                .unwrap()
                .state
        }
    };
    assert_eq!(state(&stuck).await, DeliveryState::Dead);
    assert_eq!(state(&redriven).await, DeliveryState::Pending);
    assert_eq!(state(&dead).await, DeliveryState::Dead);
    let listed = store
        .list_dead_letters(&t, &app.id, &newest_first(50), &DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);

    // A stale letter (its delivery has had more attempts since) moves nothing.
    let later = message(&app.id);
    store
        .insert_message_claimed(&t, &later, std::slice::from_ref(&a.id))
        .await
        .unwrap();
    let check = store.confirm_dead_letters(&[key(&later, 4)]).await.unwrap();
    assert_eq!(check.moved_on, 1);
    assert_eq!(state(&later).await, DeliveryState::Sending);
}
