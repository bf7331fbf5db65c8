//! Fan-out filtering through real delivery: endpoints of one application with
//! event-type filters (`filterTypes`, Svix's name, and `eventTypes`; exact
//! names and the wildcards `invoice.*` and `*`), channel filters, both, or
//! neither, each pointing at its own path of a real local receiver. Every
//! message must arrive at exactly the endpoints that match it — once each —
//! and nowhere else: no request at the receiver, no `delivery` row and no
//! `message_attempt` for the endpoints it does not match. Then where filters
//! are written (endpoint create, replace, patch, operational endpoints):
//! misplaced stars are refused with a 422 naming the field, a pattern needs no
//! existing event type, an exact name still does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{Herald, Options};
use serde_json::json;

/// An endpoint's path (also its uid), event-type filter and channel filter.
type EndpointSpec = (
    &'static str,
    Option<&'static [&'static str]>,
    Option<&'static [&'static str]>,
);

const ENDPOINTS: &[EndpointSpec] = &[
    ("all", None, None),
    ("paid", Some(&["invoice.paid"]), None),
    ("invoices", Some(&["invoice.paid", "invoice.void"]), None),
    ("p1", None, Some(&["project_1"])),
    ("p1p2", None, Some(&["project_1", "project_2"])),
    ("paid-p2", Some(&["invoice.paid"]), Some(&["project_2"])),
    ("signup-p1", Some(&["user.signup"]), Some(&["project_1"])),
    // Wildcards: no event type named `invoice.*` or `*` exists.
    ("invoice-any", Some(&["invoice.*"]), None),
    ("star", Some(&["*"]), None),
    (
        "deep-or-signup-p1",
        Some(&["invoice.paid.*", "user.signup"]),
        Some(&["project_1"]),
    ),
];

/// A message (name, event type, channels) and the endpoints that must get it.
struct Case {
    name: &'static str,
    event_type: &'static str,
    channels: Option<&'static [&'static str]>,
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "type filter matches, no channels",
        event_type: "invoice.paid",
        channels: None,
        // Not p1/p1p2/paid-p2/signup-p1: a channel filter needs a channel.
        expect: &["all", "paid", "invoices", "invoice-any", "star"],
    },
    Case {
        name: "second type of a two-type filter",
        event_type: "invoice.void",
        channels: None,
        expect: &["all", "invoices", "invoice-any", "star"],
    },
    Case {
        name: "a type no filter names",
        event_type: "user.deleted",
        channels: None,
        expect: &["all", "star"],
    },
    Case {
        name: "a longer type is not a prefix match of an exact filter",
        event_type: "invoice.paid.v2",
        channels: None,
        // `invoice.*` takes any number of segments after `invoice.`.
        expect: &["all", "invoice-any", "star"],
    },
    Case {
        name: "channel project_1 with a signup",
        event_type: "user.signup",
        channels: Some(&["project_1"]),
        expect: &[
            "all",
            "p1",
            "p1p2",
            "signup-p1",
            "star",
            "deep-or-signup-p1",
        ],
    },
    Case {
        name: "channel project_2 with a paid invoice",
        event_type: "invoice.paid",
        channels: Some(&["project_2"]),
        // Not p1 (wrong channel), not signup-p1.
        expect: &[
            "all",
            "paid",
            "invoices",
            "p1p2",
            "paid-p2",
            "invoice-any",
            "star",
        ],
    },
    Case {
        name: "combined: type matches but channel does not, and vice versa",
        event_type: "invoice.paid",
        channels: Some(&["project_1"]),
        // Not paid-p2 (channel), not signup-p1 (type), not
        // deep-or-signup-p1: `invoice.paid.*` wants a segment after the stem.
        expect: &[
            "all",
            "paid",
            "invoices",
            "p1",
            "p1p2",
            "invoice-any",
            "star",
        ],
    },
    Case {
        name: "combined: channel matches, type does not",
        event_type: "invoice.void",
        channels: Some(&["project_2"]),
        // Not paid-p2 (type), not paid.
        expect: &["all", "invoices", "p1p2", "invoice-any", "star"],
    },
    Case {
        name: "any one of several message channels",
        event_type: "user.signup",
        channels: Some(&["nobody", "project_1"]),
        expect: &[
            "all",
            "p1",
            "p1p2",
            "signup-p1",
            "star",
            "deep-or-signup-p1",
        ],
    },
    Case {
        name: "channels no endpoint names",
        event_type: "invoice.paid",
        channels: Some(&["project_3", "Project_1"]),
        // Channels are compared exactly: Project_1 is not project_1.
        expect: &["all", "paid", "invoices", "invoice-any", "star"],
    },
    Case {
        name: "a deeper type under a pattern and a channel",
        event_type: "invoice.paid.v2",
        channels: Some(&["project_1"]),
        expect: &[
            "all",
            "p1",
            "p1p2",
            "invoice-any",
            "star",
            "deep-or-signup-p1",
        ],
    },
    Case {
        name: "a type the tenant never registered",
        event_type: "order.created",
        channels: None,
        expect: &["all", "star"],
    },
    Case {
        name: "the stem of a pattern is not under it",
        event_type: "invoice",
        channels: None,
        expect: &["all", "star"],
    },
];

herald_e2e::e2e_tests! {
    async fn each_message_reaches_exactly_the_matching_endpoints() {
        let Some(herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let receiver = Receiver::start().await;
        for name in ["invoice.paid", "invoice.void", "user.signup"] {
            let reply = herald
                .post(
                    "/api/v1/event-type",
                    json!({"name": name, "description": name}),
                )
                .await;
            assert_eq!(reply.status, 201, "{reply:?}");
        }
        let app = herald
            .post("/api/v1/app", json!({"name": "Filters", "uid": "filters"}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");

        // path -> endpoint id
        let mut endpoint_ids = BTreeMap::new();
        for (i, (path, types, channels)) in ENDPOINTS.iter().enumerate() {
            let mut body = json!({"url": receiver.url(path), "uid": path});
            if let Some(types) = types {
                // Svix SDKs send `filterTypes`; Herald also accepts `eventTypes`.
                let field = if i % 2 == 0 {
                    "filterTypes"
                } else {
                    "eventTypes"
                };
                body[field] = json!(types);
            }
            if let Some(channels) = channels {
                body["channels"] = json!(channels);
            }
            let reply = herald.post("/api/v1/app/filters/endpoint", body).await;
            assert_eq!(reply.status, 201, "endpoint {path}: {reply:?}");
            endpoint_ids.insert(*path, reply.body["id"].as_str().unwrap().to_owned());
        }
        // A disabled endpoint without filters would match everything; it gets nothing.
        let disabled = herald
            .post(
                "/api/v1/app/filters/endpoint",
                json!({"url": receiver.url("disabled"), "disabled": true}),
            )
            .await;
        assert_eq!(disabled.status, 201, "{disabled:?}");
        let disabled_id = disabled.body["id"].as_str().unwrap().to_owned();

        // msg id -> case
        let mut messages = Vec::new();
        for case in CASES {
            let mut body = json!({"eventType": case.event_type, "payload": {"case": case.name}});
            if let Some(channels) = case.channels {
                body["channels"] = json!(channels);
            }
            let reply = herald.post("/api/v1/app/filters/msg", body).await;
            assert_eq!(reply.status, 202, "{}: {reply:?}", case.name);
            messages.push((reply.body["id"].as_str().unwrap().to_owned(), case));
        }

        // What each endpoint must receive: path -> msg ids.
        let mut expected: BTreeMap<&str, BTreeSet<String>> = ENDPOINTS
            .iter()
            .map(|(path, _, _)| (*path, BTreeSet::new()))
            .collect();
        expected.insert("disabled", BTreeSet::new());
        for (msg_id, case) in &messages {
            for path in case.expect {
                expected
                    .get_mut(path)
                    .unwrap_or_else(|| panic!("{}: unknown endpoint {path}", case.name))
                    .insert(msg_id.clone());
            }
        }

        // Wait for every expected delivery, then give stray ones time to show up
        // (the relay polls every 100 ms, a retry would come after 1 s).
        for (path, ids) in &expected {
            receiver
                .wait_for(path, ids.len(), Duration::from_secs(30))
                .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;

        let mut failures = Vec::new();
        let case_of = |msg_id: &str| {
            messages
                .iter()
                .find(|(id, _)| id == msg_id)
                .map_or("an unknown message", |(_, case)| case.name)
        };
        for (path, want) in &expected {
            let got: Vec<String> = receiver
                .received(path)
                .iter()
                .map(|r| {
                    r.headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("<no webhook-id>")
                        .to_owned()
                })
                .collect();
            let got_set: BTreeSet<String> = got.iter().cloned().collect();
            for missing in want.difference(&got_set) {
                failures.push(format!(
                    "endpoint {path} did not receive '{}' ({missing})",
                    case_of(missing)
                ));
            }
            for extra in got_set.difference(want) {
                failures.push(format!(
                    "endpoint {path} received '{}' ({extra}) although it does not match",
                    case_of(extra)
                ));
            }
            if got.len() != got_set.len() {
                failures.push(format!("endpoint {path} received duplicates: {got:?}"));
            }
        }

        // The database agrees: exactly one delivery (succeeded) and one 2xx
        // attempt per matching pair, nothing for the others.
        let mut db = common::db(&herald).await;
        let id_to_path: BTreeMap<String, &str> = endpoint_ids
            .iter()
            .map(|(path, id)| (id.clone(), *path))
            .chain([(disabled_id.clone(), "disabled")])
            .collect();
        for (msg_id, case) in &messages {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT endpoint_id, state FROM delivery WHERE msg_id = $1")
                    .bind(msg_id)
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
            let got: BTreeMap<&str, String> = rows
                .into_iter()
                .map(|(ep, state)| {
                    (
                        id_to_path.get(&ep).copied().unwrap_or("<unknown endpoint>"),
                        state,
                    )
                })
                .collect();
            let want: BTreeMap<&str, String> = case
                .expect
                .iter()
                .map(|p| (*p, "succeeded".to_owned()))
                .collect();
            if got != want {
                failures.push(format!(
                    "'{}': delivery rows {got:?}, expected {want:?}",
                    case.name
                ));
            }
            let attempts: Vec<(String, i32)> = sqlx::query_as(
                "SELECT endpoint_id, status_code FROM message_attempt WHERE msg_id = $1 ORDER BY endpoint_id",
            )
            .bind(msg_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
            let mut got: Vec<(&str, i32)> = attempts
                .iter()
                .map(|(ep, status)| {
                    (
                        id_to_path.get(ep).copied().unwrap_or("<unknown endpoint>"),
                        *status,
                    )
                })
                .collect();
            got.sort();
            let mut want: Vec<(&str, i32)> = case.expect.iter().map(|p| (*p, 200)).collect();
            want.sort();
            if got != want {
                failures.push(format!(
                    "'{}': attempts {got:?}, expected {want:?}",
                    case.name
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} filtering failures:\n  {}\n--- server log ---\n{}",
            failures.len(),
            failures.join("\n  "),
            herald.log()
        );
    }

    async fn wildcard_filters_are_checked_wherever_filters_are_written() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let reply = herald
            .post("/api/v1/event-type", json!({"name": "user.signup", "description": "x"}))
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let app = herald
            .post("/api/v1/app", json!({"name": "Wild", "uid": "wild"}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");
        let url = "https://example.com/hook";

        // Patterns need no existing event type; names beside them still do.
        let created = herald
            .post(
                "/api/v1/app/wild/endpoint",
                json!({"url": url, "uid": "wild", "filterTypes": ["order.*", "*", "user.signup"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.body["filterTypes"], json!(["order.*", "*", "user.signup"]));
        assert_eq!(created.body["eventTypes"], json!(["order.*", "*", "user.signup"]));
        let unknown = herald
            .post(
                "/api/v1/app/wild/endpoint",
                json!({"url": url, "filterTypes": ["order.*", "order.created"]}),
            )
            .await;
        assert_eq!(unknown.status, 422, "{unknown:?}");
        assert!(
            unknown.body["detail"][0]["msg"]
                .as_str()
                .is_some_and(|m| m.contains("unknown event types: order.created")),
            "{unknown:?}"
        );

        // Misplaced stars: 422 at the field, for create, replace and patch.
        for bad in ["or*der", "*.x", "order*", "order.*.created", "**", ".*"] {
            let requests = [
                (
                    reqwest::Method::POST,
                    "/api/v1/app/wild/endpoint".to_owned(),
                    json!({"url": url, "filterTypes": [bad]}),
                    vec!["body", "eventTypes"],
                ),
                (
                    reqwest::Method::PUT,
                    "/api/v1/app/wild/endpoint/wild".to_owned(),
                    json!({"url": url, "eventTypes": ["user.signup", bad]}),
                    vec!["body", "eventTypes"],
                ),
                (
                    reqwest::Method::PATCH,
                    "/api/v1/app/wild/endpoint/wild".to_owned(),
                    json!({"filterTypes": [bad]}),
                    vec!["body", "eventTypes"],
                ),
                (
                    reqwest::Method::POST,
                    "/api/v1/operational-webhook/endpoint".to_owned(),
                    json!({"url": url, "filterTypes": [bad]}),
                    vec!["body", "filterTypes"],
                ),
            ];
            for (method, path, body, loc) in requests {
                let reply = herald
                    .request(method.clone(), &path, Some(&herald.tenant.key), Some(body))
                    .await;
                assert_eq!(reply.status, 422, "{method} {path} with {bad}: {reply:?}");
                assert_eq!(reply.body["detail"][0]["loc"], json!(loc), "{bad}: {reply:?}");
                assert!(
                    reply.body["detail"][0]["msg"]
                        .as_str()
                        .is_some_and(|m| m.contains(bad)),
                    "{bad}: {reply:?}"
                );
            }
        }
        // Nothing was changed by the refused writes.
        let shown = herald.get("/api/v1/app/wild/endpoint/wild").await;
        assert_eq!(shown.body["filterTypes"], json!(["order.*", "*", "user.signup"]));

        // Replace and patch take patterns too.
        let put = herald
            .put(
                "/api/v1/app/wild/endpoint/wild",
                json!({"url": url, "filterTypes": ["invoice.*"]}),
            )
            .await;
        assert_eq!(put.status, 200, "{put:?}");
        assert_eq!(put.body["filterTypes"], json!(["invoice.*"]));
        let patched = herald
            .patch("/api/v1/app/wild/endpoint/wild", json!({"eventTypes": ["*"]}))
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(patched.body["eventTypes"], json!(["*"]));

        // Operational endpoints: a pattern must match an operational type.
        let ops = herald
            .post(
                "/api/v1/operational-webhook/endpoint",
                json!({"url": url, "filterTypes": ["endpoint.*", "message.attempt.exhausted"]}),
            )
            .await;
        assert_eq!(ops.status, 201, "{ops:?}");
        assert_eq!(ops.body["filterTypes"], json!(["endpoint.*", "message.attempt.exhausted"]));
        let none = herald
            .post(
                "/api/v1/operational-webhook/endpoint",
                json!({"url": url, "filterTypes": ["order.*"]}),
            )
            .await;
        assert_eq!(none.status, 422, "{none:?}");
        assert_eq!(none.body["detail"][0]["loc"], json!(["body", "filterTypes"]));
    }
}
