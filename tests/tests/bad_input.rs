//! Bad input never stores anything, never crashes the server, and always gets a
//! clear 4xx: `{code, detail}` for most errors, and Svix's
//! `{"detail": [{"loc", "msg", "type"}]}` for 422s, with `loc` naming the field.
//!
//! One table of cases runs against one server; the body-size limit needs a
//! server of its own.

use std::fmt;
use std::time::Duration;

use herald_e2e::{Herald, Options, Tenant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Who a case claims to be.
#[derive(Clone, Debug)]
enum Auth {
    /// The first tenant's API key.
    Tenant,
    /// The operator's admin token.
    Admin,
    /// An app-scoped token for the first tenant's application.
    AppToken,
    /// A key that worked until the admin API revoked it.
    RevokedKey,
    /// No `Authorization` header at all.
    Missing,
    /// This exact `Authorization` header value.
    Header(String),
}

/// What a case sends as its body.
#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes with this `Content-Type` (`None`: no `Content-Type` header).
    Raw(Option<&'static str>, Vec<u8>),
}

/// What a case must get back besides the status.
#[derive(Clone, Debug)]
enum Want {
    /// `{code, detail}` with this code.
    Code(&'static str),
    /// A Svix 422 with an item at this `loc`.
    Loc(Vec<String>),
    /// A Svix 422 with an item at or below this `loc` (for free-form objects).
    LocUnder(Vec<String>),
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    headers: Vec<(&'static str, String)>,
    status: u16,
    want: Want,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        auth: Auth::Tenant,
        body: Body::None,
        headers: Vec::new(),
        status: 0,
        want: Want::Code("unset"),
    }
}

impl Case {
    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(content_type, bytes.into());
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Expects `status` with `{"code": code, "detail": "..."}`.
    fn code(mut self, status: u16, code: &'static str) -> Self {
        assert_ne!(
            status, 422,
            "{}: a 422 is checked by loc, not code",
            self.name
        );
        self.status = status;
        self.want = Want::Code(code);
        self
    }

    /// Expects a 422 with an item whose `loc` is exactly `loc`.
    fn loc(mut self, loc: &[&str]) -> Self {
        self.status = 422;
        self.want = Want::Loc(loc.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Expects a 422 with an item whose `loc` starts with `loc`.
    fn loc_under(mut self, loc: &[&str]) -> Self {
        self.status = 422;
        self.want = Want::LocUnder(loc.iter().map(|s| (*s).to_owned()).collect());
        self
    }
}

/// A reply with its exact bytes, for byte-for-byte comparisons.
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    bytes: Vec<u8>,
    body: Value,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (content-type {:?}) {}",
            self.status,
            self.content_type,
            String::from_utf8_lossy(&self.bytes)
        )
    }
}

async fn send(
    herald: &Herald,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: &Body,
    headers: &[(&'static str, String)],
) -> Answer {
    let mut request = herald.http.request(method, format!("{}{path}", herald.url));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request = match body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Raw(content_type, bytes) => {
            let request = match content_type {
                Some(ct) => request.header("content-type", *ct),
                None => request,
            };
            request.body(bytes.clone())
        }
    };
    let response = request.send().await.expect("request reaches herald");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.expect("response body").to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        bytes,
        body,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// What the first tenant's objects look like; no bad request may change it.
struct Fixture {
    tenant: Tenant,
    other: Tenant,
    app_id: String,
    app_uid: &'static str,
    ep_id: String,
    ep_uid: &'static str,
    other_app_id: String,
    other_ep_id: String,
    app_token: String,
    revoked_key: String,
}

const TABLES: &[&str] = &["tenant", "api_key", "application", "endpoint", "event_type"];

async fn counts(herald: &Herald) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        out.push((*table, herald.count_rows(table).await));
    }
    out
}

/// Everything both tenants own, as their owners read it.
async fn snapshot(herald: &Herald, f: &Fixture) -> Value {
    let as_tenant = |tenant: &Tenant, path: String| {
        let token = tenant.key.clone();
        async move {
            let reply = herald.request(Method::GET, &path, Some(&token), None).await;
            json!({ "status": reply.status.as_u16(), "body": reply.body })
        }
    };
    let app = format!("/api/v1/app/{}", f.app_id);
    let ep = format!("{app}/endpoint/{}", f.ep_id);
    let other_app = format!("/api/v1/app/{}", f.other_app_id);
    let other_ep = format!("{other_app}/endpoint/{}", f.other_ep_id);
    json!({
        "app": as_tenant(&f.tenant, app.clone()).await,
        "endpoint": as_tenant(&f.tenant, ep.clone()).await,
        "secret": as_tenant(&f.tenant, format!("{ep}/secret")).await,
        "headers": as_tenant(&f.tenant, format!("{ep}/headers")).await,
        "eventTypes": as_tenant(&f.tenant, "/api/v1/event-type?include_archived=true&with_content=true".into()).await,
        "otherApp": as_tenant(&f.other, other_app).await,
        "otherEndpoint": as_tenant(&f.other, other_ep.clone()).await,
        "otherSecret": as_tenant(&f.other, format!("{other_ep}/secret")).await,
        "otherEventTypes": as_tenant(&f.other, "/api/v1/event-type?include_archived=true".into()).await,
    })
}

/// Creates both tenants' objects, an app token and a revoked key.
async fn fixture(herald: &Herald) -> Fixture {
    let tenant = herald.tenant.clone();
    let other = herald.create_tenant("other").await;

    let ok = |what: &str, reply: &herald_e2e::Reply, status: u16| {
        assert_eq!(reply.status.as_u16(), status, "setup: {what}: {reply:?}");
    };
    let reply = herald
        .post(
            "/api/v1/event-type",
            json!({"name": "invoice.paid", "description": "Paid"}),
        )
        .await;
    ok("event type", &reply, 201);
    let reply = herald
        .post(
            "/api/v1/event-type",
            json!({"name": "invoice.old", "description": "Old"}),
        )
        .await;
    ok("second event type", &reply, 201);
    let reply = herald.delete("/api/v1/event-type/invoice.old").await;
    ok("archive event type", &reply, 204);

    let app_uid = "bad-input-app";
    let reply = herald
        .post("/api/v1/app", json!({"name": "Target", "uid": app_uid}))
        .await;
    ok("app", &reply, 201);
    let app_id = reply.body["id"].as_str().expect("app id").to_owned();

    let ep_uid = "bad-input-ep";
    let reply = herald
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({
                "url": "https://example.com/hook",
                "uid": ep_uid,
                "description": "the target endpoint",
                "eventTypes": ["invoice.paid"],
                "channels": ["one"],
                "headers": {"X-Team": "billing"},
            }),
        )
        .await;
    ok("endpoint", &reply, 201);
    let ep_id = reply.body["id"].as_str().expect("endpoint id").to_owned();

    let as_other = |method: Method, path: String, body: Option<Value>| {
        let key = other.key.clone();
        async move { herald.request(method, &path, Some(&key), body).await }
    };
    let reply = as_other(
        Method::POST,
        "/api/v1/event-type".into(),
        Some(json!({"name": "other.only", "description": "only the other tenant has this"})),
    )
    .await;
    ok("other tenant's event type", &reply, 201);
    let reply = as_other(
        Method::POST,
        "/api/v1/app".into(),
        Some(json!({"name": "Other tenant's app", "uid": "other-app"})),
    )
    .await;
    ok("other tenant's app", &reply, 201);
    let other_app_id = reply.body["id"].as_str().expect("app id").to_owned();
    let reply = as_other(
        Method::POST,
        format!("/api/v1/app/{other_app_id}/endpoint"),
        Some(json!({"url": "https://other.example.com/hook", "uid": "other-ep"})),
    )
    .await;
    ok("other tenant's endpoint", &reply, 201);
    let other_ep_id = reply.body["id"].as_str().expect("endpoint id").to_owned();

    let reply = herald
        .post(
            &format!("/api/v1/auth/app-portal-access/{app_id}"),
            json!({}),
        )
        .await;
    ok("app token", &reply, 200);
    let app_token = reply.body["token"].as_str().expect("token").to_owned();

    // A tenant whose only key is revoked through the admin API.
    let doomed = herald.create_tenant("revoked").await;
    let reply = herald
        .request(Method::GET, "/api/v1/app", Some(&doomed.key), None)
        .await;
    ok("key works before it is revoked", &reply, 200);
    let keys_path = format!("/admin/v1/tenants/{}/keys", doomed.id);
    let reply = herald
        .request(Method::GET, &keys_path, Some(&herald.admin_token), None)
        .await;
    ok("list keys", &reply, 200);
    let key_id = reply
        .body
        .as_array()
        .and_then(|keys| {
            keys.iter().find(|k| {
                k["prefix"]
                    .as_str()
                    .is_some_and(|p| doomed.key.starts_with(p))
            })
        })
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("the new tenant's key is listed: {reply:?}"))
        .to_owned();
    let reply = herald
        .request(
            Method::DELETE,
            &format!("{keys_path}/{key_id}"),
            Some(&herald.admin_token),
            None,
        )
        .await;
    ok("revoke key", &reply, 204);

    Fixture {
        tenant,
        other,
        app_id,
        app_uid,
        ep_id,
        ep_uid,
        other_app_id,
        other_ep_id,
        app_token,
        revoked_key: doomed.key,
    }
}

fn cases(f: &Fixture) -> Vec<Case> {
    use Method as M;
    let app = format!("/api/v1/app/{}", f.app_id);
    let app_by_uid = format!("/api/v1/app/{}", f.app_uid);
    let eps = format!("{app}/endpoint");
    let ep = format!("{eps}/{}", f.ep_id);
    let ep_by_uid = format!("{app_by_uid}/endpoint/{}", f.ep_uid);
    let other_app = format!("/api/v1/app/{}", f.other_app_id);
    let long = "a".repeat(257);
    let good_ep = |extra: Value| {
        let mut body = json!({"url": "https://example.com/new"});
        for (k, v) in extra.as_object().expect("object").clone() {
            body[k] = v;
        }
        body
    };
    let channels = |n: usize| (0..n).map(|i| format!("ch{i}")).collect::<Vec<_>>();
    // Valid base64, but of 10 bytes (the minimum is 24) and of 65 (the maximum is 64).
    let short_secret = "whsec_AAAAAAAAAAAAAA==";
    let long_secret = format!("whsec_{}", "A".repeat(88));
    let not_base64 = "whsec_!!!notbase64!!!notbase64!!!!";
    let deep = format!(
        r#"{{"name":"deep.one","description":"d","schemas":{{"1":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );

    vec![
        // Malformed JSON.
        case("truncated JSON", M::POST, "/api/v1/app")
            .raw(Some("application/json"), r#"{"name": "#)
            .code(400, "invalid_json"),
        case("JSON with trailing garbage", M::POST, "/api/v1/app")
            .raw(Some("application/json"), r#"{"name": "x"} trailing"#)
            .code(400, "invalid_json"),
        case("empty body declared as JSON", M::POST, "/api/v1/app")
            .raw(Some("application/json"), "")
            .code(400, "invalid_json"),
        case("single-quoted JSON", M::POST, "/api/v1/app")
            .raw(Some("application/json"), "{'name': 'x'}")
            .code(400, "invalid_json"),
        case("invalid UTF-8 inside a JSON string", M::POST, "/api/v1/app")
            .raw(Some("application/json"), b"{\"name\": \"\xff\xfe\"}".to_vec())
            .code(400, "invalid_json"),
        case("lone UTF-16 surrogate escape", M::POST, "/api/v1/app")
            .raw(Some("application/json"), r#"{"name": "\ud800"}"#)
            .code(400, "invalid_json"),
        case("10 000 nested arrays in an event type schema", M::POST, "/api/v1/event-type")
            .raw(Some("application/json"), deep)
            .code(400, "invalid_json"),
        case("malformed JSON on endpoint PATCH", M::PATCH, ep.clone())
            .raw(Some("application/json"), "{")
            .code(400, "invalid_json"),
        // Wrong types.
        case("app name is a number", M::POST, "/api/v1/app")
            .json(json!({"name": 123}))
            .loc(&["body", "name"]),
        case("body is an array", M::POST, "/api/v1/app").json(json!([])).loc(&["body"]),
        case("body is null", M::POST, "/api/v1/app").json(json!(null)).loc(&["body"]),
        case("app throttleRate is negative", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "throttleRate": -1}))
            .loc(&["body", "throttleRate"]),
        case("app throttleRate overflows u16", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "throttleRate": 70000}))
            .loc(&["body", "throttleRate"]),
        case("app metadata value is a number", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "metadata": {"k": 1}}))
            .loc(&["body", "metadata", "k"]),
        case("app name is a number on PATCH", M::PATCH, app.clone())
            .json(json!({"name": 123}))
            .loc(&["body", "name"]),
        case("app name is a number on PUT of a new uid", M::PUT, "/api/v1/app/new-by-put")
            .json(json!({"name": 123}))
            .loc(&["body", "name"]),
        case("endpoint url is a number", M::POST, eps.clone())
            .json(json!({"url": 5}))
            .loc(&["body", "url"]),
        case("endpoint eventTypes is a string", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": "invoice.paid"})))
            .loc(&["body", "eventTypes"]),
        case("endpoint disabled is a string", M::POST, eps.clone())
            .json(good_ep(json!({"disabled": "yes"})))
            .loc(&["body", "disabled"]),
        case("header value is a number", M::PUT, format!("{ep}/headers"))
            .json(json!({"headers": {"X-A": 5}}))
            .loc(&["body", "headers", "X-A"]),
        case("rotate gracePeriodSeconds is negative", M::POST, format!("{ep}/secret/rotate"))
            .json(json!({"gracePeriodSeconds": -1}))
            .loc(&["body", "gracePeriodSeconds"]),
        case("portal access with a nested app name of the wrong type", M::POST, "/api/v1/auth/app-portal-access/portal-new")
            .json(json!({"application": {"name": 5}}))
            .loc(&["body", "application", "name"]),
        // Missing required fields.
        case("app without name", M::POST, "/api/v1/app")
            .json(json!({"uid": "no-name"}))
            .loc(&["body", "name"]),
        case("endpoint without url", M::POST, eps.clone())
            .json(json!({"description": "no url"}))
            .loc(&["body", "url"]),
        case("endpoint PUT without url", M::PUT, ep.clone())
            .json(json!({"description": "no url"}))
            .loc(&["body", "url"]),
        case("event type without description", M::POST, "/api/v1/event-type")
            .json(json!({"name": "no.description"}))
            .loc(&["body", "description"]),
        case("headers PUT without headers", M::PUT, format!("{ep}/headers"))
            .json(json!({}))
            .loc(&["body", "headers"]),
        // Empty, over-long, reserved and badly spelled names and uids.
        case("empty app name", M::POST, "/api/v1/app")
            .json(json!({"name": ""}))
            .loc(&["body", "name"]),
        case("blank app name", M::POST, "/api/v1/app")
            .json(json!({"name": "   "}))
            .loc(&["body", "name"]),
        case("app name of 257 characters", M::POST, "/api/v1/app")
            .json(json!({"name": long}))
            .loc(&["body", "name"]),
        case("app name of 257 characters on PATCH", M::PATCH, app.clone())
            .json(json!({"name": long}))
            .loc(&["body", "name"]),
        case("app name with a NUL character", M::POST, "/api/v1/app")
            .json(json!({"name": "a\u{0}b"}))
            .loc(&["body", "name"]),
        case("app metadata value with a NUL character", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "metadata": {"k": "a\u{0}b"}}))
            .loc(&["body", "metadata", "k"]),
        case("app metadata key with a NUL character", M::PATCH, app.clone())
            .json(json!({"metadata": {"a\u{0}b": "v"}}))
            .loc_under(&["body", "metadata"]),
        case("tenant name with a NUL character", M::POST, "/admin/v1/tenants")
            .auth(Auth::Admin)
            .json(json!({"name": "a\u{0}b"}))
            .loc(&["body", "name"]),
        case("app uid of 257 characters", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": long}))
            .loc(&["body", "uid"]),
        case("endpoint uid of 257 characters", M::POST, eps.clone())
            .json(good_ep(json!({"uid": long})))
            .loc(&["body", "uid"]),
        case("app uid with the reserved prefix app_", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "app_x"}))
            .loc(&["body", "uid"]),
        case("app uid with the reserved prefix ep_", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "ep_x"}))
            .loc(&["body", "uid"]),
        case("endpoint uid with the reserved prefix ep_", M::POST, eps.clone())
            .json(good_ep(json!({"uid": "ep_x"})))
            .loc(&["body", "uid"]),
        case("endpoint uid with the reserved prefix app_", M::POST, eps.clone())
            .json(good_ep(json!({"uid": "app_x"})))
            .loc(&["body", "uid"]),
        case("app uid set to a reserved prefix by PATCH", M::PATCH, app.clone())
            .json(json!({"uid": "app_x"}))
            .loc(&["body", "uid"]),
        case("app PUT on a path uid with a reserved prefix", M::PUT, "/api/v1/app/ep_x")
            .json(json!({"name": "x"}))
            .loc(&["path", "app_id"]),
        case("app uid with a space", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "has space"}))
            .loc(&["body", "uid"]),
        case("app uid with a slash", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "a/b"}))
            .loc(&["body", "uid"]),
        case("app uid with non-ASCII letters", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "héllo"}))
            .loc(&["body", "uid"]),
        case("empty app uid", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": ""}))
            .loc(&["body", "uid"]),
        case("endpoint uid with a bang", M::POST, eps.clone())
            .json(good_ep(json!({"uid": "a!b"})))
            .loc(&["body", "uid"]),
        // `.` and `..` would be resolved away as path segments.
        case("app uid '.'", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": "."}))
            .loc(&["body", "uid"]),
        case("app uid '..'", M::POST, "/api/v1/app")
            .json(json!({"name": "x", "uid": ".."}))
            .loc(&["body", "uid"]),
        case("endpoint uid '..'", M::POST, eps.clone())
            .json(good_ep(json!({"uid": ".."})))
            .loc(&["body", "uid"]),
        case("event type name '..'", M::POST, "/api/v1/event-type")
            .json(json!({"name": "..", "description": "x"}))
            .loc(&["body", "name"]),
        case("message eventId '.'", M::POST, format!("{app}/msg"))
            .json(json!({"eventType": "invoice.paid", "eventId": ".", "payload": {}}))
            .loc(&["body", "eventId"]),
        case("app id in the path with a space", M::GET, "/api/v1/app/a%20b")
            .loc(&["path", "app_id"]),
        case("event type name with a space", M::POST, "/api/v1/event-type")
            .json(json!({"name": "bad name", "description": "x"}))
            .loc(&["body", "name"]),
        case("event type name of 257 characters", M::POST, "/api/v1/event-type")
            .json(json!({"name": long, "description": "x"}))
            .loc(&["body", "name"]),
        case("event type name with a space in the path", M::GET, "/api/v1/event-type/bad%20name")
            .loc(&["path", "event_type_name"]),
        // Percent-escapes that are not UTF-8 were axum's plain-text 400,
        // which neither the Svix shape nor the OpenAPI document allow.
        case("app id in the path that is not UTF-8", M::GET, "/api/v1/app/%FF")
            .loc(&["path", "app_id"]),
        case("endpoint id in the path that is not UTF-8", M::DELETE, format!("{app}/endpoint/%C3%28"))
            .loc(&["path", "endpoint_id"]),
        case("event type name in the path that is not UTF-8", M::PATCH, "/api/v1/event-type/a%E2%82")
            .json(json!({"description": "x"}))
            .loc(&["path", "event_type_name"]),
        case("tenant id in an admin path that is not UTF-8", M::GET, "/admin/v1/tenants/%FF")
            .auth(Auth::Admin)
            .loc(&["path", "tenant_id"]),
        case("event type schemas is not an object", M::POST, "/api/v1/event-type")
            .json(json!({"name": "schema.bad", "description": "x", "schemas": [1]}))
            .loc(&["body", "schemas"]),
        case("event type description with a NUL character", M::POST, "/api/v1/event-type")
            .json(json!({"name": "nul.description", "description": "a\u{0}b"}))
            .loc(&["body", "description"]),
        case("event type schema with a NUL character", M::POST, "/api/v1/event-type")
            .json(json!({"name": "nul.schema", "description": "d", "schemas": {"1": {"title": "a\u{0}b"}}}))
            .loc_under(&["body", "schemas"]),
        case("portal access creating an app with an empty name", M::POST, "/api/v1/auth/app-portal-access/portal-new")
            .json(json!({"application": {"name": ""}}))
            .loc(&["body", "application", "name"]),
        case("portal access with an expiry under an hour", M::POST, format!("/api/v1/auth/app-portal-access/{}", f.app_id))
            .json(json!({"expiry": 10}))
            .loc(&["body", "expiry"]),
        // Invalid URLs.
        case("endpoint url of 2,049 characters", M::POST, eps.clone())
            .json(json!({"url": format!("https://example.com/{}", "a".repeat(2_029))}))
            .loc(&["body", "url"]),
        case("endpoint url of 2,049 characters by PATCH", M::PATCH, ep.clone())
            .json(json!({"url": format!("https://example.com/{}", "a".repeat(2_029))}))
            .loc(&["body", "url"]),
        case("endpoint url ftp://x", M::POST, eps.clone())
            .json(json!({"url": "ftp://x"}))
            .loc(&["body", "url"]),
        case("endpoint url 'not a url'", M::POST, eps.clone())
            .json(json!({"url": "not a url"}))
            .loc(&["body", "url"]),
        case("endpoint url javascript:alert(1)", M::POST, eps.clone())
            .json(json!({"url": "javascript:alert(1)"}))
            .loc(&["body", "url"]),
        case("empty endpoint url", M::POST, eps.clone())
            .json(json!({"url": ""}))
            .loc(&["body", "url"]),
        case("endpoint url with CR LF", M::POST, eps.clone())
            .json(json!({"url": "https://example.com/a\r\nX-Injected: 1"}))
            .loc(&["body", "url"]),
        case("endpoint url with a NUL character", M::POST, eps.clone())
            .json(json!({"url": "https://example.com/a\u{0}b"}))
            .loc(&["body", "url"]),
        case("endpoint url with a tab", M::POST, eps.clone())
            .json(json!({"url": "https://example.com/a\tb"}))
            .loc(&["body", "url"]),
        case("endpoint url with CR LF on PATCH", M::PATCH, ep.clone())
            .json(json!({"url": "https://example.com/a\r\nb"}))
            .loc(&["body", "url"]),
        case("endpoint url ftp://x on PATCH", M::PATCH, ep.clone())
            .json(json!({"url": "ftp://x"}))
            .loc(&["body", "url"]),
        case("endpoint url 'not a url' on PUT by uid", M::PUT, ep_by_uid.clone())
            .json(json!({"url": "not a url"}))
            .loc(&["body", "url"]),
        case("endpoint url javascript: on PUT of a new uid", M::PUT, format!("{eps}/new-by-put"))
            .json(json!({"url": "javascript:alert(1)"}))
            .loc(&["body", "url"]),
        // Other endpoint fields.
        case("endpoint description with a NUL character", M::POST, eps.clone())
            .json(good_ep(json!({"description": "a\u{0}b"})))
            .loc(&["body", "description"]),
        case("endpoint description of 1025 characters", M::POST, eps.clone())
            .json(good_ep(json!({"description": "d".repeat(1025)})))
            .loc(&["body", "description"]),
        case("endpoint version 2", M::POST, eps.clone())
            .json(good_ep(json!({"version": 2})))
            .loc(&["body", "version"]),
        case("endpoint throttleRate 0", M::POST, eps.clone())
            .json(good_ep(json!({"throttleRate": 0})))
            .loc(&["body", "throttleRate"]),
        case("endpoint created with a Herald header", M::POST, eps.clone())
            .json(good_ep(json!({"headers": {"webhook-id": "msg_x"}})))
            .loc(&["body", "headers", "webhook-id"]),
        // Secrets.
        case("endpoint secret too short", M::POST, eps.clone())
            .json(good_ep(json!({"secret": short_secret})))
            .loc(&["body", "secret"]),
        case("endpoint secret too long", M::POST, eps.clone())
            .json(good_ep(json!({"secret": long_secret})))
            .loc(&["body", "secret"]),
        case("endpoint secret not base64", M::POST, eps.clone())
            .json(good_ep(json!({"secret": not_base64})))
            .loc(&["body", "secret"]),
        case("endpoint secret whsec_short", M::POST, eps.clone())
            .json(good_ep(json!({"secret": "whsec_short"})))
            .loc(&["body", "secret"]),
        case("rotate to a secret that is too short", M::POST, format!("{ep}/secret/rotate"))
            .json(json!({"key": short_secret}))
            .loc(&["body", "key"]),
        case("rotate to a secret that is not base64", M::POST, format!("{ep}/secret/rotate"))
            .json(json!({"key": not_base64}))
            .loc(&["body", "key"]),
        case("rotate with gracePeriodSeconds 604801", M::POST, format!("{ep}/secret/rotate"))
            .json(json!({"gracePeriodSeconds": 604801}))
            .loc(&["body", "gracePeriodSeconds"]),
        // Event type filters and channels.
        case("unknown event type in eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": ["invoice.paid", "no.such.type"]})))
            .loc(&["body", "eventTypes"]),
        case("archived event type in eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": ["invoice.old"]})))
            .loc(&["body", "eventTypes"]),
        case("another tenant's event type in eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": ["other.only"]})))
            .loc(&["body", "eventTypes"]),
        case("unknown event type in eventTypes on PATCH", M::PATCH, ep.clone())
            .json(json!({"eventTypes": ["no.such.type"]}))
            .loc(&["body", "eventTypes"]),
        case("unknown event type in eventTypes on PUT", M::PUT, ep.clone())
            .json(json!({"url": "https://example.com/hook", "eventTypes": ["no.such.type"]}))
            .loc(&["body", "eventTypes"]),
        case("empty eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": []})))
            .loc(&["body", "eventTypes"]),
        case("empty eventTypes on PATCH", M::PATCH, ep.clone())
            .json(json!({"eventTypes": []}))
            .loc(&["body", "eventTypes"]),
        case("duplicate eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": ["invoice.paid", "invoice.paid"]})))
            .loc(&["body", "eventTypes"]),
        case("event type name with a space in eventTypes", M::POST, eps.clone())
            .json(good_ep(json!({"eventTypes": ["bad name"]})))
            .loc(&["body", "eventTypes"]),
        case("11 channels", M::POST, eps.clone())
            .json(good_ep(json!({"channels": channels(11)})))
            .loc(&["body", "channels"]),
        case("11 channels on PATCH", M::PATCH, ep.clone())
            .json(json!({"channels": channels(11)}))
            .loc(&["body", "channels"]),
        case("duplicate channels", M::POST, eps.clone())
            .json(good_ep(json!({"channels": ["a", "b", "a"]})))
            .loc(&["body", "channels"]),
        case("empty channels", M::POST, eps.clone())
            .json(good_ep(json!({"channels": []})))
            .loc(&["body", "channels"]),
        case("channel with a space", M::POST, eps.clone())
            .json(good_ep(json!({"channels": ["bad channel"]})))
            .loc(&["body", "channels"]),
        // Custom headers.
        case("header patch setting webhook-signature", M::PATCH, format!("{ep}/headers"))
            .json(json!({"headers": {"webhook-signature": "v1,forged"}}))
            .loc(&["body", "headers", "webhook-signature"]),
        case("header patch setting svix-id", M::PATCH, format!("{ep}/headers"))
            .json(json!({"headers": {"svix-id": "msg_x"}}))
            .loc(&["body", "headers", "svix-id"]),
        case("header PUT setting Host", M::PUT, format!("{ep}/headers"))
            .json(json!({"headers": {"Host": "evil.example.com"}}))
            .loc(&["body", "headers", "Host"]),
        case("header PUT with CR LF in a value", M::PUT, format!("{ep}/headers"))
            .json(json!({"headers": {"X-Bad": "a\r\nX-Injected: 1"}}))
            .loc(&["body", "headers", "X-Bad"]),
        case("header PUT with a space in a name", M::PUT, format!("{ep}/headers"))
            .json(json!({"headers": {"Bad Name": "x"}}))
            .loc(&["body", "headers", "Bad Name"]),
        case("header PUT by uid with CR LF in a value", M::PUT, format!("{ep_by_uid}/headers"))
            .json(json!({"headers": {"X-Bad": "a\r\nb"}}))
            .loc(&["body", "headers", "X-Bad"]),
        // List parameters.
        case("limit=251 on the app list", M::GET, "/api/v1/app?limit=251").loc(&["query", "limit"]),
        case("limit=0 on the app list", M::GET, "/api/v1/app?limit=0").loc(&["query", "limit"]),
        case("limit=abc on the app list", M::GET, "/api/v1/app?limit=abc").loc(&["query", "limit"]),
        case("limit=-1 on the app list", M::GET, "/api/v1/app?limit=-1").loc(&["query", "limit"]),
        case("limit=251 on the endpoint list", M::GET, format!("{eps}?limit=251"))
            .loc(&["query", "limit"]),
        case("limit=0 on the endpoint list", M::GET, format!("{eps}?limit=0"))
            .loc(&["query", "limit"]),
        case("limit=abc on the endpoint list", M::GET, format!("{eps}?limit=abc"))
            .loc(&["query", "limit"]),
        case("limit=251 on the event type list", M::GET, "/api/v1/event-type?limit=251")
            .loc(&["query", "limit"]),
        case("limit=0 on the event type list", M::GET, "/api/v1/event-type?limit=0")
            .loc(&["query", "limit"]),
        case("limit=abc on the event type list", M::GET, "/api/v1/event-type?limit=abc")
            .loc(&["query", "limit"]),
        case("iterator=garbage on the app list", M::GET, "/api/v1/app?iterator=garbage")
            .loc(&["query", "iterator"]),
        case("iterator=-garbage on the app list", M::GET, "/api/v1/app?iterator=-garbage")
            .loc(&["query", "iterator"]),
        case("iterator=ep_xxx on the app list", M::GET, "/api/v1/app?iterator=ep_xxx")
            .loc(&["query", "iterator"]),
        case("an endpoint id as iterator on the app list", M::GET, format!("/api/v1/app?iterator={}", f.ep_id))
            .loc(&["query", "iterator"]),
        case("an app id as iterator on the endpoint list", M::GET, format!("{eps}?iterator={}", f.app_id))
            .loc(&["query", "iterator"]),
        case("iterator=garbage on the endpoint list", M::GET, format!("{eps}?iterator=garbage"))
            .loc(&["query", "iterator"]),
        case("iterator with a space on the event type list", M::GET, "/api/v1/event-type?iterator=bad%20name")
            .loc(&["query", "iterator"]),
        case("order=sideways on the app list", M::GET, "/api/v1/app?order=sideways")
            .loc(&["query", "order"]),
        // Content types.
        case("text/plain app create", M::POST, "/api/v1/app")
            .raw(Some("text/plain"), r#"{"name": "x"}"#)
            .code(415, "unsupported_media_type"),
        case("form-encoded app create", M::POST, "/api/v1/app")
            .raw(Some("application/x-www-form-urlencoded"), "name=x")
            .code(415, "unsupported_media_type"),
        case("app create without Content-Type", M::POST, "/api/v1/app")
            .raw(None, r#"{"name": "x"}"#)
            .code(415, "unsupported_media_type"),
        case("text/plain endpoint PUT", M::PUT, ep.clone())
            .raw(Some("text/plain"), r#"{"url": "https://example.com/x"}"#)
            .code(415, "unsupported_media_type"),
        case("text/plain app PATCH", M::PATCH, app.clone())
            .raw(Some("text/plain"), r#"{"name": "x"}"#)
            .code(415, "unsupported_media_type"),
        // Other tenants' objects and unknown routes.
        case("another tenant's app", M::GET, other_app.clone()).code(404, "not_found"),
        case("another tenant's app by uid", M::GET, "/api/v1/app/other-app").code(404, "not_found"),
        case("PATCH of another tenant's app", M::PATCH, other_app.clone())
            .json(json!({"name": "mine now"}))
            .code(404, "not_found"),
        case("DELETE of another tenant's app", M::DELETE, other_app.clone()).code(404, "not_found"),
        case("another tenant's endpoint", M::GET, format!("{other_app}/endpoint/{}", f.other_ep_id))
            .code(404, "not_found"),
        case("another tenant's endpoint under my app", M::GET, format!("{eps}/{}", f.other_ep_id))
            .code(404, "not_found"),
        case("DELETE of another tenant's endpoint under my app", M::DELETE, format!("{eps}/{}", f.other_ep_id))
            .code(404, "not_found"),
        case("another tenant's event type", M::GET, "/api/v1/event-type/other.only")
            .code(404, "not_found"),
        case("endpoint create under another tenant's app", M::POST, format!("{other_app}/endpoint"))
            .json(json!({"url": "https://example.com/sneaky"}))
            .code(404, "not_found"),
        case("unknown route", M::GET, "/api/v1/nope").code(404, "not_found"),
        case("DELETE on the app list route", M::DELETE, "/api/v1/app")
            .code(405, "method_not_allowed"),
        // Authentication.
        case("no Authorization header", M::GET, "/api/v1/app")
            .auth(Auth::Missing)
            .code(401, "authentication_failed"),
        case("no Authorization header on create", M::POST, "/api/v1/app")
            .auth(Auth::Missing)
            .json(json!({"name": "anonymous"}))
            .code(401, "authentication_failed"),
        case("garbage API key", M::GET, "/api/v1/app")
            .auth(Auth::Header(bearer("hsk_garbage")))
            .code(401, "authentication_failed"),
        case("garbage API key on create", M::POST, "/api/v1/app")
            .auth(Auth::Header(bearer("hsk_garbage")))
            .json(json!({"name": "anonymous"}))
            .code(401, "authentication_failed"),
        case("garbage token shaped like a JWT", M::GET, "/api/v1/app")
            .auth(Auth::Header(bearer("a.b.c")))
            .code(401, "authentication_failed"),
        case("Basic instead of Bearer", M::GET, "/api/v1/app")
            .auth(Auth::Header(format!("Basic {}", f.tenant.key)))
            .code(401, "authentication_failed"),
        case("Bearer without a token", M::GET, "/api/v1/app")
            .auth(Auth::Header("Bearer ".into()))
            .code(401, "authentication_failed"),
        case("revoked API key", M::GET, "/api/v1/app")
            .auth(Auth::RevokedKey)
            .code(401, "authentication_failed"),
        case("revoked API key on create", M::POST, "/api/v1/app")
            .auth(Auth::RevokedKey)
            .json(json!({"name": "from a revoked key"}))
            .code(401, "authentication_failed"),
        case("a tenant API key on the admin API", M::POST, "/admin/v1/tenants")
            .json(json!({"name": "not an operator"}))
            .code(401, "authentication_failed"),
        case("no token on the admin API", M::GET, "/admin/v1/tenants")
            .auth(Auth::Missing)
            .code(401, "authentication_failed"),
        // App-scoped tokens on organisation routes.
        case("app token listing apps", M::GET, "/api/v1/app")
            .auth(Auth::AppToken)
            .code(403, "insufficient_access"),
        case("app token creating an app", M::POST, "/api/v1/app")
            .auth(Auth::AppToken)
            .json(json!({"name": "from an app token"}))
            .code(403, "insufficient_access"),
        case("app token creating an event type", M::POST, "/api/v1/event-type")
            .auth(Auth::AppToken)
            .json(json!({"name": "app.token.type", "description": "x"}))
            .code(403, "insufficient_access"),
        case("app token deleting an event type", M::DELETE, "/api/v1/event-type/invoice.paid")
            .auth(Auth::AppToken)
            .code(403, "insufficient_access"),
        case("app token deleting its own app", M::DELETE, app.clone())
            .auth(Auth::AppToken)
            .code(403, "insufficient_access"),
        case("app token renaming its own app", M::PATCH, app.clone())
            .auth(Auth::AppToken)
            .json(json!({"name": "renamed by an app token"}))
            .code(403, "insufficient_access"),
        case("app token issuing app tokens", M::POST, format!("/api/v1/auth/app-portal-access/{}", f.app_id))
            .auth(Auth::AppToken)
            .json(json!({}))
            .code(403, "insufficient_access"),
        // Authorisation comes before validation: a forbidden caller learns
        // nothing from a route's validation errors.
        case("app token creating an app with an invalid body", M::POST, "/api/v1/app")
            .auth(Auth::AppToken)
            .json(json!({"name": 5, "uid": "a b"}))
            .code(403, "insufficient_access"),
        case("app token listing apps with an invalid limit", M::GET, "/api/v1/app?limit=0")
            .auth(Auth::AppToken)
            .code(403, "insufficient_access"),
        case("app token creating an event type with malformed JSON", M::POST, "/api/v1/event-type")
            .auth(Auth::AppToken)
            .raw(Some("application/json"), "{not json")
            .code(403, "insufficient_access"),
        case("app token posting a message with an invalid body", M::POST, format!("{app}/msg"))
            .auth(Auth::AppToken)
            .json(json!({"eventType": "", "payload": []}))
            .code(403, "insufficient_access"),
        case("a tenant key logging itself out", M::POST, "/api/v1/auth/logout")
            .code(403, "insufficient_access"),
        // Headers the middleware checks.
        case("idempotency-key of 300 characters", M::POST, "/api/v1/app")
            .header("idempotency-key", "k".repeat(300))
            .json(json!({"name": "with a bad idempotency key"}))
            .code(400, "invalid_idempotency_key"),
    ]
}

async fn check(herald: &Herald, f: &Fixture, case: &Case) -> Result<(), String> {
    let authorization = match &case.auth {
        Auth::Tenant => Some(bearer(&f.tenant.key)),
        Auth::Admin => Some(bearer(&herald.admin_token)),
        Auth::AppToken => Some(bearer(&f.app_token)),
        Auth::RevokedKey => Some(bearer(&f.revoked_key)),
        Auth::Missing => None,
        Auth::Header(value) => Some(value.clone()),
    };
    let answer = send(
        herald,
        case.method.clone(),
        &case.path,
        authorization.as_deref(),
        &case.body,
        &case.headers,
    )
    .await;
    let fail = |why: String| Err(format!("case '{}': {why}\n    reply: {answer}", case.name));
    if answer.status.as_u16() != case.status {
        return fail(format!(
            "expected status {}, got {}",
            case.status, answer.status
        ));
    }
    if !answer
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        return fail("the error is not JSON".into());
    }
    match &case.want {
        Want::Code(code) => {
            if answer.body["code"] != *code {
                return fail(format!("expected code {code:?}"));
            }
            if answer.body["detail"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
            {
                return fail("expected a non-empty string detail".into());
            }
        }
        Want::Loc(loc) | Want::LocUnder(loc) => {
            let Some(items) = answer.body["detail"]
                .as_array()
                .filter(|items| !items.is_empty())
            else {
                return fail("expected detail to be a non-empty array".into());
            };
            if answer.body.as_object().map(|o| o.len()) != Some(1) {
                return fail("a 422 body has only `detail`".into());
            }
            for item in items {
                let loc_ok = item["loc"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty() && l.iter().all(Value::is_string));
                let msg_ok = item["msg"].as_str().is_some_and(|m| !m.trim().is_empty());
                let type_ok = item["type"].as_str().is_some_and(|t| !t.is_empty());
                if !(loc_ok && msg_ok && type_ok) {
                    return fail(format!("malformed validation item {item}"));
                }
            }
            let under = matches!(case.want, Want::LocUnder(_));
            let matches = |item: &Value| {
                let got: Vec<&str> = item["loc"]
                    .as_array()
                    .map(|l| l.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if under {
                    got.starts_with(&loc.iter().map(String::as_str).collect::<Vec<_>>())
                } else {
                    got == *loc
                }
            };
            if !items.iter().any(matches) {
                let how = if under { "at or below" } else { "at" };
                return fail(format!("expected an item {how} loc {loc:?}"));
            }
        }
    }
    Ok(())
}

herald_e2e::e2e_tests! {
    async fn bad_requests_get_a_4xx_with_code_and_detail_and_store_nothing() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let f = fixture(&herald).await;
        let cases = cases(&f);
        let mut failures = Vec::new();
        for case in &cases {
            let counts_before = counts(&herald).await;
            let before = snapshot(&herald, &f).await;
            if let Err(failure) = check(&herald, &f, case).await {
                failures.push(failure);
            }
            let counts_after = counts(&herald).await;
            if counts_after != counts_before {
                failures.push(format!(
                    "case '{}': stored something: rows before {counts_before:?}, after {counts_after:?}",
                    case.name
                ));
            }
            let after = snapshot(&herald, &f).await;
            for (section, was) in before.as_object().into_iter().flatten() {
                let now = &after[section];
                if now != was {
                    failures.push(format!(
                        "case '{}': changed the existing {section}:\n    before {was}\n    after  {now}",
                        case.name
                    ));
                }
            }
            assert!(
                herald.is_running(),
                "case '{}' crashed the server; its log:\n{}",
                case.name,
                herald.log()
            );
        }
        assert!(
            failures.is_empty(),
            "{} of {} bad-input cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
        let health = herald.get("/api/v1/health").await;
        assert_eq!(health.status, 204, "health after the bad input: {health:?}");
        assert!(herald.is_running());
    }
}

herald_e2e::e2e_tests! {
    async fn another_tenants_id_gets_a_404_byte_identical_to_an_id_that_never_existed() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let f = fixture(&herald).await;
        let key = bearer(&f.tenant.key);
        let get = |path: String| {
            let key = key.clone();
            let herald = &herald;
            async move { send(herald, Method::GET, &path, Some(&key), &Body::None, &[]).await }
        };
        let never = "app_1srOrx2ZWZBpBUvZwXKQmoEYga2";
        let never_ep = "ep_1srOrx2ZWZBpBUvZwXKQmoEYga2";
        let reference = get(format!("/api/v1/app/{never}")).await;
        assert_eq!(
            reference.status, 404,
            "an id that never existed: {reference}"
        );
        assert_eq!(reference.body["code"], "not_found", "{reference}");
        assert!(reference.body["detail"].is_string(), "{reference}");

        let pairs = [
            (
                "another tenant's app id",
                format!("/api/v1/app/{}", f.other_app_id),
            ),
            (
                "another tenant's app uid",
                "/api/v1/app/other-app".to_owned(),
            ),
            (
                "a uid that never existed",
                "/api/v1/app/never-existed".to_owned(),
            ),
            (
                "another tenant's endpoint under its app",
                format!("/api/v1/app/{}/endpoint/{}", f.other_app_id, f.other_ep_id),
            ),
            (
                "another tenant's endpoint under my app",
                format!("/api/v1/app/{}/endpoint/{}", f.app_id, f.other_ep_id),
            ),
            (
                "an endpoint that never existed under my app",
                format!("/api/v1/app/{}/endpoint/{never_ep}", f.app_id),
            ),
            (
                "another tenant's endpoint secret",
                format!(
                    "/api/v1/app/{}/endpoint/{}/secret",
                    f.other_app_id, f.other_ep_id
                ),
            ),
            (
                "another tenant's endpoint list",
                format!("/api/v1/app/{}/endpoint", f.other_app_id),
            ),
            (
                "another tenant's event type",
                "/api/v1/event-type/other.only".to_owned(),
            ),
            (
                "an event type that never existed",
                "/api/v1/event-type/never.existed".to_owned(),
            ),
        ];
        for (what, path) in pairs {
            let answer = get(path.clone()).await;
            assert_eq!(
                (answer.status, &answer.content_type, &answer.bytes),
                (reference.status, &reference.content_type, &reference.bytes),
                "{what} ({path}) must be indistinguishable from an id that never existed\n    \
                 reply:     {answer}\n    reference: {reference}"
            );
        }
        assert!(herald.is_running());
    }
}

/// A JSON application body of exactly `size` bytes.
fn app_body_of_size(size: usize) -> Vec<u8> {
    let head = r#"{"name":"big","metadata":{"pad":""#;
    let tail = r#""}}"#;
    let pad = size - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(body.len(), size);
    serde_json::from_str::<Value>(&body).expect("valid JSON");
    body.into_bytes()
}

/// Sends a chunked request over a raw socket (no Content-Length, so the server
/// cannot refuse it up front) and returns the status line and the whole reply.
async fn chunked_post(herald: &Herald, path: &str, body: &[u8]) -> String {
    let address = herald
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        herald.tenant.key
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; that is fine.
    let _ = stream.write_all(&request).await;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

herald_e2e::e2e_tests! {
    async fn a_body_over_the_configured_limit_gets_413_and_stores_nothing() {
        let options = Options {
            env: vec![("HERALD_MAX_BODY_BYTES".into(), "2048".into())],
            ..Default::default()
        };
        let Some(mut herald) = Herald::start_with(options).await else {
            return;
        };
        let key = herald.tenant.key.clone();
        let apps_before = herald.count_rows("application").await;

        let big = app_body_of_size(4096);
        for (method, path) in [
            (Method::POST, "/api/v1/app"),
            (Method::PUT, "/api/v1/app/too-big"),
            (Method::POST, "/api/v1/auth/app-portal-access/too-big"),
        ] {
            let reply = herald
                .request_raw(
                    method.clone(),
                    path,
                    Some(&key),
                    "application/json",
                    big.clone(),
                )
                .await;
            assert_eq!(reply.status, 413, "{method} {path} with 4 KiB: {reply:?}");
            assert_eq!(
                reply.body["code"], "payload_too_large",
                "{method} {path}: {reply:?}"
            );
            assert!(
                reply.body["detail"].is_string(),
                "{method} {path}: {reply:?}"
            );
        }

        let chunked = chunked_post(&herald, "/api/v1/app", &big).await;
        let status_line = chunked.lines().next().unwrap_or_default();
        assert!(
            status_line.contains(" 413"),
            "a chunked 4 KiB body must get 413 too; reply:\n{chunked}"
        );
        assert!(
            chunked.contains("payload_too_large"),
            "chunked reply:\n{chunked}"
        );

        assert_eq!(
            herald.count_rows("application").await,
            apps_before,
            "an oversized body stored an application"
        );
        assert!(
            herald.is_running(),
            "oversized bodies crashed the server:\n{}",
            herald.log()
        );

        // The limit is the reason: the same request under the limit succeeds.
        let small = app_body_of_size(1024);
        let reply = herald
            .request_raw(
                Method::POST,
                "/api/v1/app",
                Some(&key),
                "application/json",
                small,
            )
            .await;
        assert_eq!(
            reply.status, 201,
            "a 1 KiB app under a 2 KiB limit: {reply:?}"
        );
        assert_eq!(herald.count_rows("application").await, apps_before + 1);
        let health = herald.get("/api/v1/health").await;
        assert_eq!(health.status, 204, "{health:?}");
    }
}
