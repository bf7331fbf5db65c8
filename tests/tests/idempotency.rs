//! The `idempotency-key` header on POST, for both idempotency stores (process
//! memory and Redis): replays, concurrent duplicates, scoping, and failures
//! that must not be remembered. The scenarios are written once and run against
//! one server per backend.

use futures::future::join_all;
use herald_e2e::{Herald, Options, Reply, Tenant};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// POST /api/v1/app as `tenant` with an idempotency key.
async fn create_app(herald: &Herald, tenant: &Tenant, key: &str, body: &Value) -> Reply {
    let response = herald
        .http
        .post(format!("{}/api/v1/app", herald.url))
        .bearer_auth(&tenant.key)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("request reaches herald");
    Herald::reply(response).await
}

fn fresh_key(scenario: &str) -> String {
    format!("{scenario}-{}", uuid::Uuid::new_v4())
}

fn app_id(reply: &Reply) -> String {
    reply.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no app id in {reply:?}"))
        .to_owned()
}

async fn same_key_replays_the_first_response(herald: &Herald) {
    let before = herald.count_rows("application").await;
    let key = fresh_key("replay");
    let body = json!({"name": "Replayed", "metadata": {"attempt": "1"}});
    let first = create_app(herald, &herald.tenant, &key, &body).await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{first:?}\n{}",
        herald.log()
    );
    let id = app_id(&first);

    for attempt in 0..3 {
        let again = create_app(herald, &herald.tenant, &key, &body).await;
        assert_eq!(again.status, first.status, "attempt {attempt}: {again:?}");
        assert_eq!(
            again.body, first.body,
            "attempt {attempt}: identical body, same id"
        );
        assert_eq!(
            again.headers.get("content-type"),
            first.headers.get("content-type"),
            "attempt {attempt}"
        );
    }
    // Even a different body under the same key replays the first response.
    let changed = create_app(herald, &herald.tenant, &key, &json!({"name": "Changed"})).await;
    assert_eq!(changed.status, StatusCode::CREATED, "{changed:?}");
    assert_eq!(app_id(&changed), id);
    assert_eq!(changed.body["name"], "Replayed");

    assert_eq!(
        herald.count_rows("application").await,
        before + 1,
        "only one application stored"
    );
    let stored = herald.get(&format!("/api/v1/app/{id}")).await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(stored.body, first.body);
}

async fn concurrent_duplicates_create_one_app(herald: &Herald) {
    let before = herald.count_rows("application").await;
    let key = fresh_key("concurrent");
    let body = json!({"name": "Concurrent"});
    let replies = join_all((0..20).map(|_| create_app(herald, &herald.tenant, &key, &body))).await;
    let first = &replies[0];
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{first:?}\n{}",
        herald.log()
    );
    let id = app_id(first);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::CREATED, "request {i}: {reply:?}");
        assert_eq!(app_id(reply), id, "request {i} got another app");
        assert_eq!(reply.body, first.body, "request {i}");
    }
    assert_eq!(
        herald.count_rows("application").await,
        before + 1,
        "20 concurrent duplicates stored exactly one application"
    );
}

async fn a_different_key_creates_a_new_app(herald: &Herald) {
    let before = herald.count_rows("application").await;
    let body = json!({"name": "Twice"});
    let one = create_app(herald, &herald.tenant, &fresh_key("one"), &body).await;
    let two = create_app(herald, &herald.tenant, &fresh_key("two"), &body).await;
    assert_eq!(one.status, StatusCode::CREATED, "{one:?}");
    assert_eq!(two.status, StatusCode::CREATED, "{two:?}");
    assert_ne!(app_id(&one), app_id(&two));
    // And requests without a key are never deduplicated.
    let plain_a = herald.post("/api/v1/app", body.clone()).await;
    let plain_b = herald.post("/api/v1/app", body.clone()).await;
    assert_eq!(plain_a.status, StatusCode::CREATED);
    assert_eq!(plain_b.status, StatusCode::CREATED);
    assert_ne!(app_id(&plain_a), app_id(&plain_b));
    assert_eq!(herald.count_rows("application").await, before + 4);
}

async fn the_same_key_from_another_tenant_is_independent(herald: &Herald) {
    let other = herald.create_tenant(&fresh_key("other")).await;
    let before = herald.count_rows("application").await;
    let key = fresh_key("shared");
    let body = json!({"name": "Shared key", "uid": "shared-key"});
    let mine = create_app(herald, &herald.tenant, &key, &body).await;
    let theirs = create_app(herald, &other, &key, &body).await;
    assert_eq!(mine.status, StatusCode::CREATED, "{mine:?}");
    assert_eq!(
        theirs.status,
        StatusCode::CREATED,
        "other tenant got a replay or an error: {theirs:?}"
    );
    assert_ne!(app_id(&mine), app_id(&theirs));
    assert_eq!(herald.count_rows("application").await, before + 2);

    // Each tenant sees its own app under the uid, and replays stay per tenant.
    let mine_again = create_app(herald, &herald.tenant, &key, &body).await;
    let theirs_again = create_app(herald, &other, &key, &body).await;
    assert_eq!(mine_again.body, mine.body);
    assert_eq!(theirs_again.body, theirs.body);
    let seen = herald
        .request(
            reqwest::Method::GET,
            "/api/v1/app/shared-key",
            Some(&other.key),
            None,
        )
        .await;
    assert_eq!(seen.body["id"], theirs.body["id"]);
    assert_eq!(herald.count_rows("application").await, before + 2);
}

async fn a_failed_request_is_not_cached(herald: &Herald) {
    let before = herald.count_rows("application").await;
    let key = fresh_key("retry");
    for bad in [
        json!({"name": ""}),
        json!({}),
        json!({"name": "Bad uid", "uid": "no spaces allowed"}),
    ] {
        let failed = create_app(herald, &herald.tenant, &key, &bad).await;
        assert_eq!(
            failed.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {failed:?}"
        );
    }
    assert_eq!(herald.count_rows("application").await, before);

    let fixed = create_app(
        herald,
        &herald.tenant,
        &key,
        &json!({"name": "Fixed", "uid": "fixed"}),
    )
    .await;
    assert_eq!(
        fixed.status,
        StatusCode::CREATED,
        "the retry ran instead of replaying the 422: {fixed:?}"
    );
    assert_eq!(fixed.body["name"], "Fixed");
    // From now on, the success is what the key replays.
    let replay = create_app(herald, &herald.tenant, &key, &json!({"name": ""})).await;
    assert_eq!(replay.status, StatusCode::CREATED, "{replay:?}");
    assert_eq!(replay.body, fixed.body);

    // A conflict (409) is a failure too: not remembered.
    let key = fresh_key("conflict");
    let conflict = create_app(
        herald,
        &herald.tenant,
        &key,
        &json!({"name": "Dup", "uid": "fixed"}),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{conflict:?}");
    let retried = create_app(
        herald,
        &herald.tenant,
        &key,
        &json!({"name": "Dup", "uid": "fixed-2"}),
    )
    .await;
    assert_eq!(retried.status, StatusCode::CREATED, "{retried:?}");
    assert_eq!(herald.count_rows("application").await, before + 2);
}

async fn invalid_keys_are_refused(herald: &Herald) {
    let before = herald.count_rows("application").await;
    let too_long = "k".repeat(257);
    for key in ["", too_long.as_str()] {
        let reply = create_app(herald, &herald.tenant, key, &json!({"name": "Bad key"})).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "key of {} chars: {reply:?}",
            key.len()
        );
        assert_eq!(reply.body["code"], "invalid_idempotency_key", "{reply:?}");
    }
    let longest = "k".repeat(256);
    let ok = create_app(
        herald,
        &herald.tenant,
        &longest,
        &json!({"name": "Long key"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok:?}");
    assert_eq!(herald.count_rows("application").await, before + 1);
}

async fn all_scenarios(herald: &Herald) {
    same_key_replays_the_first_response(herald).await;
    concurrent_duplicates_create_one_app(herald).await;
    a_different_key_creates_a_new_app(herald).await;
    the_same_key_from_another_tenant_is_independent(herald).await;
    a_failed_request_is_not_cached(herald).await;
    invalid_keys_are_refused(herald).await;
}

herald_e2e::e2e_tests! {
    async fn idempotency_keys_work_with_the_in_memory_store() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        all_scenarios(&herald).await;
    }
}

// Redis exists only in the services topology, so this one is not run embedded.
#[tokio::test]
async fn idempotency_keys_work_with_the_redis_store() {
    let Some(herald) = Herald::start_with(Options {
        redis: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let log = herald.log();
    assert!(
        log.contains("redis"),
        "the server is not using Redis; its log:\n{log}"
    );
    all_scenarios(&herald).await;
}
