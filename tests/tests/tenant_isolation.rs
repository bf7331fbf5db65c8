//! Tenants cannot see each other: every route answers another tenant's objects
//! with the very same 404 as objects that never existed, changes nothing, and
//! uids and event type names are per tenant. App-scoped tokens see one
//! application and nothing else.

use std::fmt;

use herald_e2e::{Herald, Tenant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// An id of the right shape that no server ever issued.
const NEVER_APP: &str = "app_1srOrx2ZWZBpBUvZwXKQmoEYga2";

/// A reply with its exact bytes.
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
            "{} {}",
            self.status,
            String::from_utf8_lossy(&self.bytes)
        )
    }
}

async fn send(
    herald: &Herald,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut request = herald
        .http
        .request(method, format!("{}{path}", herald.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
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

async fn must(
    herald: &Herald,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let answer = send(herald, token, method.clone(), path, body.as_ref()).await;
    assert_eq!(answer.status.as_u16(), status, "{method} {path}: {answer}");
    answer.body
}

/// One request another principal makes against objects it must not see.
struct Attempt {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn attempt(method: Method, path: impl Into<String>, body: Option<Value>) -> Attempt {
    Attempt {
        method,
        path: path.into(),
        body,
    }
}

/// Sends every attempt with `token` and returns a description of each one that
/// is not byte-for-byte the 404 of an object that never existed.
async fn hidden_failures(
    herald: &Herald,
    who: &str,
    token: &str,
    attempts: &[Attempt],
) -> Vec<String> {
    let reference = send(
        herald,
        token,
        Method::GET,
        &format!("/api/v1/app/{NEVER_APP}"),
        None,
    )
    .await;
    assert_eq!(
        reference.status, 404,
        "reference 404 for {who}: {reference}"
    );
    assert_eq!(
        reference.body["code"], "not_found",
        "reference 404 for {who}: {reference}"
    );
    let mut failures = Vec::new();
    for a in attempts {
        let answer = send(herald, token, a.method.clone(), &a.path, a.body.as_ref()).await;
        if (answer.status, &answer.content_type, &answer.bytes)
            != (reference.status, &reference.content_type, &reference.bytes)
        {
            failures.push(format!(
                "{who}: {} {} must look exactly like a missing object\n    reply:     {answer}\n    reference: {reference}",
                a.method, a.path
            ));
        }
    }
    failures
}

fn assert_no_failures(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} attempts revealed or touched another principal's objects:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every endpoint route of `app_refs` × `ep_refs`, with harmless-looking bodies.
fn endpoint_attempts(app_refs: &[&str], ep_refs: &[&str]) -> Vec<Attempt> {
    use Method as M;
    let mut out = Vec::new();
    for app in app_refs {
        let eps = format!("/api/v1/app/{app}/endpoint");
        out.push(attempt(M::GET, eps.clone(), None));
        out.push(attempt(
            M::POST,
            eps.clone(),
            Some(json!({"url": "https://evil.example.com/planted", "uid": "planted"})),
        ));
        for ep in ep_refs {
            let ep = format!("{eps}/{ep}");
            out.push(attempt(M::GET, ep.clone(), None));
            out.push(attempt(
                M::PUT,
                ep.clone(),
                Some(json!({"url": "https://evil.example.com/put", "description": "hijacked"})),
            ));
            out.push(attempt(
                M::PATCH,
                ep.clone(),
                Some(json!({"url": "https://evil.example.com/patch", "description": "hijacked"})),
            ));
            out.push(attempt(M::GET, format!("{ep}/secret"), None));
            out.push(attempt(
                M::POST,
                format!("{ep}/secret/rotate"),
                Some(json!({})),
            ));
            out.push(attempt(
                M::POST,
                format!("{ep}/secret/rotate"),
                Some(json!({"key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "gracePeriodSeconds": 0})),
            ));
            out.push(attempt(M::GET, format!("{ep}/headers"), None));
            out.push(attempt(
                M::PUT,
                format!("{ep}/headers"),
                Some(json!({"headers": {"X-Evil": "1"}})),
            ));
            out.push(attempt(
                M::PATCH,
                format!("{ep}/headers"),
                Some(json!({"headers": {"X-Evil": "1", "X-Team": null}})),
            ));
            out.push(attempt(M::DELETE, ep.clone(), None));
        }
    }
    out
}

/// Tenant A's application with one endpoint (with headers) subscribed to an event type.
struct Objects {
    app_id: String,
    app_uid: String,
    ep_id: String,
    ep_uid: String,
}

async fn create_objects(
    herald: &Herald,
    tenant: &Tenant,
    app_uid: &str,
    ep_uid: &str,
    event_type: &str,
) -> Objects {
    let key = &tenant.key;
    let existing = send(
        herald,
        key,
        Method::GET,
        &format!("/api/v1/event-type/{event_type}"),
        None,
    )
    .await;
    if existing.status == 404 {
        must(
            herald,
            key,
            Method::POST,
            "/api/v1/event-type",
            Some(json!({"name": event_type, "description": format!("{event_type} of {}", tenant.id)})),
            201,
        )
        .await;
    }
    let app = must(
        herald,
        key,
        Method::POST,
        "/api/v1/app",
        Some(json!({"name": format!("app {app_uid}"), "uid": app_uid, "metadata": {"owner": tenant.id}})),
        201,
    )
    .await;
    let app_id = app["id"].as_str().expect("app id").to_owned();
    let ep = must(
        herald,
        key,
        Method::POST,
        &format!("/api/v1/app/{app_id}/endpoint"),
        Some(json!({
            "url": format!("https://{app_uid}.example.com/hook"),
            "uid": ep_uid,
            "description": format!("endpoint {ep_uid}"),
            "eventTypes": [event_type],
            "channels": ["billing"],
        })),
        201,
    )
    .await;
    let ep_id = ep["id"].as_str().expect("endpoint id").to_owned();
    must(
        herald,
        key,
        Method::PUT,
        &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/headers"),
        Some(json!({"headers": {"X-Team": "billing", "Authorization": "Bearer downstream"}})),
        204,
    )
    .await;
    Objects {
        app_id,
        app_uid: app_uid.to_owned(),
        ep_id,
        ep_uid: ep_uid.to_owned(),
    }
}

/// Everything about `objects` as their owner reads it (by id and by uid).
async fn read_all(herald: &Herald, owner: &Tenant, objects: &Objects, event_type: &str) -> Value {
    let get = |path: String| async move {
        let answer = send(herald, &owner.key, Method::GET, &path, None).await;
        assert_eq!(answer.status, 200, "owner reads {path}: {answer}");
        answer.body
    };
    let app = format!("/api/v1/app/{}", objects.app_id);
    let ep = format!("{app}/endpoint/{}", objects.ep_id);
    json!({
        "app": get(app.clone()).await,
        "appByUid": get(format!("/api/v1/app/{}", objects.app_uid)).await,
        "endpoint": get(ep.clone()).await,
        "endpointByUid": get(format!("/api/v1/app/{}/endpoint/{}", objects.app_uid, objects.ep_uid)).await,
        "endpoints": get(format!("{app}/endpoint")).await,
        "secret": get(format!("{ep}/secret")).await,
        "headers": get(format!("{ep}/headers")).await,
        "eventType": get(format!("/api/v1/event-type/{event_type}")).await,
    })
}

/// Fields of `list` (a Svix list page) named `field`.
fn listed(list: &Value, field: &str) -> Vec<String> {
    list["data"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares the owner's view before and after, field by field for clear messages.
fn assert_unchanged(before: &Value, after: &Value) {
    for (section, fields) in [
        ("app", &["id", "uid", "name", "metadata", "updatedAt"][..]),
        (
            "endpoint",
            &[
                "id",
                "uid",
                "url",
                "description",
                "eventTypes",
                "channels",
                "disabled",
                "updatedAt",
            ][..],
        ),
        ("secret", &["key"][..]),
        ("headers", &["headers", "sensitive"][..]),
        (
            "eventType",
            &["name", "description", "archived", "deprecated", "updatedAt"][..],
        ),
    ] {
        for field in fields {
            assert_eq!(
                after[section][field], before[section][field],
                "{section}.{field} changed: before {}, after {}",
                before[section], after[section]
            );
        }
    }
    assert_eq!(after, before, "the owner's objects changed");
}

herald_e2e::e2e_tests! {
    async fn another_tenant_cannot_read_list_change_or_delete_anything_through_any_route() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let a = herald.tenant.clone();
        let b = herald.create_tenant("second").await;
        let event_type = "isolation.test";
        let objects = create_objects(&herald, &a, "shared-uid", "a-endpoint", event_type).await;
        let before = read_all(&herald, &a, &objects, event_type).await;
        let endpoints_before = herald.count_rows("endpoint").await;
        let apps_before = herald.count_rows("application").await;
        use Method as M;

        let app_refs = [objects.app_id.as_str(), objects.app_uid.as_str()];
        let ep_refs = [objects.ep_id.as_str(), objects.ep_uid.as_str()];
        let mut attempts = Vec::new();
        for app in app_refs {
            let path = format!("/api/v1/app/{app}");
            attempts.push(attempt(M::GET, path.clone(), None));
            attempts.push(attempt(
                M::PATCH,
                path.clone(),
                Some(json!({"name": "hijacked", "uid": "stolen"})),
            ));
            attempts.push(attempt(M::DELETE, path.clone(), None));
            attempts.push(attempt(
                M::POST,
                format!("/api/v1/auth/app-portal-access/{app}"),
                Some(json!({})),
            ));
        }
        // PUT by id names an existing object; PUT by uid is create-or-replace and is
        // checked below, after every other uid-based attempt.
        attempts.push(attempt(
            M::PUT,
            format!("/api/v1/app/{}", objects.app_id),
            Some(json!({"name": "hijacked"})),
        ));
        attempts.extend(endpoint_attempts(&app_refs, &ep_refs));
        let et = format!("/api/v1/event-type/{event_type}");
        attempts.push(attempt(M::GET, et.clone(), None));
        attempts.push(attempt(
            M::PATCH,
            et.clone(),
            Some(json!({"description": "hijacked", "archived": true})),
        ));
        attempts.push(attempt(M::DELETE, et.clone(), None));
        attempts.push(attempt(M::DELETE, format!("{et}?expunge=true"), None));
        let mut failures = hidden_failures(&herald, "tenant B", &b.key, &attempts).await;
        let mut total = attempts.len();

        // B's listings show none of A's objects.
        let apps = must(&herald, &b.key, M::GET, "/api/v1/app", None, 200).await;
        assert!(
            !listed(&apps, "id").contains(&objects.app_id),
            "B's app list shows A's app: {apps}"
        );
        assert!(
            !listed(&apps, "uid").contains(&objects.app_uid),
            "B's app list shows A's app: {apps}"
        );
        let apps = must(
            &herald,
            &b.key,
            M::GET,
            &format!("/api/v1/app?iterator=-{NEVER_APP}&order=descending"),
            None,
            200,
        )
        .await;
        assert!(
            !listed(&apps, "id").contains(&objects.app_id),
            "B's app list (paged) shows A's app: {apps}"
        );
        let first = format!("app_{}", "0".repeat(27));
        let apps = must(
            &herald,
            &b.key,
            M::GET,
            &format!("/api/v1/app?iterator={first}&limit=250"),
            None,
            200,
        )
        .await;
        assert!(
            !listed(&apps, "id").contains(&objects.app_id),
            "B's app list (paged) shows A's app: {apps}"
        );
        for query in [
            "",
            "?include_archived=true",
            "?include_archived=true&with_content=true",
        ] {
            let types = must(
                &herald,
                &b.key,
                M::GET,
                &format!("/api/v1/event-type{query}"),
                None,
                200,
            )
            .await;
            assert!(
                !listed(&types, "name").contains(&event_type.to_owned()),
                "B's event type list{query} shows A's event type: {types}"
            );
        }

        // B may use A's app uid for an app of its own: B gets a new app, A's is untouched.
        let b_app = must(
            &herald,
            &b.key,
            M::PUT,
            &format!("/api/v1/app/{}", objects.app_uid),
            Some(json!({"name": "B's own app"})),
            201,
        )
        .await;
        let b_app_id = b_app["id"].as_str().expect("id").to_owned();
        assert_ne!(
            b_app_id, objects.app_id,
            "B's PUT by uid replaced A's app: {b_app}"
        );
        let mine = must(
            &herald,
            &b.key,
            M::GET,
            &format!("/api/v1/app/{}", objects.app_uid),
            None,
            200,
        )
        .await;
        assert_eq!(
            mine["id"],
            b_app_id.as_str(),
            "B reads its own app by the shared uid: {mine}"
        );
        assert_eq!(mine["name"], "B's own app");
        // Under B's own app of that uid, A's endpoint is still invisible. (Listing
        // and creating are B's right there, and a PUT by an endpoint uid B does not
        // have creates B's own endpoint, so those are left out.)
        let attempts = endpoint_attempts(&[objects.app_uid.as_str(), b_app_id.as_str()], &ep_refs)
            .into_iter()
            .filter(|a| !a.path.ends_with("/endpoint"))
            .filter(|a| {
                !(a.method == M::PUT && a.path.ends_with(&format!("/endpoint/{}", objects.ep_uid)))
            })
            .collect::<Vec<_>>();
        failures
            .extend(hidden_failures(&herald, "tenant B under its own app", &b.key, &attempts).await);
        total += attempts.len();
        let b_eps = must(
            &herald,
            &b.key,
            M::GET,
            &format!("/api/v1/app/{b_app_id}/endpoint"),
            None,
            200,
        )
        .await;
        assert_eq!(
            listed(&b_eps, "id"),
            Vec::<String>::new(),
            "B's new app lists A's endpoint: {b_eps}"
        );

        assert_no_failures(&failures, total);

        // A's objects are exactly as they were, and only B's one app was added.
        let after = read_all(&herald, &a, &objects, event_type).await;
        assert_unchanged(&before, &after);
        assert_eq!(
            herald.count_rows("endpoint").await,
            endpoints_before,
            "an endpoint was planted"
        );
        assert_eq!(herald.count_rows("application").await, apps_before + 1);
        let a_apps = must(&herald, &a.key, M::GET, "/api/v1/app", None, 200).await;
        assert_eq!(
            listed(&a_apps, "id"),
            vec![objects.app_id.clone()],
            "A's app list: {a_apps}"
        );
        assert!(herald.is_running(), "the server died:\n{}", herald.log());
    }
}

herald_e2e::e2e_tests! {
    async fn event_type_names_are_per_tenant_and_another_tenants_copy_is_independent() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let a = herald.tenant.clone();
        let b = herald.create_tenant("second").await;
        let name = "invoice.paid";
        let objects = create_objects(&herald, &a, "a-app", "a-ep", name).await;
        let before = read_all(&herald, &a, &objects, name).await;
        use Method as M;
        let path = format!("/api/v1/event-type/{name}");

        // Before B has its own copy, A's is invisible to B.
        let attempts = vec![
            attempt(M::GET, path.clone(), None),
            attempt(
                M::PATCH,
                path.clone(),
                Some(json!({"description": "hijacked"})),
            ),
            attempt(M::DELETE, path.clone(), None),
            attempt(M::DELETE, format!("{path}?expunge=true"), None),
        ];
        let failures = hidden_failures(&herald, "tenant B", &b.key, &attempts).await;
        assert_no_failures(&failures, attempts.len());
        let types = must(
            &herald,
            &b.key,
            M::GET,
            "/api/v1/event-type?include_archived=true",
            None,
            200,
        )
        .await;
        assert!(
            !listed(&types, "name").contains(&name.to_owned()),
            "B lists A's event type: {types}"
        );
        // Nor can B subscribe an endpoint to it.
        let b_app = must(
            &herald,
            &b.key,
            M::POST,
            "/api/v1/app",
            Some(json!({"name": "B"})),
            201,
        )
        .await;
        let b_eps = format!("/api/v1/app/{}/endpoint", b_app["id"].as_str().expect("id"));
        let refused = send(
            &herald,
            &b.key,
            M::POST,
            &b_eps,
            Some(&json!({"url": "https://b.example.com/hook", "eventTypes": [name]})),
        )
        .await;
        assert_eq!(
            refused.status, 422,
            "B subscribing to A's event type: {refused}"
        );
        assert_eq!(
            refused.body["detail"][0]["loc"],
            json!(["body", "eventTypes"]),
            "{refused}"
        );

        // B creates the same name independently.
        let created = must(
            &herald,
            &b.key,
            M::POST,
            "/api/v1/event-type",
            Some(json!({"name": name, "description": "B's copy"})),
            201,
        )
        .await;
        assert_eq!(created["description"], "B's copy");
        let b_copy = must(&herald, &b.key, M::GET, &path, None, 200).await;
        assert_eq!(
            b_copy["description"], "B's copy",
            "B reads its own copy: {b_copy}"
        );
        let a_copy = must(&herald, &a.key, M::GET, &path, None, 200).await;
        assert_eq!(
            a_copy, before["eventType"],
            "A's event type after B created its copy"
        );
        must(
            &herald,
            &b.key,
            M::POST,
            &b_eps,
            Some(json!({"url": "https://b.example.com/hook", "eventTypes": [name]})),
            201,
        )
        .await;

        // Changing, replacing, archiving and expunging B's copy leaves A's alone.
        let patched = must(
            &herald,
            &b.key,
            M::PATCH,
            &path,
            Some(json!({"description": "B patched", "deprecated": true})),
            200,
        )
        .await;
        assert_eq!(patched["description"], "B patched");
        must(
            &herald,
            &b.key,
            M::PUT,
            &path,
            Some(json!({"description": "B replaced"})),
            200,
        )
        .await;
        must(&herald, &b.key, M::DELETE, &path, None, 204).await;
        let archived = must(&herald, &b.key, M::GET, &path, None, 200).await;
        assert_eq!(
            archived["archived"], true,
            "B's copy is archived: {archived}"
        );
        let a_copy = must(&herald, &a.key, M::GET, &path, None, 200).await;
        assert_eq!(
            a_copy, before["eventType"],
            "A's event type after B archived its copy"
        );
        // Expunge B's copy (after removing B's endpoint that subscribes to it).
        let b_list = must(&herald, &b.key, M::GET, &b_eps, None, 200).await;
        for id in listed(&b_list, "id") {
            must(
                &herald,
                &b.key,
                M::DELETE,
                &format!("{b_eps}/{id}"),
                None,
                204,
            )
            .await;
        }
        must(
            &herald,
            &b.key,
            M::DELETE,
            &format!("{path}?expunge=true"),
            None,
            204,
        )
        .await;
        let gone = send(&herald, &b.key, M::GET, &path, None).await;
        assert_eq!(gone.status, 404, "B's expunged copy: {gone}");

        let after = read_all(&herald, &a, &objects, name).await;
        assert_unchanged(&before, &after);
        let a_types = must(&herald, &a.key, M::GET, "/api/v1/event-type", None, 200).await;
        assert!(
            listed(&a_types, "name").contains(&name.to_owned()),
            "A still lists its event type: {a_types}"
        );
        // A can still subscribe new endpoints to it.
        must(
            &herald,
            &a.key,
            M::POST,
            &format!("/api/v1/app/{}/endpoint", objects.app_id),
            Some(json!({"url": "https://a.example.com/second", "eventTypes": [name]})),
            201,
        )
        .await;
        assert!(herald.is_running(), "the server died:\n{}", herald.log());
    }
}

herald_e2e::e2e_tests! {
    async fn uids_are_per_tenant_so_another_tenant_may_reuse_them_without_touching_the_original() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let a = herald.tenant.clone();
        let b = herald.create_tenant("second").await;
        let objects = create_objects(&herald, &a, "customer-42", "primary", "user.signup").await;
        let before = read_all(&herald, &a, &objects, "user.signup").await;

        // B creates an app and an endpoint with the same uids, by POST.
        let b_objects = create_objects(&herald, &b, "customer-42", "primary", "user.signup").await;
        assert_ne!(b_objects.app_id, objects.app_id);
        assert_ne!(b_objects.ep_id, objects.ep_id);
        let b_view = read_all(&herald, &b, &b_objects, "user.signup").await;
        assert_eq!(
            b_view["appByUid"]["id"],
            b_objects.app_id.as_str(),
            "B's uid lookup: {b_view}"
        );
        assert_eq!(
            b_view["endpointByUid"]["id"],
            b_objects.ep_id.as_str(),
            "B's uid lookup: {b_view}"
        );
        assert_ne!(
            b_view["secret"], before["secret"],
            "two endpoints share a secret"
        );
        let a_view = read_all(&herald, &a, &objects, "user.signup").await;
        assert_eq!(a_view, before, "A's objects after B reused the uids");

        // get_if_exists with A's uid gives B its own app, never A's.
        let again = must(
            &herald,
            &b.key,
            Method::POST,
            "/api/v1/app?get_if_exists=true",
            Some(json!({"name": "again", "uid": "customer-42"})),
            200,
        )
        .await;
        assert_eq!(
            again["id"],
            b_objects.app_id.as_str(),
            "get_if_exists returned: {again}"
        );

        // B changes and deletes its objects by uid; A's stay.
        must(
            &herald,
            &b.key,
            Method::PATCH,
            "/api/v1/app/customer-42/endpoint/primary",
            Some(json!({"url": "https://b.example.com/changed"})),
            200,
        )
        .await;
        must(
            &herald,
            &b.key,
            Method::PATCH,
            "/api/v1/app/customer-42",
            Some(json!({"name": "B renamed"})),
            200,
        )
        .await;
        must(
            &herald,
            &b.key,
            Method::DELETE,
            "/api/v1/app/customer-42/endpoint/primary",
            None,
            204,
        )
        .await;
        must(
            &herald,
            &b.key,
            Method::DELETE,
            "/api/v1/app/customer-42",
            None,
            204,
        )
        .await;
        let gone = send(
            &herald,
            &b.key,
            Method::GET,
            "/api/v1/app/customer-42",
            None,
        )
        .await;
        assert_eq!(gone.status, 404, "B's deleted app: {gone}");

        let after = read_all(&herald, &a, &objects, "user.signup").await;
        assert_unchanged(&before, &after);
        assert!(herald.is_running(), "the server died:\n{}", herald.log());
    }
}

herald_e2e::e2e_tests! {
    async fn an_app_token_sees_only_its_own_application() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let a = herald.tenant.clone();
        let b = herald.create_tenant("second").await;
        let mine = create_objects(&herald, &a, "portal-app", "portal-ep", "order.created").await;
        let sibling = create_objects(&herald, &a, "sibling-app", "sibling-ep", "order.created").await;
        let foreign = create_objects(&herald, &b, "foreign-app", "foreign-ep", "foreign.only").await;
        let sibling_before = read_all(&herald, &a, &sibling, "order.created").await;
        let foreign_before = read_all(&herald, &b, &foreign, "foreign.only").await;
        use Method as M;

        let portal = must(
            &herald,
            &a.key,
            M::POST,
            &format!("/api/v1/auth/app-portal-access/{}", mine.app_id),
            Some(json!({})),
            200,
        )
        .await;
        let token = portal["token"].as_str().expect("token").to_owned();

        // The token works for its own application.
        let own = must(
            &herald,
            &token,
            M::GET,
            &format!("/api/v1/app/{}", mine.app_id),
            None,
            200,
        )
        .await;
        assert_eq!(own["id"], mine.app_id.as_str());
        let own_eps = must(
            &herald,
            &token,
            M::GET,
            &format!("/api/v1/app/{}/endpoint", mine.app_uid),
            None,
            200,
        )
        .await;
        assert_eq!(
            listed(&own_eps, "id"),
            vec![mine.ep_id.clone()],
            "the token's endpoint list: {own_eps}"
        );

        let mut attempts = vec![
            attempt(M::GET, format!("/api/v1/app/{}", sibling.app_id), None),
            attempt(M::GET, format!("/api/v1/app/{}", sibling.app_uid), None),
            attempt(M::GET, format!("/api/v1/app/{}", foreign.app_id), None),
            attempt(M::GET, format!("/api/v1/app/{}", foreign.app_uid), None),
            attempt(M::GET, "/api/v1/event-type/foreign.only", None),
        ];
        // The sibling's and the other tenant's endpoints, under their own apps…
        attempts.extend(endpoint_attempts(
            &[&sibling.app_id, &sibling.app_uid],
            &[&sibling.ep_id, &sibling.ep_uid],
        ));
        attempts.extend(endpoint_attempts(
            &[&foreign.app_id],
            &[&foreign.ep_id, &foreign.ep_uid],
        ));
        // …and smuggled under the token's own application.
        attempts.extend(
            endpoint_attempts(&[&mine.app_id], &[&sibling.ep_id, &foreign.ep_id])
                .into_iter()
                .filter(|a| !a.path.ends_with("/endpoint")),
        );
        let mut failures = hidden_failures(&herald, "A's app token", &token, &attempts).await;
        let mut total = attempts.len();

        // An app token of tenant B cannot reach tenant A's application either.
        let b_portal = must(
            &herald,
            &b.key,
            M::POST,
            &format!("/api/v1/auth/app-portal-access/{}", foreign.app_id),
            Some(json!({})),
            200,
        )
        .await;
        let b_token = b_portal["token"].as_str().expect("token").to_owned();
        let mut b_attempts = vec![
            attempt(M::GET, format!("/api/v1/app/{}", mine.app_id), None),
            attempt(M::GET, format!("/api/v1/app/{}", mine.app_uid), None),
            attempt(M::GET, "/api/v1/event-type/order.created", None),
        ];
        b_attempts.extend(endpoint_attempts(
            &[&mine.app_id, &mine.app_uid],
            &[&mine.ep_id, &mine.ep_uid],
        ));
        failures.extend(hidden_failures(&herald, "B's app token", &b_token, &b_attempts).await);
        total += b_attempts.len();
        assert_no_failures(&failures, total);

        let sibling_after = read_all(&herald, &a, &sibling, "order.created").await;
        assert_unchanged(&sibling_before, &sibling_after);
        let foreign_after = read_all(&herald, &b, &foreign, "foreign.only").await;
        assert_unchanged(&foreign_before, &foreign_after);
        assert!(herald.is_running(), "the server died:\n{}", herald.log());
    }
}
