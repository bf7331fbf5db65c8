//! Bad `POST /api/v1/app/{app}/msg` requests: each gets a clear 4xx —
//! `{code, detail}`, or for a 422 Svix's `{"detail": [{loc, msg, type}]}` with
//! `loc` naming the field — stores nothing (no message, no delivery, no
//! application), and leaves the server running.
//!
//! `messages.rs` checks some of these statuses; this adds the bodies, the
//! counts of every table a message touches, and the cases it lacks (number,
//! null and boolean payloads, oversize bodies, non-JSON bodies and content
//! types, invalid UTF-8, ids of another tenant, inline applications).

use herald_e2e::{Herald, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The request-body limit of this test's server.
const LIMIT: usize = 4096;

enum Want {
    /// This status with `{"code": code, "detail": "<non-empty>"}`.
    Code(u16, &'static str),
    /// 422 with an item at this `loc`.
    Loc(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    /// Whose key sends it: the first tenant's (false) or the other's (true).
    as_other: bool,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    want: Want,
}

fn case(name: &'static str, path: &str, body: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        name,
        as_other: false,
        path: path.to_owned(),
        content_type: "application/json",
        body: body.into(),
        want,
    }
}

fn json_case(name: &'static str, path: &str, body: Value, want: Want) -> Case {
    case(name, path, body.to_string(), want)
}

/// A valid message body of exactly `size` bytes.
fn message_of_size(size: usize, event_id: &str) -> Vec<u8> {
    let head = format!(r#"{{"eventType":"big","eventId":"{event_id}","payload":{{"pad":""#);
    let tail = r#""}}"#;
    let body = format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()));
    assert_eq!(body.len(), size);
    serde_json::from_str::<Value>(&body).expect("valid JSON");
    body.into_bytes()
}

async fn counts(herald: &Herald) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in [
        "message",
        "delivery",
        "message_attempt",
        "application",
        "endpoint",
    ] {
        out.push((table, herald.count_rows(table).await));
    }
    out
}

fn check(
    case: &Case,
    status: StatusCode,
    content_type: Option<&str>,
    body: &Value,
) -> Result<(), String> {
    let expected_status = match case.want {
        Want::Code(status, _) => status,
        Want::Loc(_) => 422,
    };
    if status.as_u16() != expected_status {
        return Err(format!("expected {expected_status}, got {status}"));
    }
    if !content_type.is_some_and(|ct| ct.starts_with("application/json")) {
        return Err(format!(
            "the error is not JSON (content-type {content_type:?})"
        ));
    }
    match case.want {
        Want::Code(_, code) => {
            if body["code"] != code {
                return Err(format!("expected code {code:?}"));
            }
            if body["detail"].as_str().is_none_or(|d| d.trim().is_empty()) {
                return Err("expected a non-empty string detail".into());
            }
        }
        Want::Loc(loc) => {
            let items = body["detail"].as_array().filter(|items| !items.is_empty());
            let Some(items) = items else {
                return Err("expected detail to be a non-empty array".into());
            };
            for item in items {
                if item["msg"].as_str().is_none_or(|m| m.trim().is_empty())
                    || item["type"].as_str().is_none_or(str::is_empty)
                {
                    return Err(format!("malformed validation item {item}"));
                }
            }
            if !items.iter().any(|item| item["loc"] == json!(loc)) {
                return Err(format!("expected an item at loc {loc:?}"));
            }
        }
    }
    Ok(())
}

herald_e2e::e2e_tests! {
    async fn bad_messages_get_a_clear_4xx_and_store_nothing() {
        let Some(mut herald) = Herald::start_with(Options {
            env: vec![("HERALD_MAX_BODY_BYTES".into(), LIMIT.to_string())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let app = herald
            .post("/api/v1/app", json!({"name": "A", "uid": "a"}))
            .await;
        assert_eq!(app.status, 201, "{app:?}");
        // An endpoint that matches everything: a message stored by mistake would
        // also leave a delivery row.
        let ep = herald
            .post(
                "/api/v1/app/a/endpoint",
                json!({"url": "https://example.com/hook"}),
            )
            .await;
        assert_eq!(ep.status, 201, "{ep:?}");
        let first = herald
            .post(
                "/api/v1/app/a/msg",
                json!({"eventType": "t", "eventId": "dup", "payload": {"n": 1}}),
            )
            .await;
        assert_eq!(first.status, 202, "{first:?}");

        let other = herald.create_tenant("other").await;
        let other_app = herald
            .request(
                Method::POST,
                "/api/v1/app",
                Some(&other.key),
                Some(json!({"name": "B", "uid": "b"})),
            )
            .await;
        assert_eq!(other_app.status, 201, "{other_app:?}");
        let other_app_id = other_app.body["id"].as_str().unwrap().to_owned();
        let a_id = app.body["id"].as_str().unwrap().to_owned();

        let msg = "/api/v1/app/a/msg";
        let ok_body = |payload: Value| json!({"eventType": "t", "payload": payload});
        let payload_loc: &[&str] = &["body", "payload"];
        let mut cases = vec![
            // Not JSON, or not a JSON object.
            case(
                "truncated JSON",
                msg,
                r#"{"eventType": "t", "payload": {"#,
                Want::Code(400, "invalid_json"),
            ),
            case(
                "trailing garbage",
                msg,
                r#"{"eventType": "t", "payload": {}} x"#,
                Want::Code(400, "invalid_json"),
            ),
            case(
                "not JSON at all",
                msg,
                "hello",
                Want::Code(400, "invalid_json"),
            ),
            case(
                "a JSON string body",
                msg,
                r#""hello""#,
                Want::Loc(&["body"]),
            ),
            case("an empty body", msg, "", Want::Code(400, "invalid_json")),
            case(
                "invalid UTF-8 in the payload",
                msg,
                [
                    &br#"{"eventType": "t", "payload": {"s": ""#[..],
                    b"\xff\xfe",
                    br#""}}"#,
                ]
                .concat(),
                Want::Code(400, "invalid_json"),
            ),
            Case {
                content_type: "text/plain",
                ..json_case(
                    "valid JSON sent as text/plain",
                    msg,
                    ok_body(json!({})),
                    Want::Code(415, "unsupported_media_type"),
                )
            },
            // Payloads that are JSON but not an object.
            json_case(
                "array payload",
                msg,
                ok_body(json!([1, 2])),
                Want::Loc(payload_loc),
            ),
            json_case(
                "empty array payload",
                msg,
                ok_body(json!([])),
                Want::Loc(payload_loc),
            ),
            json_case(
                "string payload",
                msg,
                ok_body(json!("x")),
                Want::Loc(payload_loc),
            ),
            json_case(
                "string payload that looks like an object",
                msg,
                ok_body(json!("{}")),
                Want::Loc(payload_loc),
            ),
            json_case(
                "number payload",
                msg,
                ok_body(json!(42)),
                Want::Loc(payload_loc),
            ),
            json_case(
                "negative float payload",
                msg,
                ok_body(json!(-1.5e3)),
                Want::Loc(payload_loc),
            ),
            json_case(
                "null payload",
                msg,
                ok_body(Value::Null),
                Want::Loc(payload_loc),
            ),
            json_case(
                "boolean payload",
                msg,
                ok_body(json!(true)),
                Want::Loc(payload_loc),
            ),
            // Too big.
            case(
                "a body over HERALD_MAX_BODY_BYTES",
                msg,
                message_of_size(2 * LIMIT, "big-1"),
                Want::Code(413, "payload_too_large"),
            ),
            case(
                "a body one byte over the limit",
                msg,
                message_of_size(LIMIT + 1, "big-2"),
                Want::Code(413, "payload_too_large"),
            ),
            // Conflicts.
            json_case(
                "duplicate eventId",
                msg,
                json!({"eventType": "t", "eventId": "dup", "payload": {"n": 1}}),
                Want::Code(409, "conflict"),
            ),
            json_case(
                "duplicate eventId with another type and payload",
                msg,
                json!({"eventType": "other", "eventId": "dup", "payload": {"n": 2}}),
                Want::Code(409, "conflict"),
            ),
            json_case(
                "duplicate eventId addressed by app id",
                &format!("/api/v1/app/{a_id}/msg"),
                json!({"eventType": "t", "eventId": "dup", "payload": {}}),
                Want::Code(409, "conflict"),
            ),
            json_case(
                "duplicate eventId with an inline application",
                msg,
                json!({"eventType": "t", "eventId": "dup", "payload": {}, "application": {"name": "A2"}}),
                Want::Code(409, "conflict"),
            ),
            // Applications that do not exist for this tenant.
            json_case(
                "unknown app uid",
                "/api/v1/app/nope/msg",
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            ),
            json_case(
                "unknown app id",
                "/api/v1/app/app_1srOrx2ZWZBpBUvZwXKQmoEYga2/msg",
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            ),
            json_case(
                "another tenant's app uid",
                "/api/v1/app/b/msg",
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            ),
            json_case(
                "another tenant's app id",
                &format!("/api/v1/app/{other_app_id}/msg"),
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            ),
            json_case(
                "another tenant's app id with an inline application",
                &format!("/api/v1/app/{other_app_id}/msg"),
                json!({"eventType": "t", "payload": {}, "application": {"name": "hijack"}}),
                Want::Code(404, "not_found"),
            ),
            // A bad message must not leave its inline application behind.
            json_case(
                "array payload with an inline application",
                "/api/v1/app/inline-new/msg",
                json!({"eventType": "t", "payload": [1], "application": {"name": "New"}}),
                Want::Loc(payload_loc),
            ),
        ];
        cases.push(Case {
            as_other: true,
            ..json_case(
                "my app, the other tenant's key",
                msg,
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            )
        });
        cases.push(Case {
            as_other: true,
            ..json_case(
                "my app id, the other tenant's key",
                &format!("/api/v1/app/{a_id}/msg"),
                ok_body(json!({})),
                Want::Code(404, "not_found"),
            )
        });

        let mut failures = Vec::new();
        for case in &cases {
            let before = counts(&herald).await;
            let key = if case.as_other {
                &other.key
            } else {
                &herald.tenant.key
            };
            let response = herald
                .http
                .post(format!("{}{}", herald.url, case.path))
                .bearer_auth(key)
                .header("content-type", case.content_type)
                .body(case.body.clone())
                .send()
                .await
                .expect("request reaches herald");
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let reply = Herald::reply(response).await;
            if let Err(why) = check(case, reply.status, content_type.as_deref(), &reply.body) {
                failures.push(format!(
                    "'{}': {why}\n    reply: {} {}",
                    case.name, reply.status, reply.body
                ));
            }
            let after = counts(&herald).await;
            if after != before {
                failures.push(format!(
                    "'{}' stored something: rows before {before:?}, after {after:?}",
                    case.name
                ));
            }
            assert!(
                herald.is_running(),
                "'{}' crashed the server; its log:\n{}",
                case.name,
                herald.log()
            );
        }
        assert!(
            failures.is_empty(),
            "{} of {} bad-message cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );

        // The other tenant's application is untouched and its name unchanged.
        let b = herald
            .request(Method::GET, "/api/v1/app/b", Some(&other.key), None)
            .await;
        assert_eq!((b.status.as_u16(), &b.body["name"]), (200, &json!("B")));
        assert_eq!(
            herald.get("/api/v1/app/inline-new").await.status,
            404,
            "a refused message created its inline application"
        );

        // The server still works, and the counts above would have seen a message:
        // a good one right at the limit is stored with its delivery.
        let before = counts(&herald).await;
        let at_limit = herald
            .request_raw(
                Method::POST,
                msg,
                Some(&herald.tenant.key),
                "application/json",
                message_of_size(LIMIT, "at-limit"),
            )
            .await;
        assert_eq!(
            at_limit.status, 202,
            "a body of exactly the limit: {at_limit:?}"
        );
        let after = counts(&herald).await;
        assert_eq!(
            after[0].1,
            before[0].1 + 1,
            "messages: {before:?} -> {after:?}"
        );
        assert_eq!(
            after[1].1,
            before[1].1 + 1,
            "deliveries: {before:?} -> {after:?}"
        );
        let health = herald.get("/api/v1/health").await;
        assert_eq!(health.status, 204, "{health:?}");
        assert!(herald.is_running());
    }
}
