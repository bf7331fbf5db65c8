//! The behaviour every `Store` implementation must show, written once against
//! `&dyn Store` so each backend's test file runs the same checks.
//!
//! A backend's test file calls [`contract_tests!`] once; a new contract test
//! is added to that macro's list below, and so runs on every backend.

/// Defines one `#[tokio::test]` per contract test. `$fresh` is an async
/// function returning `Option<G>` where `G` has a `store` field (a fresh,
/// migrated store kept alive by the guard `G`); `None` skips the test.
macro_rules! contract_tests {
    ($fresh:ident) => {
        $crate::contract::contract_tests!(
            @each $fresh;
            objects_of_one_tenant_are_invisible_to_another,
            records_round_trip_unchanged,
            endpoint_health_counts_failures_and_guards_the_probe,
            replay_missing_adds_only_what_the_endpoint_receives_and_never_got,
            keyset_pages_cover_everything_once_in_both_orders,
            api_keys_are_found_by_hash_until_revoked,
            missing_event_types_ignores_other_tenants_and_archived_ones,
            settings_keep_their_first_value,
            updates_lose_to_a_concurrent_change,
            unique_violations_name_their_constraint,
            attempts_move_deliveries_through_their_states,
            due_deliveries_are_claimed_once_until_their_lease_ends,
            deliveries_claimed_at_insert_wait_for_their_lease_or_return,
            concurrent_claimers_never_share_a_delivery,
            concurrent_writes_all_succeed,
            released_claims_are_due_again_at_their_own_time,
            attempt_listings_filter_and_stay_in_their_tenant,
            listings_filter_by_channel_event_type_and_time,
            manual_attempts_are_requested_through_the_outbox,
            stats_count_each_attempt_once,
            concurrent_stats_batches_add_up_exactly,
            stats_windows_select_by_start_endpoint_and_app,
            roll_up_keeps_totals_and_quantiles,
            roll_up_forgets_old_seen_attempts,
            expired_hour_buckets_are_deleted,
            message_pages_end_early_to_keep_payloads_within_a_budget,
            logged_out_tokens_stay_revoked_until_they_expire,
            a_batch_of_messages_is_stored_but_for_taken_event_ids,
            a_batch_of_attempts_moves_each_delivery,
            delivery_targets_load_a_batch_within_each_key_s_tenant,
            fan_out_candidates_are_each_application_s_enabled_endpoints,
            two_attempts_of_one_delivery_in_a_batch_both_count,
            parked_deliveries_are_handed_out_when_due,
            the_operational_application_is_hidden_and_receives_operational_events,
            dead_letters_are_listed_newest_first_filtered_and_paged,
            redrive_requests_a_fresh_schedule_in_bounded_batches,
            drained_dead_letters_mark_only_deliveries_still_at_their_attempt,
            retention_expires_payloads_and_prunes_old_rows_but_nothing_in_flight,
            the_job_lease_has_one_holder_until_it_lapses,
            sources_are_tenant_scoped_and_go_with_their_application,
        );
    };
    (@each $fresh:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(fresh) = $fresh().await else { return };
                crate::contract::$name(&fresh.store).await;
            }
        )*
    };
}
pub(crate) use contract_tests;

mod dead_letters;
mod operational;
mod retention;
mod sources;
mod stats;
pub use dead_letters::*;
pub use operational::*;
pub use retention::*;
pub use sources::*;
pub use stats::*;

use chrono::Utc;
use herald_core::policy::RetryPolicySpec;
use herald_core::{
    ApplicationId, AttemptId, EndpointHeaders, EndpointId, EndpointSecret, EndpointUrl, ErrorClass,
    EventTypeFilter, EventTypeName, IdOrUid, MessageId, TenantId, Uid,
};
use herald_store::{
    ApiKey, Application, Attempt, AttemptFilter, AttemptTrigger, Cursor, DeliveryCounts,
    DeliveryFilter, DeliveryState, DeliveryStatus, DeliveryUpdate, Endpoint, EndpointSecrets,
    EventType, ListQuery, Message, MessageFilter, Ordering, Payloads, Store, Tenant,
};

pub async fn tenant(store: &dyn Store, name: &str) -> TenantId {
    let tenant = Tenant {
        id: TenantId::new(),
        name: name.into(),
        created_at: herald_store::now(),
    };
    store.insert_tenant(&tenant).await.unwrap();
    tenant.id
}

pub fn application(uid: Option<&str>) -> Application {
    let now = herald_store::now();
    Application {
        id: ApplicationId::new(),
        uid: uid.map(|u| Uid::parse(u).unwrap()),
        name: "app".into(),
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        throttle_rate: Some(5),
        retry_policy: None,
        created_at: now,
        updated_at: now,
    }
}

pub fn endpoint(app_id: &ApplicationId, uid: Option<&str>) -> Endpoint {
    let now = herald_store::now();
    Endpoint {
        id: EndpointId::new(),
        app_id: app_id.clone(),
        uid: uid.map(|u| Uid::parse(u).unwrap()),
        url: EndpointUrl::parse("https://example.com/hook").unwrap(),
        description: "d".into(),
        version: 1,
        disabled: false,
        event_types: Some(vec![EventTypeFilter::parse("a.b").unwrap()]),
        channels: None,
        metadata: Default::default(),
        throttle_rate: None,
        headers: EndpointHeaders::default(),
        secrets: EndpointSecrets::new(EndpointSecret::generate()),
        signature_scheme: Default::default(),
        retry_policy: None,
        app_retry_policy: None,
        health: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

/// Listings with every payload, as before payload budgets.
const ALL_PAYLOADS: Payloads = Payloads::UpTo(usize::MAX);

fn id_ref(s: &str) -> IdOrUid {
    IdOrUid::parse("id", s).unwrap()
}

pub async fn objects_of_one_tenant_are_invisible_to_another(store: &dyn Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    let app = application(Some("shared-uid"));
    store.insert_application(&a, &app).await.unwrap();
    let ep = endpoint(&app.id, Some("ep-uid"));
    store.insert_endpoint(&a, &ep).await.unwrap();

    assert!(store
        .application(&b, &id_ref(app.id.as_str()))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .application(&b, &id_ref("shared-uid"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_applications(&b, &ListQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .endpoint(&b, &app.id, &id_ref(ep.id.as_str()))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_endpoints(&b, &app.id, &ListQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(!store.delete_endpoint(&b, &app.id, &ep.id).await.unwrap());
    assert!(!store.delete_application(&b, &app.id).await.unwrap());

    // An update issued with the wrong tenant changes nothing.
    let mut hijacked = app.clone();
    hijacked.name = "hijacked".into();
    assert!(!store
        .update_application(&b, &hijacked, app.updated_at)
        .await
        .unwrap());
    let stored = store
        .application(&a, &id_ref(app.id.as_str()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name, "app");

    // uids are unique per tenant, not globally.
    store
        .insert_application(&b, &application(Some("shared-uid")))
        .await
        .unwrap();
    let clash = store
        .insert_application(&a, &application(Some("shared-uid")))
        .await;
    assert!(clash
        .unwrap_err()
        .is_conflict_on("application_tenant_id_uid_key"));
}

pub async fn records_round_trip_unchanged(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app_policy: RetryPolicySpec =
        serde_json::from_str(r#"{"schedule": [5], "clientErrors": "final"}"#).unwrap();
    let app = Application {
        retry_policy: Some(app_policy.clone()),
        ..application(Some("rt"))
    };
    store.insert_application(&t, &app).await.unwrap();
    let loaded = store.application(&t, &id_ref("rt")).await.unwrap().unwrap();
    assert_eq!(loaded.id, app.id);
    assert_eq!(loaded.metadata, app.metadata);
    assert_eq!(loaded.throttle_rate, Some(5));
    assert_eq!(loaded.retry_policy, Some(app_policy.clone()));
    assert_eq!(loaded.created_at, app.created_at);

    // An endpoint is read with its own policy and its application's.
    let ep_policy: RetryPolicySpec = serde_json::from_str(
        r#"{"exponential": {"initialDelay": 1, "multiplier": 2.5, "maxDelay": 60, "maxAttempts": 4}, "jitter": false}"#,
    )
    .unwrap();
    let with_policy = Endpoint {
        retry_policy: Some(ep_policy.clone()),
        ..endpoint(&app.id, Some("with-policy"))
    };
    store.insert_endpoint(&t, &with_policy).await.unwrap();
    let loaded = store
        .endpoint(&t, &app.id, &id_ref("with-policy"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.retry_policy, Some(ep_policy));
    assert_eq!(loaded.app_retry_policy, Some(app_policy));

    let mut ep = endpoint(&app.id, None);
    ep.secrets.rotate(
        EndpointSecret::generate(),
        chrono::Duration::hours(1),
        Utc::now(),
    );
    store.insert_endpoint(&t, &ep).await.unwrap();
    let loaded = store
        .endpoint(&t, &app.id, &id_ref(ep.id.as_str()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.secrets.current, ep.secrets.current);
    assert_eq!(loaded.secrets.previous.len(), 1);
    assert_eq!(loaded.event_types, ep.event_types);
    assert_eq!(loaded.retry_policy, None);
    assert_eq!(loaded.updated_at, ep.updated_at);

    // Deleting an application takes its endpoints with it.
    assert!(store.delete_application(&t, &app.id).await.unwrap());
    assert!(store
        .endpoint(&t, &app.id, &id_ref(ep.id.as_str()))
        .await
        .unwrap()
        .is_none());
}

async fn reload(store: &dyn Store, t: &TenantId, ep: &Endpoint) -> Endpoint {
    store
        .endpoint(t, &ep.app_id, &id_ref(ep.id.as_str()))
        .await
        .unwrap()
        .unwrap()
}

pub async fn endpoint_health_counts_failures_and_guards_the_probe(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let t0 = herald_store::now();
    let first = store
        .endpoint_failed(&t, &ep.id, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.consecutive_failures, 1);
    assert_eq!(first.failing_since, Some(t0));
    let later = t0 + chrono::Duration::seconds(5);
    let second = store
        .endpoint_failed(&t, &ep.id, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.consecutive_failures, 2);
    assert_eq!(
        second.failing_since,
        Some(t0),
        "failing since the first failure"
    );
    // Another tenant's endpoint of that id is not touched.
    let other = tenant(store, "other").await;
    assert!(store
        .endpoint_failed(&other, &ep.id, t0)
        .await
        .unwrap()
        .is_none());

    // An open breaker: before its time no probe; after it, exactly one.
    store.open_breaker(&t, &ep.id, later).await.unwrap();
    let probe_until = later + chrono::Duration::seconds(60);
    assert!(!store
        .claim_breaker_probe(&t, &ep.id, t0, probe_until)
        .await
        .unwrap());
    assert!(store
        .claim_breaker_probe(&t, &ep.id, later, probe_until)
        .await
        .unwrap());
    assert!(!store
        .claim_breaker_probe(&t, &ep.id, later, probe_until)
        .await
        .unwrap());
    let loaded = reload(store, &t, &ep).await;
    assert_eq!(loaded.health.breaker_open_until, Some(probe_until));
    assert_eq!(loaded.health.consecutive_failures, 2);
    // Health is not the endpoint's version.
    assert_eq!(loaded.updated_at, ep.updated_at);

    // A success clears it all, once, and what was parked for the endpoint
    // is due at once.
    let parked = message(&app.id);
    store
        .insert_message(&t, &parked, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    let far = herald_store::now() + chrono::Duration::hours(1);
    store
        .park_delivery(&t, &parked.id, &ep.id, far)
        .await
        .unwrap();
    assert!(store.endpoint_recovered(&t, &ep.id).await.unwrap());
    let released = store
        .delivery(&t, &parked.id, &ep.id)
        .await
        .unwrap()
        .unwrap();
    assert!(released
        .next_attempt_at
        .is_some_and(|due| due <= herald_store::now()));
    assert!(!store.endpoint_recovered(&t, &ep.id).await.unwrap());
    let healthy = reload(store, &t, &ep).await;
    assert_eq!(healthy.health, herald_store::EndpointHealth::default());

    // Disabled with a reason; enabling through an update starts afresh.
    store.endpoint_failed(&t, &ep.id, t0).await.unwrap();
    assert!(store
        .disable_endpoint(&t, &app.id, &ep.id, "the endpoint answered 410 Gone")
        .await
        .unwrap());
    let disabled = reload(store, &t, &ep).await;
    assert!(disabled.disabled);
    assert_eq!(
        disabled.health.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert!(disabled.health.disabled_at.is_some());
    assert_eq!(disabled.health.consecutive_failures, 1);
    let mut enabled = disabled.clone();
    enabled.disabled = false;
    enabled.health.disabled_at = None;
    enabled.health.disabled_reason = None;
    enabled.updated_at = herald_store::now_after(disabled.updated_at);
    assert!(store
        .update_endpoint(&t, &enabled, disabled.updated_at)
        .await
        .unwrap());
    assert_eq!(
        reload(store, &t, &ep).await.health,
        herald_store::EndpointHealth::default()
    );
}

pub async fn keyset_pages_cover_everything_once_in_both_orders(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let app = application(None);
        store.insert_application(&t, &app).await.unwrap();
        ids.push(app.id.to_string());
    }
    ids.sort();
    for ordering in [Ordering::Ascending, Ordering::Descending] {
        let mut expected = ids.clone();
        if ordering == Ordering::Descending {
            expected.reverse();
        }
        let mut query = ListQuery {
            limit: 2,
            cursor: None,
            ordering,
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list_applications(&t, &query).await.unwrap();
            seen.extend(page.items.iter().map(|a| a.id.to_string()));
            if page.done {
                break;
            }
            query.cursor = Some(Cursor::After(seen.last().unwrap().clone()));
        }
        assert_eq!(seen, expected, "{ordering:?}");
        // Backwards from the last item returns the two before it, in list order.
        let back = ListQuery {
            limit: 2,
            cursor: Some(Cursor::Before(expected[4].clone())),
            ordering,
        };
        let page = store.list_applications(&t, &back).await.unwrap();
        let got: Vec<String> = page.items.iter().map(|a| a.id.to_string()).collect();
        assert_eq!(got, expected[2..4].to_vec(), "{ordering:?} backwards");
    }
}

pub async fn api_keys_are_found_by_hash_until_revoked(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let key = ApiKey {
        id: herald_core::ApiKeyId::new(),
        tenant_id: t.clone(),
        name: "k".into(),
        prefix: "hsk_abcdefgh".into(),
        key_hash: vec![7; 32],
        created_at: herald_store::now(),
        revoked_at: None,
    };
    store.insert_api_key(&t, &key).await.unwrap();
    // Two keys never share a hash (the lookup would be ambiguous).
    let twin = ApiKey {
        id: herald_core::ApiKeyId::new(),
        ..key.clone()
    };
    let err = store.insert_api_key(&t, &twin).await.unwrap_err();
    assert!(err.is_conflict_on("api_key_key_hash_key"), "{err}");
    assert_eq!(
        store
            .api_key_by_hash(&[7; 32])
            .await
            .unwrap()
            .unwrap()
            .tenant_id,
        t
    );
    let other = tenant(store, "other").await;
    assert!(!store.revoke_api_key(&other, &key.id).await.unwrap());
    assert!(store.revoke_api_key(&t, &key.id).await.unwrap());
    assert!(store.api_key_by_hash(&[7; 32]).await.unwrap().is_none());
    assert!(store.list_api_keys(&t).await.unwrap()[0]
        .revoked_at
        .is_some());
}

pub async fn missing_event_types_ignores_other_tenants_and_archived_ones(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let other = tenant(store, "other").await;
    let now = herald_store::now();
    let event_type = |name: &str, archived: bool| EventType {
        name: EventTypeName::parse(name).unwrap(),
        description: String::new(),
        archived,
        deprecated: false,
        feature_flag: None,
        schemas: None,
        created_at: now,
        updated_at: now,
    };
    store
        .insert_event_type(&t, &event_type("live", false))
        .await
        .unwrap();
    store
        .insert_event_type(&t, &event_type("old", true))
        .await
        .unwrap();
    store
        .insert_event_type(&other, &event_type("theirs", false))
        .await
        .unwrap();
    let asked: Vec<EventTypeName> = ["live", "old", "theirs", "none"]
        .iter()
        .map(|n| EventTypeName::parse(*n).unwrap())
        .collect();
    let missing: Vec<String> = store
        .missing_event_types(&t, &asked)
        .await
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(missing, ["old", "theirs", "none"]);
}

pub async fn updates_lose_to_a_concurrent_change(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let stale = ep.updated_at;
    let mut first = ep.clone();
    first.description = "first".into();
    first.updated_at = stale + chrono::Duration::microseconds(1);
    assert!(store.update_endpoint(&t, &first, stale).await.unwrap());
    let mut second = ep.clone();
    second.description = "second".into();
    second.updated_at = stale + chrono::Duration::microseconds(2);
    assert!(!store.update_endpoint(&t, &second, stale).await.unwrap());
    let stored = store
        .endpoint(&t, &app.id, &id_ref(ep.id.as_str()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.description, "first");
}

pub async fn settings_keep_their_first_value(store: &dyn Store) {
    assert_eq!(
        store.setting_or_insert("s", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.setting_or_insert("s", "second").await.unwrap(),
        "first"
    );
}

pub fn message(app_id: &ApplicationId) -> Message {
    let now = herald_store::now();
    Message {
        id: MessageId::new(),
        app_id: app_id.clone(),
        event_id: None,
        event_type: EventTypeName::parse("a.b").unwrap(),
        channels: None,
        tags: None,
        payload: Some(b"{\"k\": 1}".to_vec()),
        created_at: now,
        expires_at: now + chrono::Duration::days(90),
    }
}

pub async fn attempts_move_deliveries_through_their_states(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let msg = message(&app.id);
    store
        .insert_message(&t, &msg, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    let pending = store.delivery(&t, &msg.id, &ep.id).await.unwrap().unwrap();
    assert_eq!(pending.state, DeliveryState::Pending);
    assert_eq!(pending.attempts, 0);

    let attempt = |status: u16| Attempt {
        id: AttemptId::new(),
        msg_id: msg.id.clone(),
        endpoint_id: ep.id.clone(),
        app_id: app.id.clone(),
        url: ep.url.as_str().to_owned(),
        status_code: status,
        error_class: (status != 200).then_some(ErrorClass::Http5xx),
        response_body: Some("body".into()),
        request_headers: None,
        response_headers: None,
        duration_us: 12_345,
        trigger: AttemptTrigger::Scheduled,
        created_at: herald_store::now(),
    };
    let retry_at = herald_store::now() + chrono::Duration::seconds(5);
    store
        .record_attempt(
            &t,
            &attempt(500),
            &DeliveryUpdate {
                state: DeliveryState::Pending,
                next_attempt_at: Some(retry_at),
            },
        )
        .await
        .unwrap();
    store
        .record_attempt(
            &t,
            &attempt(200),
            &DeliveryUpdate {
                state: DeliveryState::Succeeded,
                next_attempt_at: None,
            },
        )
        .await
        .unwrap();
    let done = store.delivery(&t, &msg.id, &ep.id).await.unwrap().unwrap();
    assert_eq!(done.state, DeliveryState::Succeeded);
    assert_eq!(done.attempts, 2);
    let attempts = store.attempts_of_message(&t, &msg.id).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [500, 200]
    );
    let other = tenant(store, "other").await;
    assert!(store
        .attempts_of_message(&other, &msg.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .delivery(&other, &msg.id, &ep.id)
        .await
        .unwrap()
        .is_none());
}

pub async fn due_deliveries_are_claimed_once_until_their_lease_ends(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let endpoints: Vec<Endpoint> = (0..3).map(|_| endpoint(&app.id, None)).collect();
    for ep in &endpoints {
        store.insert_endpoint(&t, ep).await.unwrap();
    }
    let ids: Vec<EndpointId> = endpoints.iter().map(|e| e.id.clone()).collect();
    let msg = message(&app.id);
    store.insert_message(&t, &msg, &ids).await.unwrap();

    let now = herald_store::now() + chrono::Duration::seconds(1);
    let lease = chrono::Duration::seconds(30);
    let first = store.claim_due_deliveries(now, lease, 2).await.unwrap();
    let second = store.claim_due_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1, "claimed rows are not handed out twice");
    assert!(first.iter().all(|c| c.tenant_id == t));
    assert!(store
        .claim_due_deliveries(now, lease, 10)
        .await
        .unwrap()
        .is_empty());
    // When the lease runs out (the worker died), the deliveries are due again.
    let later = now + lease + chrono::Duration::seconds(1);
    let again = store.claim_due_deliveries(later, lease, 10).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again
        .iter()
        .all(|c| c.delivery.state == DeliveryState::Sending));
}

pub async fn deliveries_claimed_at_insert_wait_for_their_lease_or_return(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let endpoints: Vec<Endpoint> = (0..2).map(|_| endpoint(&app.id, None)).collect();
    for ep in &endpoints {
        store.insert_endpoint(&t, ep).await.unwrap();
    }
    let ids: Vec<EndpointId> = endpoints.iter().map(|e| e.id.clone()).collect();
    let msg = message(&app.id);
    store.insert_message_claimed(&t, &msg, &ids).await.unwrap();
    let deliveries = store.deliveries_of_message(&t, &msg.id).await.unwrap();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries
        .iter()
        .all(|d| d.state == DeliveryState::Sending && d.attempts == 0));

    // Handed out by the caller: the relay leaves them alone until the lease ends.
    let now = herald_store::now() + chrono::Duration::seconds(1);
    let lease = chrono::Duration::seconds(30);
    assert!(store
        .claim_due_deliveries(now, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let later = now + lease + chrono::Duration::seconds(1);
    assert_eq!(
        store
            .claim_due_deliveries(later, lease, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // A publish that failed hands them back: due at once, and only the
    // deliveries of that message, never one already attempted.
    let other = message(&app.id);
    store
        .insert_message_claimed(&t, &other, &ids)
        .await
        .unwrap();
    let attempt = attempt_of(&other, &endpoints[0], 500, AttemptTrigger::Scheduled);
    let retry = DeliveryUpdate {
        state: DeliveryState::Sending,
        next_attempt_at: Some(herald_store::now() + chrono::Duration::seconds(60)),
    };
    store.record_attempt(&t, &attempt, &retry).await.unwrap();
    assert_eq!(store.return_deliveries(&t, &other.id).await.unwrap(), 1);
    let due = store
        .claim_due_deliveries(
            herald_store::now() + chrono::Duration::seconds(1),
            lease,
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery.msg_id, other.id);
    assert_eq!(due[0].delivery.endpoint_id, endpoints[1].id);
}

fn attempt_of(msg: &Message, ep: &Endpoint, status: u16, trigger: AttemptTrigger) -> Attempt {
    Attempt {
        id: AttemptId::new(),
        msg_id: msg.id.clone(),
        endpoint_id: ep.id.clone(),
        app_id: msg.app_id.clone(),
        url: ep.url.as_str().to_owned(),
        status_code: status,
        error_class: (!(200..300).contains(&status)).then_some(ErrorClass::Http5xx),
        response_body: Some("body".into()),
        request_headers: None,
        response_headers: None,
        duration_us: 3_000,
        trigger,
        created_at: herald_store::now(),
    }
}

fn finished(state: DeliveryState) -> DeliveryUpdate {
    DeliveryUpdate {
        state,
        next_attempt_at: None,
    }
}

pub async fn attempt_listings_filter_and_stay_in_their_tenant(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let (a, b) = (endpoint(&app.id, None), endpoint(&app.id, None));
    store.insert_endpoint(&t, &a).await.unwrap();
    store.insert_endpoint(&t, &b).await.unwrap();
    let mut on_channel = message(&app.id);
    on_channel.channels = Some(vec![herald_core::ChannelName::parse("c").unwrap()]);
    let plain = message(&app.id);
    for msg in [&on_channel, &plain] {
        store
            .insert_message(&t, msg, &[a.id.clone(), b.id.clone()])
            .await
            .unwrap();
    }
    let fail = attempt_of(&on_channel, &a, 503, AttemptTrigger::Scheduled);
    store
        .record_attempt(&t, &fail, &finished(DeliveryState::Dead))
        .await
        .unwrap();
    for (msg, ep) in [(&on_channel, &b), (&plain, &a)] {
        let ok = attempt_of(msg, ep, 204, AttemptTrigger::Scheduled);
        store
            .record_attempt(&t, &ok, &finished(DeliveryState::Succeeded))
            .await
            .unwrap();
    }

    let query = ListQuery::default();
    let count = |filter: AttemptFilter| {
        let (t, app, query) = (&t, &app, &query);
        async move {
            store
                .list_attempts(t, &app.id, query, &filter)
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(count(AttemptFilter::default()).await, 3);
    let of_a = || AttemptFilter {
        endpoint_id: Some(a.id.clone()),
        ..AttemptFilter::default()
    };
    assert_eq!(count(of_a()).await, 2);
    assert_eq!(
        count(AttemptFilter {
            msg_id: Some(on_channel.id.clone()),
            ..AttemptFilter::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AttemptFilter {
            succeeded: Some(false),
            ..of_a()
        })
        .await,
        1
    );
    assert_eq!(
        count(AttemptFilter {
            status_code_class: Some(500),
            ..AttemptFilter::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AttemptFilter {
            status_code_class: Some(0),
            ..AttemptFilter::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(AttemptFilter {
            channel: Some(herald_core::ChannelName::parse("c").unwrap()),
            ..AttemptFilter::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AttemptFilter {
            event_types: Some(vec![EventTypeName::parse("other").unwrap()]),
            ..AttemptFilter::default()
        })
        .await,
        0
    );
    let got = store
        .attempt(&t, &app.id, &on_channel.id, &fail.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status_code, 503);
    assert!(store
        .attempt(&t, &app.id, &plain.id, &fail.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .expunge_attempt_content(&t, &app.id, &on_channel.id, &fail.id)
        .await
        .unwrap());
    let expunged = store
        .attempt(&t, &app.id, &on_channel.id, &fail.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expunged.response_body, None);

    // The endpoint's deliveries and the message's destinations.
    let of_endpoint = |filter: DeliveryFilter| {
        let (t, app, a, query) = (&t, &app, &a, &query);
        async move {
            store
                .list_endpoint_deliveries(t, &app.id, &a.id, query, &filter, ALL_PAYLOADS)
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(of_endpoint(DeliveryFilter::default()).await.len(), 2);
    let failed = of_endpoint(DeliveryFilter {
        status: Some(DeliveryStatus::Fail),
        ..DeliveryFilter::default()
    })
    .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].message.id, on_channel.id);
    assert_eq!(failed[0].delivery.state, DeliveryState::Dead);
    let destinations = store
        .list_message_deliveries(&t, &app.id, &plain.id, &query)
        .await
        .unwrap();
    assert_eq!(destinations.items.len(), 2);
    assert_eq!(
        destinations
            .items
            .iter()
            .map(|(d, _)| d.status())
            .filter(|s| *s == DeliveryStatus::Pending)
            .count(),
        1
    );
    let since = herald_store::now() - chrono::Duration::hours(1);
    let until = herald_store::now() + chrono::Duration::hours(1);
    assert_eq!(
        store
            .endpoint_delivery_counts(&t, &app.id, &a.id, since, until)
            .await
            .unwrap(),
        DeliveryCounts {
            success: 1,
            fail: 1,
            pending: 0,
            sending: 0,
        }
    );

    // Nothing of it is visible to another tenant.
    let other = tenant(store, "other").await;
    assert!(store
        .list_attempts(&other, &app.id, &query, &AttemptFilter::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .attempt(&other, &app.id, &on_channel.id, &fail.id)
        .await
        .unwrap()
        .is_none());
    assert!(!store
        .expunge_attempt_content(&other, &app.id, &on_channel.id, &fail.id)
        .await
        .unwrap());
    assert!(store
        .list_endpoint_deliveries(
            &other,
            &app.id,
            &a.id,
            &query,
            &DeliveryFilter::default(),
            ALL_PAYLOADS,
        )
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store
            .endpoint_delivery_counts(&other, &app.id, &a.id, since, until)
            .await
            .unwrap(),
        DeliveryCounts::default()
    );
    assert_eq!(
        store
            .request_recovery(&other, &app.id, &a.id, since, until)
            .await
            .unwrap(),
        0
    );
}

pub async fn manual_attempts_are_requested_through_the_outbox(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let (a, b) = (endpoint(&app.id, None), endpoint(&app.id, None));
    store.insert_endpoint(&t, &a).await.unwrap();
    store.insert_endpoint(&t, &b).await.unwrap();
    let msg = message(&app.id);
    store
        .insert_message(&t, &msg, std::slice::from_ref(&a.id))
        .await
        .unwrap();
    let lease = chrono::Duration::seconds(30);
    let later = || herald_store::now() + chrono::Duration::seconds(1);
    assert_eq!(
        store
            .claim_due_deliveries(later(), lease, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .record_attempt(
            &t,
            &attempt_of(&msg, &a, 500, AttemptTrigger::Scheduled),
            &finished(DeliveryState::Dead),
        )
        .await
        .unwrap();
    assert!(store
        .claim_due_deliveries(later(), lease, 10)
        .await
        .unwrap()
        .is_empty());

    // A resend makes the dead delivery due, flagged manual; a resend to an
    // endpoint the message never went to creates its delivery.
    store
        .request_manual_attempt(&t, &app.id, &msg.id, &a.id)
        .await
        .unwrap();
    store
        .request_manual_attempt(&t, &app.id, &msg.id, &b.id)
        .await
        .unwrap();
    let claimed = store
        .claim_due_deliveries(later(), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.delivery.manual));

    // A scheduled attempt finishing meanwhile leaves the manual request due.
    store
        .record_attempt(
            &t,
            &attempt_of(&msg, &a, 200, AttemptTrigger::Scheduled),
            &finished(DeliveryState::Succeeded),
        )
        .await
        .unwrap();
    let still = store.delivery(&t, &msg.id, &a.id).await.unwrap().unwrap();
    assert!(still.manual);
    assert_eq!(still.state, DeliveryState::Sending);
    // The manual attempt answers it.
    store
        .record_attempt(
            &t,
            &attempt_of(&msg, &a, 200, AttemptTrigger::Manual),
            &finished(DeliveryState::Succeeded),
        )
        .await
        .unwrap();
    let answered = store.delivery(&t, &msg.id, &a.id).await.unwrap().unwrap();
    assert!(!answered.manual);
    assert_eq!(answered.state, DeliveryState::Succeeded);
    assert_eq!(answered.attempts, 3);

    // Recovery re-queues failed and dead deliveries in the window only.
    store
        .record_attempt(
            &t,
            &attempt_of(&msg, &b, 500, AttemptTrigger::Manual),
            &finished(DeliveryState::Failed),
        )
        .await
        .unwrap();
    let since = herald_store::now() - chrono::Duration::hours(1);
    let past = herald_store::now() - chrono::Duration::minutes(30);
    assert_eq!(
        store
            .request_recovery(&t, &app.id, &b.id, since, past)
            .await
            .unwrap(),
        0
    );
    let until = herald_store::now() + chrono::Duration::seconds(1);
    assert_eq!(
        store
            .request_recovery(&t, &app.id, &b.id, since, until)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .request_recovery(&t, &app.id, &a.id, since, until)
            .await
            .unwrap(),
        0,
        "a succeeded delivery is not recovered"
    );
    let recovered = store
        .claim_due_deliveries(later(), lease, 10)
        .await
        .unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].delivery.endpoint_id, b.id);
    assert!(recovered[0].delivery.manual);
}

pub async fn unique_violations_name_their_constraint(store: &dyn Store) {
    // The API tells these conflicts apart by constraint name, so every store
    // reports the names PostgreSQL gives them.
    let t = tenant(store, "t").await;
    let app = application(Some("app-uid"));
    store.insert_application(&t, &app).await.unwrap();
    let err = store
        .insert_application(&t, &application(Some("app-uid")))
        .await
        .unwrap_err();
    assert!(err.is_conflict_on("application_tenant_id_uid_key"), "{err}");

    let ep = endpoint(&app.id, Some("ep-uid"));
    store.insert_endpoint(&t, &ep).await.unwrap();
    let err = store
        .insert_endpoint(&t, &endpoint(&app.id, Some("ep-uid")))
        .await
        .unwrap_err();
    assert!(err.is_conflict_on("endpoint_app_id_uid_key"), "{err}");
    let mut other = endpoint(&app.id, Some("other-uid"));
    store.insert_endpoint(&t, &other).await.unwrap();
    let stale = other.updated_at;
    other.uid = Some(Uid::parse("ep-uid").unwrap());
    other.updated_at = stale + chrono::Duration::microseconds(1);
    let err = store.update_endpoint(&t, &other, stale).await.unwrap_err();
    assert!(err.is_conflict_on("endpoint_app_id_uid_key"), "{err}");

    let now = herald_store::now();
    let event_type = EventType {
        name: EventTypeName::parse("user.created").unwrap(),
        description: String::new(),
        archived: false,
        deprecated: false,
        feature_flag: None,
        schemas: Some(serde_json::json!({"1": {"type": "object"}})),
        created_at: now,
        updated_at: now,
    };
    store.insert_event_type(&t, &event_type).await.unwrap();
    let err = store.insert_event_type(&t, &event_type).await.unwrap_err();
    assert!(err.is_conflict_on("event_type_pkey"), "{err}");
    let stored = store
        .event_type(&t, &event_type.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.schemas, event_type.schemas);

    let mut first = message(&app.id);
    first.event_id = Some(Uid::parse("evt-1").unwrap());
    store
        .insert_message(&t, &first, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    let mut again = message(&app.id);
    again.event_id = first.event_id.clone();
    let err = store
        .insert_message(&t, &again, std::slice::from_ref(&ep.id))
        .await
        .unwrap_err();
    assert!(err.is_conflict_on("message_app_id_event_id_key"), "{err}");
    // The refused message left nothing behind, and the store still writes.
    assert!(store
        .deliveries_of_message(&t, &again.id)
        .await
        .unwrap()
        .is_empty());
    let found = store
        .message(&t, &app.id, &id_ref("evt-1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(found.payload, first.payload);
    assert_eq!(found.created_at, first.created_at);
    store
        .insert_message(&t, &message(&app.id), std::slice::from_ref(&ep.id))
        .await
        .unwrap();
}

pub async fn concurrent_claimers_never_share_a_delivery(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let (a, b) = (endpoint(&app.id, None), endpoint(&app.id, None));
    store.insert_endpoint(&t, &a).await.unwrap();
    store.insert_endpoint(&t, &b).await.unwrap();
    for _ in 0..20 {
        store
            .insert_message(&t, &message(&app.id), &[a.id.clone(), b.id.clone()])
            .await
            .unwrap();
    }
    let now = herald_store::now() + chrono::Duration::seconds(1);
    let lease = chrono::Duration::seconds(30);
    let claimers = (0..6).map(|_| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_due_deliveries(now, lease, 3).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|c| {
                (
                    c.delivery.msg_id.to_string(),
                    c.delivery.endpoint_id.to_string(),
                )
            }));
        }
    });
    let claimed: Vec<(String, String)> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let distinct: std::collections::HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 40, "every delivery is claimed");
    assert_eq!(distinct.len(), 40, "no delivery is claimed twice");
}

pub async fn concurrent_writes_all_succeed(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let (t, app, ep) = (&t, &app, &ep);
    let writers = (0..32).map(|i| async move {
        let msg = message(&app.id);
        store
            .insert_message(t, &msg, std::slice::from_ref(&ep.id))
            .await
            .unwrap();
        let attempt = attempt_of(&msg, ep, 200, AttemptTrigger::Scheduled);
        store
            .record_attempt(t, &attempt, &finished(DeliveryState::Succeeded))
            .await
            .unwrap();
        store
            .setting_or_insert(&format!("s{}", i % 4), "v")
            .await
            .unwrap();
        assert!(store
            .message(t, &app.id, &id_ref(msg.id.as_str()))
            .await
            .unwrap()
            .is_some());
    });
    futures::future::join_all(writers).await;
    let page = store
        .list_messages(
            t,
            &app.id,
            &ListQuery::default(),
            &Default::default(),
            ALL_PAYLOADS,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 32);
    let since = herald_store::now() - chrono::Duration::hours(1);
    let until = herald_store::now() + chrono::Duration::hours(1);
    assert_eq!(
        store
            .endpoint_delivery_counts(t, &app.id, &ep.id, since, until)
            .await
            .unwrap()
            .success,
        32
    );
}

pub async fn released_claims_are_due_again_at_their_own_time(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let endpoints: Vec<Endpoint> = (0..3).map(|_| endpoint(&app.id, None)).collect();
    for ep in &endpoints {
        store.insert_endpoint(&t, ep).await.unwrap();
    }
    let (lost, retrying, done) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    let ids: Vec<EndpointId> = endpoints.iter().map(|e| e.id.clone()).collect();
    let msg = message(&app.id);
    store.insert_message(&t, &msg, &ids).await.unwrap();
    let now = herald_store::now() + chrono::Duration::seconds(1);
    let lease = chrono::Duration::hours(2);
    assert_eq!(
        store
            .claim_due_deliveries(now, lease, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    // One was handed out and lost, one waits for its retry in the delay
    // ladder, one succeeded.
    let retry_at = now + chrono::Duration::hours(1);
    store
        .update_delivery(
            &t,
            &msg.id,
            &retrying.id,
            &DeliveryUpdate {
                state: DeliveryState::Sending,
                next_attempt_at: Some(retry_at),
            },
        )
        .await
        .unwrap();
    store
        .record_attempt(
            &t,
            &attempt_of(&msg, done, 200, AttemptTrigger::Scheduled),
            &finished(DeliveryState::Succeeded),
        )
        .await
        .unwrap();

    assert_eq!(store.release_claims().await.unwrap(), 2);
    let delivery = |ep: &Endpoint| {
        let (t, msg, id) = (&t, &msg, ep.id.clone());
        async move { store.delivery(t, &msg.id, &id).await.unwrap().unwrap() }
    };
    let released = delivery(lost).await;
    assert_eq!(released.state, DeliveryState::Pending);
    assert_eq!(released.next_attempt_at, Some(now));
    let waiting = delivery(retrying).await;
    assert_eq!(waiting.state, DeliveryState::Pending);
    assert_eq!(waiting.next_attempt_at, Some(retry_at));
    assert_eq!(delivery(done).await.state, DeliveryState::Succeeded);

    // The lost one is due at once, the retry only at its time, lease or not.
    let again = store.claim_due_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.endpoint_id, lost.id);
    let before_retry = retry_at - chrono::Duration::seconds(1);
    assert!(store
        .claim_due_deliveries(before_retry, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let at_retry = store
        .claim_due_deliveries(retry_at, lease, 10)
        .await
        .unwrap();
    assert_eq!(at_retry.len(), 1);
    assert_eq!(at_retry[0].delivery.endpoint_id, retrying.id);
    assert_eq!(store.release_claims().await.unwrap(), 2);
}

pub async fn listings_filter_by_channel_event_type_and_time(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let base = herald_store::now() - chrono::Duration::minutes(10);
    let message_at = |minute: i64, event_type: &str, channels: Option<&[&str]>| {
        let mut msg = message(&app.id);
        msg.created_at = base + chrono::Duration::minutes(minute);
        msg.event_type = EventTypeName::parse(event_type).unwrap();
        msg.channels = channels.map(|cs| {
            cs.iter()
                .map(|c| herald_core::ChannelName::parse(*c).unwrap())
                .collect()
        });
        msg
    };
    let early = message_at(0, "a.b", Some(&["c1", "c2"]));
    let middle = message_at(1, "x.y", Some(&["c2"]));
    let late = message_at(2, "a.b", None);
    for msg in [&early, &middle, &late] {
        store.insert_message(&t, msg, &[]).await.unwrap();
    }
    let listed = |filter: MessageFilter| {
        let (t, app) = (&t, &app);
        async move {
            let page = store
                .list_messages(t, &app.id, &ListQuery::default(), &filter, ALL_PAYLOADS)
                .await
                .unwrap();
            let mut ids: Vec<String> = page.items.iter().map(|m| m.id.to_string()).collect();
            ids.sort();
            ids
        }
    };
    let ids = |msgs: &[&Message]| {
        let mut ids: Vec<String> = msgs.iter().map(|m| m.id.to_string()).collect();
        ids.sort();
        ids
    };
    let channel = |c: &str| Some(herald_core::ChannelName::parse(c).unwrap());
    let types = |names: &[&str]| {
        Some(
            names
                .iter()
                .map(|n| EventTypeName::parse(*n).unwrap())
                .collect::<Vec<_>>(),
        )
    };
    let at = |minute: i64| Some(base + chrono::Duration::minutes(minute));

    assert_eq!(
        listed(MessageFilter::default()).await,
        ids(&[&early, &middle, &late])
    );
    let on = |c: &str| MessageFilter {
        channel: channel(c),
        ..MessageFilter::default()
    };
    assert_eq!(listed(on("c2")).await, ids(&[&early, &middle]));
    assert_eq!(listed(on("c1")).await, ids(&[&early]));
    // A channel matches whole, never as a part of another.
    assert_eq!(listed(on("c")).await, ids(&[]));
    let of = |names: &[&str]| MessageFilter {
        event_types: types(names),
        ..MessageFilter::default()
    };
    assert_eq!(listed(of(&["a.b"])).await, ids(&[&early, &late]));
    assert_eq!(
        listed(of(&["a.b", "x.y"])).await,
        ids(&[&early, &middle, &late])
    );
    assert_eq!(listed(of(&["none"])).await, ids(&[]));
    assert_eq!(
        listed(MessageFilter {
            channel: channel("c2"),
            event_types: types(&["a.b"]),
            ..MessageFilter::default()
        })
        .await,
        ids(&[&early])
    );
    // Time bounds are exclusive, to the microsecond.
    let window = |before, after| MessageFilter {
        before,
        after,
        ..MessageFilter::default()
    };
    assert_eq!(listed(window(at(1), None)).await, ids(&[&early]));
    assert_eq!(listed(window(None, at(1))).await, ids(&[&late]));
    assert_eq!(listed(window(at(2), at(0))).await, ids(&[&middle]));
    let just_after = early.created_at + chrono::Duration::microseconds(1);
    assert_eq!(listed(window(Some(just_after), None)).await, ids(&[&early]));
    assert_eq!(listed(window(Some(early.created_at), None)).await, ids(&[]));

    // A status names messages with a delivery in it: a new delivery is
    // pending; a message fanned out to nobody has no status at all.
    let delivered = message_at(3, "a.b", None);
    store
        .insert_message(&t, &delivered, &[EndpointId::new()])
        .await
        .unwrap();
    let in_status = |status| MessageFilter {
        status: Some(status),
        ..MessageFilter::default()
    };
    assert_eq!(
        listed(in_status(DeliveryStatus::Pending)).await,
        ids(&[&delivered])
    );
    for status in [
        DeliveryStatus::Success,
        DeliveryStatus::Fail,
        DeliveryStatus::Sending,
    ] {
        assert_eq!(listed(in_status(status)).await, ids(&[]), "{status:?}");
    }

    // Event type names list bytewise ("Z" sorts before "a"), archived ones
    // only when asked for.
    let now = herald_store::now();
    for (name, archived) in [("b.live", false), ("a.old", true), ("Z.upper", false)] {
        store
            .insert_event_type(
                &t,
                &EventType {
                    name: EventTypeName::parse(name).unwrap(),
                    description: String::new(),
                    archived,
                    deprecated: false,
                    feature_flag: None,
                    schemas: None,
                    created_at: now,
                    updated_at: now,
                },
            )
            .await
            .unwrap();
    }
    let names = |include_archived: bool| {
        let t = &t;
        async move {
            store
                .list_event_types(t, &ListQuery::default(), include_archived)
                .await
                .unwrap()
                .items
                .iter()
                .map(|e| e.name.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(false).await, ["Z.upper", "b.live"]);
    assert_eq!(names(true).await, ["Z.upper", "a.old", "b.live"]);

    // Tenants and endpoints page like everything else.
    let tenants = store.list_tenants(&ListQuery::default()).await.unwrap();
    assert!(tenants.items.iter().any(|x| x.id == t));
    for _ in 0..2 {
        store
            .insert_endpoint(&t, &endpoint(&app.id, None))
            .await
            .unwrap();
    }
    let one = ListQuery {
        limit: 1,
        ..ListQuery::default()
    };
    let page = store.list_endpoints(&t, &app.id, &one).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(!page.done);
}

pub async fn message_pages_end_early_to_keep_payloads_within_a_budget(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let mut inserted = Vec::new();
    for i in 0..7 {
        let mut msg = message(&app.id);
        // 100 bytes each; the fourth is expunged and weighs nothing.
        msg.payload = (i != 3).then(|| format!("{{\"pad\":\"{}\"}}", "x".repeat(90)).into_bytes());
        store
            .insert_message(&t, &msg, std::slice::from_ref(&ep.id))
            .await
            .unwrap();
        inserted.push(msg.id.to_string());
    }
    // Ids are ordered by time to the millisecond only.
    inserted.sort();

    for ordering in [Ordering::Ascending, Ordering::Descending] {
        let mut expected = inserted.clone();
        if ordering == Ordering::Descending {
            expected.reverse();
        }
        // 250 bytes: two payloads a page, three where the expunged one is.
        let mut query = ListQuery {
            limit: 50,
            cursor: None,
            ordering,
        };
        let (mut seen, mut pages, mut delivered_seen) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let page = store
                .list_messages(
                    &t,
                    &app.id,
                    &query,
                    &Default::default(),
                    Payloads::UpTo(250),
                )
                .await
                .unwrap();
            let bytes: usize = page
                .items
                .iter()
                .map(|m| m.payload.as_ref().map_or(0, Vec::len))
                .sum();
            assert!(
                bytes <= 250 || page.items.len() == 1,
                "{bytes} bytes in a page"
            );
            pages.push(page.items.len());
            seen.extend(page.items.iter().map(|m| m.id.to_string()));
            let delivered = store
                .list_endpoint_deliveries(
                    &t,
                    &app.id,
                    &ep.id,
                    &query,
                    &DeliveryFilter::default(),
                    Payloads::UpTo(250),
                )
                .await
                .unwrap();
            delivered_seen.extend(delivered.items.iter().map(|d| d.message.id.to_string()));
            assert_eq!(delivered.done, page.done);
            if page.done {
                break;
            }
            let last = page
                .items
                .last()
                .expect("a page that is not done has items");
            query.cursor = Some(Cursor::After(last.id.to_string()));
        }
        assert_eq!(seen, expected, "{ordering:?}: every message once, in order");
        assert_eq!(
            delivered_seen, expected,
            "{ordering:?}: every delivery once"
        );
        assert!(
            pages.len() >= 3,
            "{ordering:?}: the budget cut pages: {pages:?}"
        );

        // Going back from the end lands on the messages just before it.
        let back = store
            .list_messages(
                &t,
                &app.id,
                &ListQuery {
                    limit: 50,
                    cursor: Some(Cursor::Before(expected[6].clone())),
                    ordering,
                },
                &Default::default(),
                Payloads::UpTo(250),
            )
            .await
            .unwrap();
        let back: Vec<String> = back.items.iter().map(|m| m.id.to_string()).collect();
        assert!(!back.is_empty() && back.len() < 6, "{back:?}");
        assert_eq!(
            back,
            expected[6 - back.len()..6],
            "{ordering:?}: the page before the end"
        );
    }

    // Without content nothing is read, and nothing cuts the page.
    let bare = store
        .list_messages(
            &t,
            &app.id,
            &ListQuery::default(),
            &Default::default(),
            Payloads::Omitted,
        )
        .await
        .unwrap();
    assert!(bare.done);
    assert_eq!(bare.items.len(), 7);
    assert!(bare.items.iter().all(|m| m.payload.is_none()));
    assert!(bare.items.iter().all(|m| m.event_type.as_str() == "a.b"));
    let bare = store
        .list_endpoint_deliveries(
            &t,
            &app.id,
            &ep.id,
            &ListQuery::default(),
            &DeliveryFilter::default(),
            Payloads::Omitted,
        )
        .await
        .unwrap();
    assert_eq!(bare.items.len(), 7);
    assert!(bare.items.iter().all(|d| d.message.payload.is_none()));
}

pub async fn logged_out_tokens_stay_revoked_until_they_expire(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let later = herald_store::now() + chrono::Duration::hours(1);
    assert!(!store.token_revoked("tok-1").await.unwrap());
    store.revoke_token(&t, "tok-1", later).await.unwrap();
    // Logging out twice is not an error.
    store.revoke_token(&t, "tok-1", later).await.unwrap();
    assert!(store.token_revoked("tok-1").await.unwrap());
    assert!(!store.token_revoked("tok-2").await.unwrap());

    // A record past its token's expiry is dropped when the next is written.
    let past = herald_store::now() - chrono::Duration::seconds(1);
    store.revoke_token(&t, "tok-old", past).await.unwrap();
    store.revoke_token(&t, "tok-3", later).await.unwrap();
    assert!(!store.token_revoked("tok-old").await.unwrap());
    assert!(store.token_revoked("tok-1").await.unwrap());
}

/// A tenant "t" with an application and `n` endpoints (and their ids).
pub async fn replay_missing_adds_only_what_the_endpoint_receives_and_never_got(store: &dyn Store) {
    let (t, app, endpoints, ids) = app_with_endpoints(store, 2).await;
    // The endpoint receives `a.b` only (the fixture's filter).
    let ep = &endpoints[0];
    let since = herald_store::now() - chrono::Duration::seconds(1);
    let sent = message(&app.id);
    store.insert_message(&t, &sent, &ids[..1]).await.unwrap();
    let missed: Vec<Message> = (0..3).map(|_| message(&app.id)).collect();
    for msg in &missed {
        store.insert_message(&t, msg, &ids[1..]).await.unwrap();
    }
    let other_type = Message {
        event_type: EventTypeName::parse("x.y").unwrap(),
        ..message(&app.id)
    };
    store.insert_message(&t, &other_type, &[]).await.unwrap();
    let expunged = Message {
        payload: None,
        ..message(&app.id)
    };
    store.insert_message(&t, &expunged, &[]).await.unwrap();
    let until = herald_store::now() + chrono::Duration::seconds(1);

    // Another tenant gets nothing from it.
    let other = tenant(store, "other").await;
    assert_eq!(
        store
            .replay_missing(&other, ep, since, until)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.replay_missing(&t, ep, since, until).await.unwrap(), 3);
    for msg in &missed {
        let delivery = store.delivery(&t, &msg.id, &ep.id).await.unwrap().unwrap();
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(delivery.attempts, 0);
    }
    assert!(store
        .delivery(&t, &other_type.id, &ep.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delivery(&t, &expunged.id, &ep.id)
        .await
        .unwrap()
        .is_none());
    // Once given, never again; outside the window, nothing.
    assert_eq!(store.replay_missing(&t, ep, since, until).await.unwrap(), 0);
    let other_ep = &endpoints[1];
    assert_eq!(
        store
            .replay_missing(&t, other_ep, until, until + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
}

async fn app_with_endpoints(
    store: &dyn Store,
    n: usize,
) -> (TenantId, Application, Vec<Endpoint>, Vec<EndpointId>) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let endpoints: Vec<Endpoint> = (0..n).map(|_| endpoint(&app.id, None)).collect();
    for ep in &endpoints {
        store.insert_endpoint(&t, ep).await.unwrap();
    }
    let ids = endpoints.iter().map(|e| e.id.clone()).collect();
    (t, app, endpoints, ids)
}

pub async fn a_batch_of_messages_is_stored_but_for_taken_event_ids(store: &dyn Store) {
    let (t, app, _, ids) = app_with_endpoints(store, 2).await;
    let other = tenant(store, "other").await;
    let other_app = application(None);
    store.insert_application(&other, &other_app).await.unwrap();
    let mut taken = message(&app.id);
    taken.event_id = Some(Uid::parse("evt-taken").unwrap());
    store.insert_message(&t, &taken, &ids).await.unwrap();

    let new = |tenant_id: &TenantId, msg: Message, endpoint_ids: &[EndpointId]| {
        herald_store::NewMessage {
            tenant_id: tenant_id.clone(),
            message: msg,
            endpoint_ids: endpoint_ids.to_vec(),
        }
    };
    let mut again = message(&app.id);
    again.event_id = taken.event_id.clone();
    let mut first = message(&app.id);
    first.event_id = Some(Uid::parse("evt-first").unwrap());
    let mut twin = message(&app.id);
    twin.event_id = first.event_id.clone();
    let mut no_event_id = message(&app.id);
    no_event_id.event_id = None;
    // The same eventId in another application is not taken.
    let mut elsewhere = message(&other_app.id);
    elsewhere.event_id = taken.event_id.clone();
    let batch = vec![
        new(&t, again.clone(), &ids),
        new(&t, first.clone(), &ids),
        new(&t, twin.clone(), &ids),
        new(&t, no_event_id.clone(), &ids[..1]),
        new(&other, elsewhere.clone(), &[]),
    ];
    let stored = store.insert_messages(&batch, true).await.unwrap();
    assert_eq!(stored, [false, true, false, true, true]);

    for (msg, deliveries) in [(&again, 0), (&twin, 0), (&first, 2), (&no_event_id, 1)] {
        let found = store.deliveries_of_message(&t, &msg.id).await.unwrap();
        assert_eq!(found.len(), deliveries, "{:?}", msg.event_id);
        assert!(found
            .iter()
            .all(|d| d.state == DeliveryState::Sending && d.attempts == 0));
    }
    let read = store
        .message(
            &t,
            &app.id,
            &IdOrUid::parse("msg_id", first.id.as_str()).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.payload, first.payload);
    assert_eq!(read.created_at, first.created_at);
    assert_eq!(read.event_id, first.event_id);
    let taken_again = store
        .message(
            &t,
            &app.id,
            &id_ref(taken.event_id.as_ref().unwrap().as_str()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken_again.id, taken.id);
    assert!(store
        .message(
            &other,
            &other_app.id,
            &IdOrUid::parse("msg_id", elsewhere.id.as_str()).unwrap()
        )
        .await
        .unwrap()
        .is_some());
    assert!(store.insert_messages(&[], false).await.unwrap().is_empty());
}

pub async fn a_batch_of_attempts_moves_each_delivery(store: &dyn Store) {
    let (t, app, endpoints, ids) = app_with_endpoints(store, 3).await;
    let msg = message(&app.id);
    store.insert_message_claimed(&t, &msg, &ids).await.unwrap();
    // The third delivery waits for a manual attempt: a scheduled one leaves it due.
    store
        .request_manual_attempt(&t, &app.id, &msg.id, &ids[2])
        .await
        .unwrap();
    let retry_at = herald_store::now() + chrono::Duration::seconds(5);
    let record = |ep: &Endpoint, status: u16, update: DeliveryUpdate| herald_store::AttemptRecord {
        tenant_id: t.clone(),
        attempt: Attempt {
            id: AttemptId::new(),
            msg_id: msg.id.clone(),
            endpoint_id: ep.id.clone(),
            app_id: app.id.clone(),
            url: ep.url.as_str().to_owned(),
            status_code: status,
            error_class: (status == 0).then_some(ErrorClass::Timeout),
            response_body: (status != 0).then(|| "body".to_owned()),
            request_headers: None,
            response_headers: None,
            duration_us: 1_234,
            trigger: AttemptTrigger::Scheduled,
            created_at: herald_store::now(),
        },
        update,
    };
    let batch = [
        record(
            &endpoints[0],
            200,
            DeliveryUpdate {
                state: DeliveryState::Succeeded,
                next_attempt_at: None,
            },
        ),
        record(
            &endpoints[1],
            0,
            DeliveryUpdate {
                state: DeliveryState::Sending,
                next_attempt_at: Some(retry_at),
            },
        ),
        record(
            &endpoints[2],
            500,
            DeliveryUpdate {
                state: DeliveryState::Failed,
                next_attempt_at: None,
            },
        ),
    ];
    store.record_attempts(&batch).await.unwrap();
    let mut states = Vec::new();
    for id in &ids {
        states.push(store.delivery(&t, &msg.id, id).await.unwrap().unwrap());
    }
    let (first, second, third) = (&states[0], &states[1], &states[2]);
    assert_eq!((first.state, first.attempts), (DeliveryState::Succeeded, 1));
    assert_eq!((second.state, second.attempts), (DeliveryState::Sending, 1));
    assert_eq!(second.next_attempt_at, Some(retry_at));
    assert_eq!(
        (third.state, third.attempts, third.manual),
        (DeliveryState::Pending, 1, true)
    );
    let recorded = store.attempts_of_message(&t, &msg.id).await.unwrap();
    assert_eq!(recorded.len(), 3);
    for expected in &batch {
        let found = recorded
            .iter()
            .find(|a| a.id == expected.attempt.id)
            .unwrap();
        assert_eq!(found.status_code, expected.attempt.status_code);
        assert_eq!(found.error_class, expected.attempt.error_class);
        assert_eq!(found.response_body, expected.attempt.response_body);
        assert_eq!(found.duration_us, expected.attempt.duration_us);
        assert_eq!(found.created_at, expected.attempt.created_at);
    }
    store.record_attempts(&[]).await.unwrap();
}

pub async fn delivery_targets_load_a_batch_within_each_key_s_tenant(store: &dyn Store) {
    let (t, app, endpoints, ids) = app_with_endpoints(store, 2).await;
    let other = tenant(store, "other").await;
    let msg = message(&app.id);
    store.insert_message_claimed(&t, &msg, &ids).await.unwrap();
    let key = |tenant_id: &TenantId, endpoint_id: &EndpointId| herald_store::DeliveryKey {
        tenant_id: tenant_id.clone(),
        app_id: app.id.clone(),
        msg_id: msg.id.clone(),
        endpoint_id: endpoint_id.clone(),
    };
    let gone = EndpointId::new();
    let keys = [
        key(&t, &ids[0]),
        key(&t, &ids[1]),
        key(&other, &ids[0]),
        key(&t, &gone),
    ];
    let targets = store.delivery_targets(&keys).await.unwrap();
    assert_eq!(targets.len(), 4);
    for (target, ep) in targets[..2].iter().zip(&endpoints) {
        let delivery = target.delivery.as_ref().unwrap();
        assert_eq!(delivery.endpoint_id, ep.id);
        assert_eq!(delivery.state, DeliveryState::Sending);
        assert_eq!(target.message.as_ref().unwrap().payload, msg.payload);
        assert_eq!(target.endpoint.as_ref().unwrap().url, ep.url);
    }
    // Another tenant's key sees nothing; a deleted endpoint is absent.
    let foreign = &targets[2];
    assert!(foreign.delivery.is_none() && foreign.message.is_none() && foreign.endpoint.is_none());
    let missing = &targets[3];
    assert!(missing.delivery.is_none() && missing.endpoint.is_none());
    assert!(missing.message.is_some());
    assert!(store.delivery_targets(&[]).await.unwrap().is_empty());
}

pub async fn fan_out_candidates_are_each_application_s_enabled_endpoints(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let other = tenant(store, "other").await;
    let (a, b) = (application(None), application(None));
    store.insert_application(&t, &a).await.unwrap();
    store.insert_application(&t, &b).await.unwrap();
    let on = endpoint(&a.id, None);
    let mut off = endpoint(&a.id, None);
    off.disabled = true;
    store.insert_endpoint(&t, &on).await.unwrap();
    store.insert_endpoint(&t, &off).await.unwrap();
    let keys = [
        (t.clone(), a.id.clone()),
        (t.clone(), b.id.clone()),
        (other.clone(), a.id.clone()),
        (t.clone(), ApplicationId::new()),
        (t.clone(), a.id.clone()),
    ];
    let found = store.fan_out_candidates(&keys).await.unwrap();
    let ids = |i: usize| {
        let (app, endpoints) = found[i].as_ref().unwrap();
        (
            app.id.clone(),
            endpoints.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(ids(0), (a.id.clone(), vec![on.id.clone()]));
    assert_eq!(ids(1), (b.id.clone(), vec![]));
    assert!(
        found[2].is_none(),
        "another tenant's application is invisible"
    );
    assert!(found[3].is_none());
    assert_eq!(ids(4), ids(0));
    assert!(store.fan_out_candidates(&[]).await.unwrap().is_empty());
}

pub async fn two_attempts_of_one_delivery_in_a_batch_both_count(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let app = application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let msg = message(&app.id);
    store
        .insert_message_claimed(&t, &msg, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    store
        .request_manual_attempt(&t, &app.id, &msg.id, &ep.id)
        .await
        .unwrap();
    let record =
        |trigger: AttemptTrigger, status: u16, state: DeliveryState| herald_store::AttemptRecord {
            tenant_id: t.clone(),
            attempt: Attempt {
                id: AttemptId::new(),
                msg_id: msg.id.clone(),
                endpoint_id: ep.id.clone(),
                app_id: app.id.clone(),
                url: ep.url.as_str().to_owned(),
                status_code: status,
                error_class: None,
                response_body: None,
                request_headers: None,
                response_headers: None,
                duration_us: 1,
                trigger,
                created_at: herald_store::now(),
            },
            update: DeliveryUpdate {
                state,
                next_attempt_at: None,
            },
        };
    // A scheduled attempt finishing beside the manual one it leaves waiting,
    // then the manual one answering it: both count, the manual one decides.
    let batch = [
        record(AttemptTrigger::Scheduled, 500, DeliveryState::Failed),
        record(AttemptTrigger::Manual, 200, DeliveryState::Succeeded),
    ];
    store.record_attempts(&batch).await.unwrap();
    let delivery = store.delivery(&t, &msg.id, &ep.id).await.unwrap().unwrap();
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.state, DeliveryState::Succeeded);
    assert!(!delivery.manual);
    assert_eq!(
        store.attempts_of_message(&t, &msg.id).await.unwrap().len(),
        2
    );
}

pub async fn parked_deliveries_are_handed_out_when_due(store: &dyn Store) {
    let (t, app, _, ids) = app_with_endpoints(store, 2).await;
    let msg = message(&app.id);
    store.insert_message_claimed(&t, &msg, &ids).await.unwrap();
    store
        .request_manual_attempt(&t, &app.id, &msg.id, &ids[1])
        .await
        .unwrap();
    let until = herald_store::now() + chrono::Duration::seconds(30);
    for id in &ids {
        store.park_delivery(&t, &msg.id, id, until).await.unwrap();
    }
    let lease = chrono::Duration::minutes(5);
    let soon = herald_store::now() + chrono::Duration::seconds(1);
    assert!(store
        .claim_due_deliveries(soon, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let later = until + chrono::Duration::seconds(1);
    let claimed = store.claim_due_deliveries(later, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let manual = claimed
        .iter()
        .find(|c| c.delivery.endpoint_id == ids[1])
        .unwrap();
    assert!(
        manual.delivery.manual,
        "a parked manual request stays manual"
    );
    // A finished delivery is not parked back into the outbox.
    let done = DeliveryUpdate {
        state: DeliveryState::Succeeded,
        next_attempt_at: None,
    };
    store
        .update_delivery(&t, &msg.id, &ids[0], &done)
        .await
        .unwrap();
    store
        .park_delivery(&t, &msg.id, &ids[0], until)
        .await
        .unwrap();
    let state = store
        .delivery(&t, &msg.id, &ids[0])
        .await
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(state, DeliveryState::Succeeded);
}
