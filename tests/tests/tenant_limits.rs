//! Fair use per tenant, in both topologies: a tenant over its message rate
//! gets 429 with `Retry-After` (and nothing is stored for it) while another
//! tenant's messages go through; payloads and endpoints per application are
//! bounded; and one tenant's backlog in the worker is parked beyond its
//! share, so another tenant's fresh message is delivered ahead of it.

mod common;

use std::time::Duration;

use futures::future::join_all;
use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options, Reply, Tenant};
use reqwest::Method;
use serde_json::{json, Value};

async fn as_tenant(herald: &Herald, tenant: &Tenant, path: &str, body: Value) -> Reply {
    herald
        .request(Method::POST, path, Some(&tenant.key), Some(body))
        .await
}

/// Creates application `a` of `tenant` with one endpoint per path of `receiver`.
async fn app_with_endpoints(herald: &Herald, tenant: &Tenant, receiver: &Receiver, paths: &[&str]) {
    let app = as_tenant(
        herald,
        tenant,
        "/api/v1/app",
        json!({"name": "A", "uid": "a"}),
    )
    .await;
    assert_eq!(app.status, 201, "{app:?}");
    for path in paths {
        let ep = as_tenant(
            herald,
            tenant,
            "/api/v1/app/a/endpoint",
            json!({"url": receiver.url(path)}),
        )
        .await;
        assert_eq!(ep.status, 201, "{ep:?}");
    }
}

async fn post(herald: &Herald, tenant: &Tenant, n: usize) -> Reply {
    as_tenant(
        herald,
        tenant,
        "/api/v1/app/a/msg",
        json!({"eventType": "e", "payload": {"n": n}}),
    )
    .await
}

async fn messages_of(herald: &Herald, tenant: &Tenant) -> i64 {
    let mut db = common::db(herald).await;
    sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE tenant_id = $1")
        .bind(&tenant.id)
        .fetch_one(&mut db)
        .await
        .unwrap()
}

herald_e2e::e2e_tests! {
    async fn a_flooding_tenant_gets_429s_and_limits_bound_payloads_and_endpoints() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![
                ("HERALD_TENANT_MESSAGE_RATE".into(), "5".into()),
                ("HERALD_TENANT_MESSAGE_BURST".into(), "10".into()),
                ("HERALD_MAX_ENDPOINTS_PER_APP".into(), "2".into()),
                ("HERALD_MAX_PAYLOAD_BYTES".into(), "1000".into()),
            ],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        let flooder = herald.tenant.clone();
        let quiet = herald.create_tenant("quiet").await;
        app_with_endpoints(&herald, &flooder, &receiver, &["flood"]).await;
        app_with_endpoints(&herald, &quiet, &receiver, &["quiet"]).await;

        // 60 messages at once: the burst of 10 (and what the rate adds
        // meanwhile) is accepted, the rest refused.
        let flood = join_all((0..60).map(|n| post(&herald, &flooder, n))).await;
        let accepted = flood.iter().filter(|r| r.status == 202).count();
        let refused: Vec<&Reply> = flood.iter().filter(|r| r.status == 429).collect();
        assert_eq!(accepted + refused.len(), 60, "{flood:?}");
        assert!((10..30).contains(&accepted), "{accepted} accepted");
        for reply in &refused {
            assert_eq!(reply.body["code"], "rate_limit_exceeded", "{reply:?}");
            assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
            let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=10).contains(&retry_after), "{reply:?}");
        }
        assert_eq!(messages_of(&herald, &flooder).await, accepted as i64);
        // Meanwhile the other tenant is held to its own rate only.
        for n in 0..5 {
            let reply = post(&herald, &quiet, n).await;
            assert_eq!(reply.status, 202, "{reply:?}");
        }
        let quiet_got = receiver.wait_for("quiet", 5, Duration::from_secs(20)).await;
        assert_eq!(quiet_got.len(), 5, "server log:\n{}", herald.log());
        let flood_got = receiver.wait_for("flood", accepted, Duration::from_secs(20)).await;
        assert_eq!(flood_got.len(), accepted);
        assert!(herald.metric("herald_messages_rate_limited_total").await >= refused.len() as f64);

        // A payload over the limit: 413, nothing stored.
        let before = messages_of(&herald, &quiet).await;
        let big = as_tenant(
            &herald,
            &quiet,
            "/api/v1/app/a/msg",
            json!({"eventType": "e", "payload": {"pad": "x".repeat(1000)}}),
        )
        .await;
        assert_eq!(big.status, 413, "{big:?}");
        assert_eq!(big.body["code"], "payload_too_large");
        assert_eq!(messages_of(&herald, &quiet).await, before);

        // A third endpoint on an application with two: 422, not created.
        let second = as_tenant(
            &herald,
            &quiet,
            "/api/v1/app/a/endpoint",
            json!({"url": receiver.url("second")}),
        )
        .await;
        assert_eq!(second.status, 201, "{second:?}");
        let third = as_tenant(
            &herald,
            &quiet,
            "/api/v1/app/a/endpoint",
            json!({"url": receiver.url("third")}),
        )
        .await;
        assert_eq!(third.status, 422, "{third:?}");
        assert_eq!(third.body["detail"][0]["loc"], json!(["body"]));
        let listed = herald
            .request(Method::GET, "/api/v1/app/a/endpoint", Some(&quiet.key), None)
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    }
}

herald_e2e::e2e_tests! {
    async fn one_tenant_s_backlog_waits_while_another_s_fresh_message_goes_first() {
        // Four slots, two per tenant; the flooding tenant's two endpoints
        // take a second per request.
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![
                ("HERALD_WORKER_CONCURRENCY".into(), "4".into()),
                ("HERALD_TENANT_CONCURRENCY".into(), "2".into()),
            ],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        receiver.delay("slow1", Duration::from_secs(1));
        receiver.delay("slow2", Duration::from_secs(1));
        let busy = herald.tenant.clone();
        let other = herald.create_tenant("other").await;
        app_with_endpoints(&herald, &busy, &receiver, &["slow1", "slow2"]).await;
        app_with_endpoints(&herald, &other, &receiver, &["fresh"]).await;
        for n in 0..20 {
            let reply = as_tenant(
                &herald,
                &busy,
                "/api/v1/app/a/msg",
                json!({"eventType": "e", "payload": {"n": n}}),
            )
            .await;
            assert_eq!(reply.status, 202, "{reply:?}");
        }
        // 40 deliveries of a second each, two at a time: about 20 s of
        // backlog. The other tenant's message goes through the free slots.
        let reply = as_tenant(
            &herald,
            &other,
            "/api/v1/app/a/msg",
            json!({"eventType": "e", "payload": {"fresh": true}}),
        )
        .await;
        assert_eq!(reply.status, 202, "{reply:?}");
        let fresh = receiver.wait_for("fresh", 1, Duration::from_secs(30)).await;
        assert_eq!(fresh.len(), 1, "server log:\n{}", herald.log());
        let backlog_done =
            receiver.received("slow1").len() + receiver.received("slow2").len();
        assert!(
            backlog_done < 20,
            "the fresh message waited for {backlog_done} of the backlog's 40 deliveries"
        );
        // The backlog is parked, not lost: it keeps arriving.
        let more = receiver
            .wait_for("slow1", backlog_done / 2 + 2, Duration::from_secs(30))
            .await;
        assert!(more.len() > backlog_done / 2, "server log:\n{}", herald.log());
    }
}
