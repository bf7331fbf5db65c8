//! The API process is killed with SIGKILL in the middle of a burst of posts,
//! in the production topology (an API process, a worker process and, as
//! docker-compose runs it, a stats process of the real binary over
//! PostgreSQL, RabbitMQ and Redis), and a new API process is started while
//! the worker keeps running.
//!
//! Every post carries an `eventId` of its own (`evt-{n}`) and goes to an
//! application with two endpoints at a real local receiver. Then:
//!
//! - every post answered 202 arrives at both endpoints (counted per message
//!   id, `webhook-id`), and its delivery rows end `succeeded`;
//! - a post that got no answer (in flight when the process died, or refused
//!   once it was gone) is either not stored at all (`GET …/msg/{eventId}` is
//!   404) or stored whole: found, with one delivery row per endpoint, both
//!   delivered and both with their attempt in the attempt log. A message
//!   stored without its deliveries fails the test;
//! - posted again with the same `eventId` after the restart, such a message
//!   is answered 409 when it was stored and 202 when it was not, and is then
//!   delivered exactly like the others;
//! - duplicates follow the rule of the worker-kill test in
//!   `rabbit_delivery.rs`: a message may arrive more than once (at-least-once;
//!   they are counted and reported), but there is exactly one message per
//!   `eventId`, exactly one delivery row per message and endpoint, all
//!   `succeeded`, and nothing arrives that the test did not post.
//!
//! Twice: with the API handing new deliveries straight to RabbitMQ (compose),
//! where rows a killed API stored claimed but never published come back when
//! their lease ends, and with the API leaving them to the worker's relay.
//! The two tests run one at a time: both load the machine, and the kill has
//! to land while posts are in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_e2e::receiver::Receiver;
use herald_e2e::topology::{create_app, Topology, TopologyOptions};
use herald_e2e::Herald;
use serde_json::{json, Value};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Messages in the burst.
const BURST: usize = 400;
/// Posts in flight at once.
const POST_CONCURRENCY: usize = 32;
/// The API is killed once this many posts have been answered.
const KILL_AFTER: usize = BURST / 4;
/// The endpoints of the application (paths at the receiver).
const ENDPOINTS: [&str; 2] = ["a", "b"];
/// Bound on every message arriving after the restart (it covers the lease).
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// What one post got.
#[derive(Clone, Debug)]
enum Answer {
    /// 202, with the message id.
    Accepted(String),
    /// Any other status, with the body.
    Refused(u16, String),
    /// No answer at all: the connection was reset, closed or refused.
    /// `started_before_kill`: sent before the test killed the API, so it was
    /// in flight when the process died.
    Lost {
        started_before_kill: bool,
        error: String,
    },
}

/// The burst's progress and every post's answer, by `n`.
struct Burst {
    answers: Mutex<Vec<Option<Answer>>>,
    answered: AtomicUsize,
    in_flight: AtomicUsize,
    killed: AtomicBool,
}

impl Burst {
    fn new() -> Self {
        Self {
            answers: Mutex::new(vec![None; BURST]),
            answered: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
        }
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .map(|(n, a)| {
                a.clone()
                    .unwrap_or_else(|| panic!("post {n} was never made"))
            })
            .collect()
    }
}

fn event_id(n: usize) -> String {
    format!("evt-{n}")
}

fn body(n: usize) -> Value {
    json!({"eventType": "burst", "eventId": event_id(n), "payload": {"n": n}})
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(POST_CONCURRENCY)
        .build()
        .expect("http client")
}

/// Posts message `n` to `url` and says what came back.
async fn post(http: &reqwest::Client, url: &str, key: &str, n: usize) -> Result<Answer, String> {
    let response = http
        .post(url)
        .bearer_auth(key)
        .json(&body(n))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    // The body can be cut off too, when the process dies mid-answer.
    let text = response.text().await.map_err(|e| format!("{e:?}"))?;
    if status != 202 {
        return Ok(Answer::Refused(status, text));
    }
    let reply: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    assert_eq!(reply["eventId"], event_id(n), "the 202 of post {n}: {text}");
    Ok(Answer::Accepted(
        reply["id"].as_str().expect("message id").to_owned(),
    ))
}

/// Posts the burst, `POST_CONCURRENCY` at a time, recording every answer.
/// Owns everything, to run in its own task.
async fn post_burst(url: String, key: String, burst: Arc<Burst>) {
    let http = client();
    futures::stream::iter(0..BURST)
        .for_each_concurrent(POST_CONCURRENCY, |n| {
            let (http, url, key, burst) = (&http, &url, &key, &burst);
            async move {
                let started_before_kill = !burst.killed.load(Ordering::SeqCst);
                burst.in_flight.fetch_add(1, Ordering::SeqCst);
                let answer = post(http, url, key, n)
                    .await
                    .unwrap_or_else(|error| Answer::Lost {
                        started_before_kill,
                        error,
                    });
                burst.in_flight.fetch_sub(1, Ordering::SeqCst);
                burst.answers.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(answer);
                burst.answered.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
}

/// The id of the message with `eventId` `evt-{n}`, or `None` on 404.
async fn find(api: &Herald, app: &str, n: usize) -> Option<String> {
    let found = api
        .get(&format!("/api/v1/app/{app}/msg/{}", event_id(n)))
        .await;
    match found.status.as_u16() {
        200 => {
            assert_eq!(found.body["eventId"], event_id(n), "{found:?}");
            assert_eq!(found.body["payload"], json!({"n": n}), "{found:?}");
            Some(found.body["id"].as_str().expect("message id").to_owned())
        }
        404 => None,
        _ => panic!("GET message {}: {found:?}", event_id(n)),
    }
}

/// What became of a post that got no answer.
#[derive(Debug)]
struct Unanswered {
    n: usize,
    started_before_kill: bool,
    /// Its message id, if the killed API had stored it.
    stored: Option<String>,
    /// The status of the same post made again after the restart.
    reposted: u16,
    /// The id of the message that now holds its `eventId`.
    id: String,
}

async fn api_killed_mid_burst(options: TopologyOptions) {
    let _serial = SERIAL.lock().await;
    let handoff = options.api_on_broker;
    let Some(mut topology) = Topology::start(options).await else {
        return;
    };
    if handoff {
        topology.start_stats().await;
    }
    let receiver = Receiver::start().await;
    let urls: Vec<String> = ENDPOINTS.iter().map(|p| receiver.url(p)).collect();
    create_app(&topology.api, "burst", &urls).await;
    // Named by id, as SDKs do: the path that reads the fan-out together with
    // the other messages arriving meanwhile.
    let app = topology.api.get("/api/v1/app/burst").await.body["id"]
        .as_str()
        .expect("application id")
        .to_owned();

    // ------------------------------------------------------------ the kill
    let started = Instant::now();
    let burst = Arc::new(Burst::new());
    let posting = tokio::spawn(post_burst(
        format!("{}/api/v1/app/{app}/msg/", topology.api.url),
        topology.api.tenant.key.clone(),
        burst.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while burst.answered.load(Ordering::SeqCst) < KILL_AFTER
        || burst.in_flight.load(Ordering::SeqCst) < POST_CONCURRENCY / 2
    {
        assert!(
            Instant::now() < deadline && !posting.is_finished(),
            "the burst did not get {KILL_AFTER} answers with posts in flight within 60 s \
             ({} answered); logs:\n{}",
            burst.answered.load(Ordering::SeqCst),
            topology.logs()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    burst.killed.store(true, Ordering::SeqCst);
    let in_flight_at_kill = burst.in_flight.load(Ordering::SeqCst);
    let answered_at_kill = burst.answered.load(Ordering::SeqCst);
    topology.kill_api();
    let killed_at = started.elapsed();

    // The rest of the burst meets the dead port at once.
    let posted = tokio::time::timeout(Duration::from_secs(60), posting).await;
    assert!(
        matches!(posted, Ok(Ok(()))),
        "posting the burst did not finish within 60 s of the kill: {posted:?}"
    );
    let answers = burst.answers();
    let restarting = Instant::now();
    topology.restart_api().await;
    let restart_took = restarting.elapsed();
    let api = &topology.api;

    let mut accepted: BTreeMap<usize, String> = BTreeMap::new();
    let mut lost = Vec::new();
    let mut refused = Vec::new();
    for (n, answer) in answers.iter().enumerate() {
        match answer {
            Answer::Accepted(id) => {
                accepted.insert(n, id.clone());
            }
            Answer::Lost {
                started_before_kill,
                error,
            } => lost.push((n, *started_before_kill, error.clone())),
            Answer::Refused(status, body) => refused.push((n, *status, body.clone())),
        }
    }
    // Up to the kill the API answered everything 202; after it nothing answered.
    assert!(
        refused.is_empty(),
        "posts answered other than 202: {refused:?}; logs:\n{}",
        topology.logs()
    );
    let in_flight_lost = lost.iter().filter(|(_, before, _)| *before).count();
    assert!(
        in_flight_lost > 0,
        "no post was in flight when the API was killed ({in_flight_at_kill} counted in flight, \
         {answered_at_kill} answered): the test proves nothing"
    );
    assert!(
        accepted.len() >= answered_at_kill,
        "{} accepted, {answered_at_kill} answered before the kill",
        accepted.len()
    );

    // ------------------------------------------------ the unanswered posts
    // Each one is stored whole or not at all; posted again it is refused as
    // a duplicate exactly when it was stored.
    let http = client();
    let post_url = format!("{}/api/v1/app/{app}/msg/", api.url);
    let mut unanswered = Vec::new();
    let mut late = Vec::new();
    for (n, started_before_kill, error) in &lost {
        let n = *n;
        let stored = find(api, &app, n).await;
        let again = post(&http, &post_url, &api.tenant.key, n)
            .await
            .unwrap_or_else(|e| panic!("post {n} again after the restart: {e}"));
        let (reposted, id) = match (&stored, again) {
            (Some(id), Answer::Refused(409, _)) => (409, id.clone()),
            (None, Answer::Accepted(id)) => (202, id),
            // Stored by a commit the killed process had sent but PostgreSQL
            // finished after the look-up: allowed (stored whole is checked
            // below), and reported.
            (None, Answer::Refused(409, body)) => {
                let id = find(api, &app, n).await.unwrap_or_else(|| {
                    panic!("post {n} again was answered 409 ({body}) but its eventId is not found")
                });
                late.push(n);
                (409, id)
            }
            (stored, again) => panic!(
                "post {n} (no answer before the kill: {error}; found after the restart: \
                 {stored:?}) posted again got {again:?}; logs:\n{}",
                topology.logs()
            ),
        };
        unanswered.push(Unanswered {
            n,
            started_before_kill: *started_before_kill,
            stored,
            reposted,
            id,
        });
    }

    // Every eventId of the burst names exactly one message, the one its 202
    // or its look-up gave.
    let mut expected: HashMap<String, usize> =
        accepted.iter().map(|(n, id)| (id.clone(), *n)).collect();
    expected.extend(unanswered.iter().map(|u| (u.id.clone(), u.n)));
    assert_eq!(
        expected.len(),
        BURST,
        "{} messages for {BURST} eventIds",
        expected.len()
    );
    let mut db = topology.db().await;
    let stored: Vec<(String, Option<String>)> = sqlx::query_as("SELECT id, event_id FROM message")
        .fetch_all(&mut db)
        .await
        .expect("read the messages");
    let stored: HashMap<String, String> = stored
        .into_iter()
        .map(|(id, event)| (id, event.unwrap_or_default()))
        .collect();
    let by_event: HashMap<&str, &str> = stored
        .iter()
        .map(|(id, e)| (e.as_str(), id.as_str()))
        .collect();
    let not_stored: Vec<(String, &String)> = accepted
        .iter()
        .filter(|(_, id)| !stored.contains_key(*id))
        .map(|(n, id)| (event_id(*n), id))
        .collect();
    assert!(
        not_stored.is_empty(),
        "{} posts answered 202 are not stored (eventId, id), e.g. {:?}; logs:\n{}",
        not_stored.len(),
        &not_stored[..not_stored.len().min(5)],
        topology.logs()
    );
    for (id, n) in &expected {
        assert_eq!(
            by_event.get(event_id(*n).as_str()),
            Some(&id.as_str()),
            "the message with eventId {}",
            event_id(*n)
        );
    }
    assert_eq!(
        stored.len(),
        BURST,
        "messages stored for {BURST} eventIds (one each)"
    );

    // No message is stored without a delivery row for each endpoint.
    let half_stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.id, count(d.msg_id) FROM message m LEFT JOIN delivery d ON d.msg_id = m.id \
         GROUP BY m.id HAVING count(d.msg_id) <> $1",
    )
    .bind(ENDPOINTS.len() as i64)
    .fetch_all(&mut db)
    .await
    .expect("count deliveries per message");
    let half_stored_unanswered: Vec<&Unanswered> = unanswered
        .iter()
        .filter(|u| half_stored.iter().any(|(id, _)| *id == u.id))
        .collect();
    assert!(
        half_stored.is_empty(),
        "messages stored without their {} deliveries (id, deliveries): {half_stored:?}; \
         of the unanswered posts: {half_stored_unanswered:?}; logs:\n{}",
        ENDPOINTS.len(),
        topology.logs()
    );

    // ------------------------------------------------------------ delivery
    let ids: HashSet<String> = expected.keys().cloned().collect();
    let mut counts = Vec::new();
    let mut states = HashMap::new();
    for path in ENDPOINTS {
        let limit = DELIVERY_LIMIT.saturating_sub(restarting.elapsed());
        let (by_message, by_state) = topology
            .wait_for_every_message(&receiver, path, &ids, limit)
            .await;
        counts.push(by_message);
        states = by_state;
    }
    let all_in = started.elapsed();
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["succeeded"],
        "every delivery to an always-200 endpoint succeeds: {states:?}"
    );
    assert_eq!(
        states["succeeded"],
        (BURST * ENDPOINTS.len()) as i64,
        "one delivery per message and endpoint: {states:?}"
    );
    // Nothing arrives that the test did not post, and each request carries
    // its own message's payload.
    for path in ENDPOINTS {
        for request in receiver.received(path) {
            let id = request.header("webhook-id");
            let n = expected
                .get(id)
                .unwrap_or_else(|| panic!("{path} got a message the test does not know: {id:?}"));
            assert_eq!(
                request.headers.get("svix-id").and_then(|v| v.to_str().ok()),
                Some(id),
                "svix-id and webhook-id agree"
            );
            let payload: Value = serde_json::from_slice(&request.body).expect("JSON payload");
            assert_eq!(payload, json!({"n": n}), "the payload of {id} at {path}");
        }
    }

    // The unanswered posts that were stored show their attempts through the
    // API too: one successful attempt (at least) per endpoint.
    for u in &unanswered {
        let listed = api
            .get(&format!("/api/v1/app/{app}/attempt/msg/{}", u.id))
            .await;
        assert_eq!(listed.status, 200, "{listed:?}");
        let attempts = listed.body["data"].as_array().expect("data is a list");
        let endpoints: HashSet<&str> = attempts
            .iter()
            .filter(|a| a["status"] == 0)
            .filter_map(|a| a["endpointId"].as_str())
            .collect();
        assert_eq!(
            endpoints.len(),
            ENDPOINTS.len(),
            "post {} (stored before the kill: {:?}) has successful attempts for \
             {} endpoints: {listed:?}",
            u.n,
            u.stored,
            endpoints.len()
        );
    }

    // ------------------------------------------------------------ report
    let duplicates: Vec<usize> = counts
        .iter()
        .map(|c| c.values().map(|k| k - 1).sum())
        .collect();
    let stored_unanswered = unanswered.iter().filter(|u| u.stored.is_some()).count();
    // When, after the restart, the last delivery of each kind of message
    // first arrived (at either endpoint). With the hand-off, a delivery
    // whose row the killed API committed claimed but whose task it did not
    // publish waits for its lease.
    let kind = |id: &str| -> &'static str {
        match unanswered.iter().find(|u| u.id == id) {
            None => "answered 202",
            Some(u) if u.stored.is_some() => "stored unanswered",
            Some(_) => "posted again",
        }
    };
    let mut first_arrival: HashMap<(&str, String), Instant> = HashMap::new();
    for path in ENDPOINTS {
        for request in receiver.received(path) {
            let id = request.header("webhook-id").to_owned();
            let at = first_arrival.entry((path, id)).or_insert(request.at);
            *at = (*at).min(request.at);
        }
    }
    let mut last_arrival: BTreeMap<&str, Duration> = BTreeMap::new();
    for ((_, id), at) in &first_arrival {
        let after = at.saturating_duration_since(restarting);
        let last = last_arrival.entry(kind(id)).or_default();
        *last = (*last).max(after);
    }
    let in_flight_stored = unanswered
        .iter()
        .filter(|u| u.started_before_kill && u.stored.is_some())
        .count();
    eprintln!(
        "\n=== API killed ({}) after {killed_at:?}, with {answered_at_kill} of {BURST} answered \
         and {in_flight_at_kill} in flight; {} accepted, {} without an answer ({in_flight_lost} \
         of them in flight at the kill, {in_flight_stored} of those stored); {stored_unanswered} \
         unanswered found stored after the restart and posted again: {:?}; stored by a late \
         commit: {late:?}; new API listening after {restart_took:?}; the last delivery of each \
         kind first arrived this long after the restart: {last_arrival:?}; all {} deliveries in after \
         {all_in:?}; duplicates per endpoint {duplicates:?}\n",
        if handoff {
            "hand-off to RabbitMQ"
        } else {
            "relay"
        },
        accepted.len(),
        unanswered.len(),
        unanswered.iter().fold(BTreeMap::new(), |mut by, u| {
            *by.entry(u.reposted).or_insert(0) += 1;
            by
        }),
        BURST * ENDPOINTS.len(),
    );
}

/// A short lease, so that deliveries a killed API stored claimed but never
/// published come back soon.
fn options(compose: bool) -> TopologyOptions {
    let base = if compose {
        TopologyOptions::compose()
    } else {
        TopologyOptions::default()
    };
    TopologyOptions {
        delivery_timeout: 5,
        delivery_lease: 10,
        ..base
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_killed_mid_burst_while_handing_off_to_rabbitmq_loses_and_half_stores_nothing() {
    api_killed_mid_burst(options(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_killed_mid_burst_while_the_relay_hands_out_loses_and_half_stores_nothing() {
    api_killed_mid_burst(options(false)).await;
}
