//! Delivery through RabbitMQ in the production topology: an API process
//! (`HERALD_ROLES=api`) and a separate worker process (`HERALD_ROLES=worker`)
//! of the real binary, sharing one database, each test with its own RabbitMQ
//! prefix. Messages are posted to the API and counted per message id
//! (`webhook-id`) at a real local receiver.
//!
//! The tests run one at a time: several of them load the machine (thousands
//! of messages, a worker killed) or measure time, and would disturb each other.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::topology::{
    count_by_message, create_app, missing, post_messages, Topology, TopologyOptions,
};
use serde_json::json;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The retry schedule every test here uses ("1,1"): one second, ±20% jitter.
const RETRY_DELAY: Duration = Duration::from_secs(1);

async fn start() -> Option<Topology> {
    Topology::start(TopologyOptions::default()).await
}

/// Posts `body` as a message of application `a`; its id.
async fn post_message(api: &herald_e2e::Herald, body: serde_json::Value) -> String {
    let created = api.post("/api/v1/app/a/msg", body).await;
    assert_eq!(created.status, 202, "{created:?}");
    created.body["id"].as_str().expect("message id").to_owned()
}

fn header<'a>(request: &'a herald_e2e::receiver::Received, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_posted_to_the_api_is_delivered_signed_by_the_worker_through_rabbitmq() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = start().await else {
        return;
    };
    let api = &topology.api;
    let receiver = Receiver::start().await;
    create_app(api, "a", &[receiver.url("ok")]).await;
    let endpoints = api.get("/api/v1/app/a/endpoint").await;
    let endpoint_id = endpoints.body["data"][0]["id"].as_str().unwrap().to_owned();
    let secret = api
        .get(&format!("/api/v1/app/a/endpoint/{endpoint_id}/secret"))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let msg_id = post_message(
        api,
        json!({"eventType": "invoice.paid", "payload": {"invoice": 42}}),
    )
    .await;

    let got = receiver.wait_for("ok", 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "not delivered; logs:\n{}", topology.logs());
    let request = &got[0];
    assert_eq!(header(request, "webhook-id"), msg_id);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
        json!({"invoice": 42})
    );
    let key = herald_signature::parse_secret(&secret).unwrap();
    let headers = herald_signature::standard::WebhookHeaders {
        id: header(request, "webhook-id"),
        timestamp: header(request, "webhook-timestamp"),
        signature: header(request, "webhook-signature"),
    };
    herald_signature::standard::verify(&key, &headers, &request.body, Duration::from_secs(300))
        .expect("the signature verifies with the endpoint's secret");
    assert_eq!(
        topology
            .wait_for_delivery(&msg_id, "succeeded", Duration::from_secs(10))
            .await,
        ("succeeded".to_owned(), 1),
        "logs:\n{}",
        topology.logs()
    );

    // It went through this test's RabbitMQ topology: the worker runs on
    // RabbitMQ and declared the queues under the test's prefix, now drained.
    assert!(
        topology.logs().contains("rabbitmq"),
        "the worker uses RabbitMQ; logs:\n{}",
        topology.logs()
    );
    assert_eq!(
        topology.queue_depth(&topology.names().deliveries).await,
        Some(0),
        "{} exists and is empty",
        topology.names().deliveries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_endpoint_gets_three_attempts_a_second_apart_and_the_delivery_succeeds() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = start().await else {
        return;
    };
    let api = &topology.api;
    let receiver = Receiver::start().await;
    receiver.script("flaky", &[500, 500, 200]);
    create_app(api, "a", &[receiver.url("flaky")]).await;
    let msg_id = post_message(api, json!({"eventType": "t", "payload": {}})).await;

    assert_eq!(
        topology
            .wait_for_delivery(&msg_id, "succeeded", Duration::from_secs(30))
            .await,
        ("succeeded".to_owned(), 3),
        "logs:\n{}",
        topology.logs()
    );
    // Nothing more comes once it succeeded.
    tokio::time::sleep(RETRY_DELAY * 3).await;
    let attempts = receiver.received("flaky");
    assert_eq!(
        attempts.len(),
        3,
        "exactly three attempts; logs:\n{}",
        topology.logs()
    );
    assert!(
        attempts.iter().all(|r| header(r, "webhook-id") == msg_id),
        "every attempt carries the message id"
    );
    // Each retry waits the scheduled second minus at most 20% jitter (the
    // timer starts after the previous answer, so the gap between arrivals can
    // only be longer), and at most a second more on the delay ladder; 5 s is a
    // generous upper bound for a loaded machine.
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    for gap in &gaps {
        assert!(
            *gap >= RETRY_DELAY.mul_f64(0.8) - Duration::from_millis(10),
            "retried too early: gaps {gaps:?}"
        );
        assert!(
            *gap <= Duration::from_secs(5),
            "retried too late: gaps {gaps:?}; logs:\n{}",
            topology.logs()
        );
    }
    eprintln!("flaky endpoint: gaps between attempts {gaps:?}");

    let statuses: Vec<i32> =
        sqlx::query_scalar("SELECT status_code FROM message_attempt WHERE msg_id = $1 ORDER BY id")
            .bind(&msg_id)
            .fetch_all(&mut topology.db().await)
            .await
            .unwrap();
    assert_eq!(statuses, vec![500, 500, 200], "the attempts recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_always_fails_ends_dead_in_the_dead_queue_and_listed_as_failed() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = start().await else {
        return;
    };
    let api = &topology.api;
    let receiver = Receiver::start().await;
    receiver.script("down", &[500]);
    create_app(api, "a", &[receiver.url("down")]).await;
    let msg_id = post_message(api, json!({"eventType": "t", "payload": {}})).await;

    // Schedule "1,1": the first attempt and two retries, then dead.
    assert_eq!(
        topology
            .wait_for_delivery(&msg_id, "dead", Duration::from_secs(30))
            .await,
        ("dead".to_owned(), 3),
        "logs:\n{}",
        topology.logs()
    );
    tokio::time::sleep(RETRY_DELAY * 3).await;
    assert_eq!(
        receiver.received("down").len(),
        3,
        "three attempts and no more; logs:\n{}",
        topology.logs()
    );

    // The exhausted task was dead-lettered to {prefix}.dead, which the worker
    // drains into the database every few seconds: the test takes the letter
    // if it is still there, else the worker's log says it was drained.
    let drained = |logs: &str| logs.contains("dead letters drained into the database");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut letters = Vec::new();
    while Instant::now() < deadline {
        letters.extend(topology.take_dead_letters().await);
        if letters.iter().any(|l| l["msg_id"] == msg_id.as_str()) || drained(&topology.logs()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead: Vec<_> = letters
        .iter()
        .filter(|l| l["msg_id"] == msg_id.as_str())
        .collect();
    if dead.is_empty() {
        assert!(
            drained(&topology.logs()),
            "no task for {msg_id} in {} and none drained: {letters:?}; logs:\n{}",
            topology.names().dead,
            topology.logs()
        );
    } else {
        assert_eq!(
            dead.len(),
            1,
            "one task for {msg_id} in {}: {letters:?}; logs:\n{}",
            topology.names().dead,
            topology.logs()
        );
        assert_eq!(dead[0]["attempt"], 3, "the last attempt's task: {dead:?}");
    }

    // Listed as failed through the API (Svix `v1.message-attempt.list-by-msg`,
    // status 2 = Fail).
    let listed = api
        .get(&format!("/api/v1/app/a/attempt/msg/{msg_id}?status=2"))
        .await;
    assert_eq!(
        listed.status, 200,
        "GET /api/v1/app/{{app}}/attempt/msg/{{msg_id}}?status=2: {listed:?}"
    );
    let attempts = listed.body["data"].as_array().expect("data is a list");
    assert_eq!(attempts.len(), 3, "three failed attempts: {listed:?}");
    for attempt in attempts {
        assert_eq!(attempt["status"], 2, "a failed attempt: {attempt}");
        assert_eq!(attempt["msgId"], msg_id.as_str(), "{attempt}");
        assert_eq!(attempt["responseStatusCode"], 500, "{attempt}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_with_a_nul_byte_is_recorded_once_as_safe_text() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = start().await else {
        return;
    };
    let api = &topology.api;
    let receiver = Receiver::start().await;
    // PostgreSQL's TEXT cannot hold U+0000: stored as it came, this body made
    // the attempt unrecordable and the task came back every few seconds.
    receiver.body("nul", b"ok\x00nul");
    create_app(api, "a", &[receiver.url("nul")]).await;
    let msg_id = post_message(api, json!({"eventType": "t", "payload": {}})).await;

    assert_eq!(
        topology
            .wait_for_delivery(&msg_id, "succeeded", Duration::from_secs(30))
            .await,
        ("succeeded".to_owned(), 1),
        "logs:\n{}",
        topology.logs()
    );
    // A task that could not be recorded would come back within seconds.
    tokio::time::sleep(RETRY_DELAY * 3).await;
    assert_eq!(
        receiver.received("nul").len(),
        1,
        "one request and no more; logs:\n{}",
        topology.logs()
    );

    let stored: Vec<String> =
        sqlx::query_scalar("SELECT response_body FROM message_attempt WHERE msg_id = $1")
            .bind(&msg_id)
            .fetch_all(&mut topology.db().await)
            .await
            .unwrap();
    assert_eq!(stored, ["ok\u{fffd}nul"], "the NUL is stored as U+FFFD");
    let listed = api
        .get(&format!("/api/v1/app/a/attempt/msg/{msg_id}"))
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let attempts = listed.body["data"].as_array().expect("data is a list");
    assert_eq!(attempts.len(), 1, "{listed:?}");
    assert_eq!(attempts[0]["status"], 0, "a successful attempt: {listed:?}");
    assert_eq!(attempts[0]["responseStatusCode"], 200, "{listed:?}");
    assert_eq!(attempts[0]["response"], "ok\u{fffd}nul", "{listed:?}");
}

/// Messages in each burst.
const BURST: usize = 3000;
/// Messages posted at once.
const POST_CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_of_a_burst_arrives_although_the_worker_is_killed_in_the_middle() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = start().await else {
        return;
    };
    let receiver = Receiver::start().await;
    create_app(&topology.api, "burst", &[receiver.url("fast")]).await;

    let started = Instant::now();
    let posted = Arc::new(AtomicUsize::new(0));
    let posting = tokio::spawn(post_messages(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "burst".to_owned(),
        BURST,
        POST_CONCURRENCY,
        posted.clone(),
    ));

    // Kill -9 once the receiver has some, but far from all.
    let some = receiver
        .wait_for("fast", BURST / 10, Duration::from_secs(60))
        .await
        .len();
    assert!(
        some >= BURST / 10,
        "only {some} deliveries within 60 s; logs:\n{}",
        topology.logs()
    );
    topology.kill_worker();
    let at_kill = count_by_message(&receiver.received("fast")).len();
    let posted_at_kill = posted.load(Ordering::Relaxed);
    assert!(
        at_kill < BURST / 2,
        "the worker was killed too late to prove anything: {at_kill} of {BURST} had arrived"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    topology.start_worker().await;

    let ids: HashSet<String> = tokio::time::timeout(Duration::from_secs(180), posting)
        .await
        .expect("posting finishes within 180 s")
        .expect("every message is accepted")
        .into_iter()
        .collect();
    assert_eq!(ids.len(), BURST);
    let posted_in = started.elapsed();

    // Tasks held by the killed worker come back from RabbitMQ at once; claimed
    // deliveries it had not published yet come back when their lease (20 s) ends.
    let (counts, states) = topology
        .wait_for_every_message(&receiver, "fast", &ids, Duration::from_secs(120))
        .await;
    let all_in = started.elapsed();
    assert_eq!(
        states.get("succeeded").copied(),
        Some(BURST as i64),
        "{states:?}"
    );
    let total: usize = counts.values().sum();
    eprintln!(
        "worker killed after {at_kill} of {BURST} had arrived ({posted_at_kill} posted); \
         all posted after {posted_in:?}, all arrived after {all_in:?}; \
         {total} requests for {} messages: {} duplicates",
        counts.len(),
        total - counts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_slow_down_a_fast_one() {
    let _serial = SERIAL.lock().await;
    // Attempts to the slow endpoint take 10 s, so the timeout must be longer.
    let Some(topology) = Topology::start(TopologyOptions {
        delivery_timeout: 15,
        delivery_lease: 30,
        ..TopologyOptions::default()
    })
    .await
    else {
        return;
    };
    const MESSAGES: usize = 100;
    const SLOW: Duration = Duration::from_secs(10);
    // HERALD_ENDPOINT_CONCURRENCY's default: attempts in flight per endpoint.
    const PER_ENDPOINT: usize = 16;
    let receiver = Receiver::start().await;
    receiver.delay("slow", SLOW);
    create_app(
        &topology.api,
        "a",
        &[receiver.url("slow"), receiver.url("fast")],
    )
    .await;

    let started = Instant::now();
    let ids: HashSet<String> = post_messages(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "a".to_owned(),
        MESSAGES,
        POST_CONCURRENCY,
        Arc::new(AtomicUsize::new(0)),
    )
    .await
    .into_iter()
    .collect();
    let posted_in = started.elapsed();

    // Every fast delivery arrives before the first slow answer could have come
    // back: were the fast endpoint's tasks waiting behind the slow one's, some
    // would wait at least 10 s.
    let fast = receiver.wait_for("fast", MESSAGES, SLOW).await;
    let fast_in = started.elapsed();
    let slow_then = receiver.received("slow").len();
    let fast_counts = count_by_message(&fast);
    assert!(
        missing(&ids, &fast_counts).is_empty(),
        "the fast endpoint got {} of {MESSAGES} messages in {fast_in:?} (the slow one {slow_then}); logs:\n{}",
        fast_counts.len(),
        topology.logs()
    );
    // Meanwhile the slow endpoint holds only its share of the worker.
    assert!(
        (1..=PER_ENDPOINT).contains(&slow_then),
        "the slow endpoint had {slow_then} requests when the fast one was done"
    );
    eprintln!(
        "slow endpoint: posted {MESSAGES} in {posted_in:?}; the fast endpoint had all after \
         {fast_in:?}, when the slow one had {slow_then} requests"
    );

    // The slow endpoint is served too, PER_ENDPOINT at a time: about
    // MESSAGES / PER_ENDPOINT * 10 s.
    let deadline = Instant::now() + Duration::from_secs(240);
    let slow_counts = loop {
        let counts = count_by_message(&receiver.received("slow"));
        if missing(&ids, &counts).is_empty() || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let slow_all_in = started.elapsed();
    assert!(
        missing(&ids, &slow_counts).is_empty(),
        "the slow endpoint got only {} of {MESSAGES} messages; logs:\n{}",
        slow_counts.len(),
        topology.logs()
    );
    let states = topology
        .wait_until_deliveries_finished(Duration::from_secs(60))
        .await;
    assert_eq!(
        states.get("succeeded").copied(),
        Some(2 * MESSAGES as i64),
        "every delivery succeeded: {states:?}; logs:\n{}",
        topology.logs()
    );
    let slow_total: usize = slow_counts.values().sum();
    eprintln!(
        "slow endpoint: all {MESSAGES} after {slow_all_in:?}, {slow_total} requests ({} duplicates); \
         fast endpoint: {} requests",
        slow_total - MESSAGES,
        receiver.received("fast").len()
    );
}

/// The value of an unlabelled counter in a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_s_backlog_is_parked_not_circulated() {
    let _serial = SERIAL.lock().await;
    let Some(topology) = Topology::start(TopologyOptions {
        metrics: true,
        ..TopologyOptions::default()
    })
    .await
    else {
        return;
    };
    // 300 messages to an endpoint that answers after 1 s, 16 at a time
    // (HERALD_ENDPOINT_CONCURRENCY's default): about 19 s of backlog. Cycled
    // through the broker, each waiting task would come back every second —
    // thousands of extra trips, growing with the time the backlog lasts.
    // Parked, each waits in its row and comes back about once.
    const MESSAGES: usize = 300;
    let receiver = Receiver::start().await;
    receiver.delay("slow", Duration::from_secs(1));
    create_app(&topology.api, "a", &[receiver.url("slow")]).await;
    let ids: HashSet<String> = post_messages(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "a".to_owned(),
        MESSAGES,
        POST_CONCURRENCY,
        Arc::new(AtomicUsize::new(0)),
    )
    .await
    .into_iter()
    .collect();
    let arrived = receiver
        .wait_for("slow", MESSAGES, Duration::from_secs(120))
        .await;
    let counts = count_by_message(&arrived);
    assert!(
        missing(&ids, &counts).is_empty(),
        "the slow endpoint got {} of {MESSAGES} messages; logs:\n{}",
        counts.len(),
        topology.logs()
    );
    let page = reqwest::get(format!("http://{}/metrics", topology.metrics_addr(1)))
        .await
        .expect("worker metrics")
        .text()
        .await
        .expect("metrics page");
    let parked = counter(&page, "herald_deliveries_parked_total");
    let relayed = counter(&page, "herald_deliveries_relayed_total");
    eprintln!("{MESSAGES} messages to a 1 s endpoint: {parked} parks, {relayed} relayed");
    assert!(parked > 0.0, "the backlog was parked: {parked}");
    // Each delivery is parked at most a couple of times, not once a second,
    // and the relay hands out each message once plus each park once (the
    // API of this topology leaves every new delivery to the relay).
    let messages = MESSAGES as f64;
    assert!(
        parked <= 2.0 * messages && relayed <= messages + parked,
        "{parked} parks and {relayed} relays for {MESSAGES} messages; logs:\n{}",
        topology.logs()
    );
}
