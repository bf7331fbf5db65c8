//! Dead letters end to end, in both topologies: deliveries to a failing
//! receiver die after a short schedule, are drained from the dead-letter
//! queue into the database, listed (filtered and paged) through the API and
//! redriven by subset once the receiver recovers; bad redrive filters are
//! refused and change nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::{Backend, Herald, Options, Reply};
use serde_json::{json, Value};

/// A worker on the broker of the topology, retrying once after a second:
/// two attempts, then dead.
async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        env: vec![("HERALD_RETRY_SCHEDULE".into(), "1".into())],
        ..Options::default()
    })
    .await
}

/// `(msgId, endpointId)` of each listed dead letter, in list order.
fn pairs(reply: &Reply) -> Vec<(String, String)> {
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {reply:?}"))
        .iter()
        .map(|item| {
            (
                item["msgId"].as_str().unwrap().to_owned(),
                item["endpointId"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Lists `path` until it holds `count` dead letters (at most `limit`); the
/// last reply.
async fn wait_for_dead(herald: &Herald, path: &str, count: usize, limit: Duration) -> Reply {
    let deadline = Instant::now() + limit;
    loop {
        let reply = herald.get(path).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if pairs(&reply).len() == count || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `webhook-id`s `receiver` got on `path` from the `from`-th request on.
fn ids_received(receiver: &Receiver, path: &str, from: usize) -> BTreeSet<String> {
    receiver.received(path)[from..]
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(m, e)| ((*m).to_owned(), (*e).to_owned()))
        .collect()
}

herald_e2e::e2e_tests! {
    async fn dead_deliveries_are_listed_by_filter_and_a_redriven_subset_alone_arrives() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("one", &[500]);
        receiver.script("two", &[500]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let mut endpoints = Vec::new();
        for path in ["one", "two"] {
            let ep = herald
                .post("/api/v1/app/a/endpoint", json!({"url": receiver.url(path)}))
                .await;
            assert_eq!(ep.status, 201, "{ep:?}");
            endpoints.push(ep.body["id"].as_str().unwrap().to_owned());
        }
        let (one, two) = (endpoints[0].as_str(), endpoints[1].as_str());
        let post = |event_type: &'static str| {
            let herald = &herald;
            async move {
                let created = herald
                    .post(
                        "/api/v1/app/a/msg",
                        json!({"eventType": event_type, "payload": {"k": 1}}),
                    )
                    .await;
                assert_eq!(created.status, 202, "{created:?}");
                created.body["id"].as_str().unwrap().to_owned()
            }
        };
        let first = post("order.created").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let split = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let paid = post("order.paid").await;
        let last = post("order.created").await;

        // Two attempts each, then dead: six dead letters.
        let all = wait_for_dead(&herald, "/api/v1/app/a/dead-letter", 6, Duration::from_secs(30))
            .await;
        let listed = pairs(&all);
        assert_eq!(listed.len(), 6, "{all:?}\nserver log:\n{}", herald.log());
        let mut newest_first = listed.clone();
        newest_first.sort();
        newest_first.reverse();
        assert_eq!(listed, newest_first, "newest message first");
        assert_eq!(all.body["done"], true);
        for item in all.body["data"].as_array().unwrap() {
            assert_eq!(item["attempts"], 2, "{item}");
            assert_eq!(item["lastStatusCode"], 500, "{item}");
            assert_eq!(item["lastErrorClass"], "5xx", "{item}");
            let msg_id = item["msgId"].as_str().unwrap();
            let expected = if msg_id == paid { "order.paid" } else { "order.created" };
            assert_eq!(item["eventType"], expected, "{item}");
            assert!(item["diedAt"].as_str().is_some_and(|t| !t.is_empty()), "{item}");
        }

        // Filters: event type, endpoint, and either side of a time.
        let by_type = herald
            .get("/api/v1/app/a/dead-letter?eventTypes=order.created")
            .await;
        assert_eq!(
            pairs(&by_type).into_iter().collect::<BTreeSet<_>>(),
            set(&[(&first, one), (&first, two), (&last, one), (&last, two)])
        );
        let by_endpoint = herald
            .get(&format!("/api/v1/app/a/endpoint/{two}/dead-letter"))
            .await;
        assert_eq!(
            pairs(&by_endpoint).into_iter().collect::<BTreeSet<_>>(),
            set(&[(&first, two), (&paid, two), (&last, two)])
        );
        let at = urlencoding(&split.to_rfc3339());
        let before = herald
            .get(&format!("/api/v1/app/a/dead-letter?before={at}"))
            .await;
        assert_eq!(
            pairs(&before).into_iter().collect::<BTreeSet<_>>(),
            set(&[(&first, one), (&first, two)])
        );
        let after = herald
            .get(&format!(
                "/api/v1/app/a/dead-letter?after={at}&event_types=order.paid"
            ))
            .await;
        assert_eq!(
            pairs(&after).into_iter().collect::<BTreeSet<_>>(),
            set(&[(&paid, one), (&paid, two)])
        );

        // Pages of four and then two cover the list once.
        let page = herald.get("/api/v1/app/a/dead-letter?limit=4").await;
        assert_eq!(page.body["done"], false, "{page:?}");
        let iterator = page.body["iterator"].as_str().unwrap().to_owned();
        let rest = herald
            .get(&format!("/api/v1/app/a/dead-letter?limit=4&iterator={iterator}"))
            .await;
        assert_eq!(rest.body["done"], true, "{rest:?}");
        let walked: Vec<_> = pairs(&page).into_iter().chain(pairs(&rest)).collect();
        assert_eq!(walked, listed);

        // Bad filters: 422 naming the field, and nothing redriven.
        let bad: &[(Value, &[&str])] = &[
            (json!({"eventTypes": ["not a name"]}), &["body", "eventTypes"]),
            (json!({"eventTypes": []}), &["body", "eventTypes"]),
            (json!({"msgIds": ["msg with spaces"]}), &["body", "msgIds"]),
            (json!({"before": "yesterday"}), &["body", "before"]),
            (
                json!({"before": split.to_rfc3339(), "after": split.to_rfc3339()}),
                &["body", "before"],
            ),
            (json!({"endpointId": "ep_2bHqIGGMhbTZ3Wv6vL2dbIBVfzw"}), &["body", "endpointId"]),
        ];
        for (body, loc) in bad {
            let refused = herald.post("/api/v1/app/a/dead-letter/redrive", body.clone()).await;
            assert_eq!(refused.status, 422, "{body}: {refused:?}");
            let reported: Vec<&str> = refused.body["detail"][0]["loc"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}: {refused:?}"))
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert_eq!(reported, *loc, "{body}: {refused:?}");
        }
        // A misspelt filter would otherwise redrive everything.
        let misspelt = herald
            .post("/api/v1/app/a/dead-letter/redrive", json!({"eventType": "order.paid"}))
            .await;
        assert_eq!(misspelt.status, 422, "{misspelt:?}");
        let elsewhere = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{one}/dead-letter/redrive"),
                json!({"endpointId": two}),
            )
            .await;
        assert_eq!(elsewhere.status, 422, "{elsewhere:?}");
        let bad_query = herald.get("/api/v1/app/a/dead-letter?before=yesterday").await;
        assert_eq!(bad_query.status, 422, "{bad_query:?}");
        assert_eq!(pairs(&herald.get("/api/v1/app/a/dead-letter").await), listed);

        // The receiver recovers; a subset is redriven, by filter on the
        // application's route and by message on an endpoint's.
        let sent_before = (receiver.received("one").len(), receiver.received("two").len());
        receiver.script("one", &[200]);
        receiver.script("two", &[200]);
        let redriven = herald
            .post(
                "/api/v1/app/a/dead-letter/redrive",
                json!({"eventTypes": ["order.created"], "endpointId": one}),
            )
            .await;
        assert_eq!(redriven.status, 202, "{redriven:?}");
        assert_eq!(redriven.body, json!({"redriven": 2, "done": true}));
        let by_message = herald
            .post(
                &format!("/api/v1/app/a/endpoint/{two}/dead-letter/redrive"),
                json!({"msgIds": [paid]}),
            )
            .await;
        assert_eq!(by_message.status, 202, "{by_message:?}");
        assert_eq!(by_message.body["redriven"], 1);

        receiver.wait_for("one", sent_before.0 + 2, Duration::from_secs(20)).await;
        receiver.wait_for("two", sent_before.1 + 1, Duration::from_secs(20)).await;
        // Nothing else comes.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            ids_received(&receiver, "one", sent_before.0),
            BTreeSet::from([first.clone(), last.clone()])
        );
        assert_eq!(receiver.received("one").len(), sent_before.0 + 2);
        assert_eq!(ids_received(&receiver, "two", sent_before.1), BTreeSet::from([paid.clone()]));
        assert_eq!(receiver.received("two").len(), sent_before.1 + 1);

        let left = wait_for_dead(&herald, "/api/v1/app/a/dead-letter", 3, Duration::from_secs(10))
            .await;
        assert_eq!(
            pairs(&left).into_iter().collect::<BTreeSet<_>>(),
            set(&[(&paid, one), (&first, two), (&last, two)])
        );
        // The redriven attempt was a manual one, and it succeeded.
        let attempts = herald
            .get(&format!("/api/v1/app/a/attempt/msg/{first}?endpoint_id={one}"))
            .await;
        assert_eq!(attempts.body["data"][0]["triggerType"], 1, "{attempts:?}");
        assert_eq!(attempts.body["data"][0]["responseStatusCode"], 200, "{attempts:?}");

        // An empty body redrives the rest.
        let everything = herald
            .request_raw(
                reqwest::Method::POST,
                "/api/v1/app/a/dead-letter/redrive",
                Some(&herald.tenant.key),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(everything.status, 202, "{everything:?}");
        assert_eq!(everything.body["redriven"], 3);
        let none = wait_for_dead(&herald, "/api/v1/app/a/dead-letter", 0, Duration::from_secs(20))
            .await;
        assert!(pairs(&none).is_empty(), "{none:?}");

        // The worker drained each of the six letters of the dead-letter queue
        // into the database exactly once: the database had them dead, or
        // (drained after the redrive) moved on; none was still in flight.
        let drained = |result: &'static str| {
            let herald = &herald;
            async move {
                let series = format!("herald_dead_letters_drained_total{{result=\"{result}\"}}");
                herald.metric(&series).await
            }
        };
        let total = || async {
            drained("already_dead").await + drained("moved_on").await + drained("marked_dead").await
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while total().await < 6.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(total().await, 6.0, "server log:\n{}", herald.log());
        assert_eq!(drained("marked_dead").await, 0.0);
    }
}

herald_e2e::e2e_tests! {
    async fn another_tenant_neither_sees_nor_redrives_dead_letters() {
        let Some(herald) = start().await else { return };
        let receiver = Receiver::start().await;
        receiver.script("down", &[500]);
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let app = herald.get("/api/v1/app/a").await.body["id"].as_str().unwrap().to_owned();
        herald
            .post("/api/v1/app/a/endpoint", json!({"url": receiver.url("down")}))
            .await;
        herald
            .post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {}}))
            .await;
        let dead = wait_for_dead(&herald, "/api/v1/app/a/dead-letter", 1, Duration::from_secs(30))
            .await;
        assert_eq!(pairs(&dead).len(), 1, "server log:\n{}", herald.log());

        let stranger = herald.create_tenant("stranger").await;
        for (method, path) in [
            (reqwest::Method::GET, format!("/api/v1/app/{app}/dead-letter")),
            (reqwest::Method::POST, format!("/api/v1/app/{app}/dead-letter/redrive")),
        ] {
            let reply = herald
                .request(method, &path, Some(&stranger.key), Some(json!({})))
                .await;
            assert_eq!(reply.status, 404, "{path}: {reply:?}");
            assert_eq!(reply.body["code"], "not_found");
        }
        assert_eq!(pairs(&herald.get("/api/v1/app/a/dead-letter").await).len(), 1);
    }
}

herald_e2e::e2e_tests! {
    async fn one_redrive_call_is_bounded_and_says_when_more_remain() {
        let Some(herald) = start().await else { return };
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let app = herald.get("/api/v1/app/a").await.body["id"].as_str().unwrap().to_owned();
        // A message with no endpoint, then 10,001 dead deliveries of it
        // written straight into the database (to endpoints that do not
        // exist: the redriven deliveries end failed without a request).
        let created = herald
            .post("/api/v1/app/a/msg", json!({"eventType": "t", "payload": {}}))
            .await;
        assert_eq!(created.status, 202, "{created:?}");
        let msg_id = created.body["id"].as_str().unwrap().to_owned();
        let (endpoint_id, now) = match Backend::current() {
            Backend::Services => ("'ep_' || lpad(g::text, 27, '0')", "now()"),
            Backend::Embedded => (
                "printf('ep_%027d', g)",
                "CAST(strftime('%s', 'now') AS INTEGER) * 1000000",
            ),
        };
        let insert = format!(
            "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                 next_attempt_at, created_at, updated_at) \
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 10001) \
             SELECT $1, {endpoint_id}, $2, $3, 'dead', 8, NULL, {now}, {now} FROM s"
        );
        sqlx::query(&insert)
            .bind(&msg_id)
            .bind(&herald.tenant.id)
            .bind(&app)
            .execute(&mut herald.db().await)
            .await
            .unwrap_or_else(|e| panic!("{insert}: {e}"));

        let first = herald.post("/api/v1/app/a/dead-letter/redrive", json!({})).await;
        assert_eq!(first.status, 202, "{first:?}");
        assert_eq!(first.body, json!({"redriven": 10_000, "done": false}));
        let second = herald.post("/api/v1/app/a/dead-letter/redrive", json!({})).await;
        assert_eq!(second.body, json!({"redriven": 1, "done": true}));
        let third = herald.post("/api/v1/app/a/dead-letter/redrive", json!({})).await;
        assert_eq!(third.body, json!({"redriven": 0, "done": true}));
    }
}

/// Percent-encodes the characters of an RFC 3339 time a query string cannot
/// carry as they are (`+` of the offset, `:`).
fn urlencoding(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
