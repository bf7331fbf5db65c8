//! Authentication over HTTP: tenant API keys (missing, malformed, unknown,
//! revoked, rotated) and app-scoped tokens from `app-portal-access` (what they
//! may do, what they may not, and that they cannot be forged).

use herald_e2e::{Herald, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sends a request with a raw `Authorization` header value (or none).
async fn with_authorization(
    herald: &Herald,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> Reply {
    let mut request = herald.http.request(method, format!("{}{path}", herald.url));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Herald::reply(request.send().await.expect("request reaches herald")).await
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
    assert_eq!(
        reply.body["code"], "authentication_failed",
        "{what}: {reply:?}"
    );
    assert!(reply.body["detail"].is_string(), "{what}: {reply:?}");
}

fn assert_forbidden(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {reply:?}");
    assert_eq!(
        reply.body["code"], "insufficient_access",
        "{what}: {reply:?}"
    );
}

fn assert_not_found(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{what}: {reply:?}");
    assert_eq!(reply.body["code"], "not_found", "{what}: {reply:?}");
}

fn str_field(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {body}"))
        .to_owned()
}

async fn create_app(herald: &Herald, name: &str, uid: &str) -> String {
    let reply = herald
        .post("/api/v1/app", json!({"name": name, "uid": uid}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    str_field(&reply.body, "id")
}

/// An app-scoped token for `app` (an id or uid), issued with the tenant's key.
async fn app_token(herald: &Herald, app: &str, body: Value) -> String {
    let reply = herald
        .post(&format!("/api/v1/auth/app-portal-access/{app}"), body)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "app-portal-access for {app}: {reply:?}"
    );
    let token = str_field(&reply.body, "token");
    assert_eq!(token.matches('.').count(), 2, "not a JWT: {token}");
    token
}

async fn as_token(
    herald: &Herald,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    herald.request(method, path, Some(token), body).await
}

herald_e2e::e2e_tests! {
    async fn requests_without_an_authorization_header_get_401() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        for (method, path) in [
            (Method::GET, "/api/v1/app"),
            (Method::POST, "/api/v1/app"),
            (Method::GET, "/api/v1/event-type"),
            (Method::GET, "/api/v1/app/app_whatever/endpoint"),
        ] {
            let reply = with_authorization(&herald, method.clone(), path, None).await;
            assert_unauthorized(&reply, &format!("{method} {path} without Authorization"));
        }
        // The health check is public.
        assert_eq!(
            with_authorization(&herald, Method::GET, "/api/v1/health", None)
                .await
                .status,
            204
        );
    }
}

herald_e2e::e2e_tests! {
    async fn non_bearer_schemes_and_empty_tokens_get_401() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let key = herald.tenant.key.clone();
        for value in [
            format!("Basic {key}"),
            format!("Token {key}"),
            format!("Bearer{key}"),
            key.clone(),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "Bearer    ".to_owned(),
        ] {
            let reply = with_authorization(&herald, Method::GET, "/api/v1/app", Some(&value)).await;
            assert_unauthorized(&reply, &format!("Authorization: {value:?}"));
        }
        // The same key with the right scheme works, whatever the scheme's case.
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let reply = with_authorization(
                &herald,
                Method::GET,
                "/api/v1/app",
                Some(&format!("{scheme} {key}")),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{scheme}: {reply:?}");
        }
    }
}

herald_e2e::e2e_tests! {
    async fn unknown_api_keys_get_401() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let real = herald.tenant.key.clone();
        // Same shape and prefix as a real key, one character different.
        let mut almost = real.clone();
        let last = almost.pop().expect("non-empty key");
        almost.push(if last == 'a' { 'b' } else { 'a' });
        for key in [
            "hsk_0000000000000000000000000000000",
            almost.as_str(),
            "not-a-key",
            "a.b.c",
        ] {
            let reply = herald
                .request(Method::GET, "/api/v1/app", Some(key), None)
                .await;
            assert_unauthorized(&reply, &format!("key {key:?}"));
        }
    }
}

herald_e2e::e2e_tests! {
    async fn revoked_key_gets_401_and_a_second_key_keeps_working() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let tenant = herald.tenant.clone();
        let admin = Some(herald.admin_token.as_str());
        let keys_path = format!("/admin/v1/tenants/{}/keys", tenant.id);

        // A second key for the same tenant, usable at once, seeing the same objects.
        let second = herald
            .request(
                Method::POST,
                &keys_path,
                admin,
                Some(json!({"name": "rotation"})),
            )
            .await;
        assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
        let second_key = str_field(&second.body, "key");
        assert!(second_key.starts_with("hsk_"), "{second_key}");
        assert_ne!(second_key, tenant.key);
        create_app(&herald, "Before rotation", "before-rotation").await;
        let seen = herald
            .request(
                Method::GET,
                "/api/v1/app/before-rotation",
                Some(&second_key),
                None,
            )
            .await;
        assert_eq!(
            seen.status,
            StatusCode::OK,
            "second key sees the tenant's app: {seen:?}"
        );

        // Find the first key's id by its prefix.
        let listed = herald.request(Method::GET, &keys_path, admin, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
        let keys = listed.body.as_array().expect("array of keys").clone();
        assert_eq!(keys.len(), 2, "{keys:?}");
        let first = keys
            .iter()
            .find(|k| {
                tenant
                    .key
                    .starts_with(k["prefix"].as_str().unwrap_or("\u{0}"))
            })
            .unwrap_or_else(|| panic!("first key not listed by prefix: {keys:?}"));
        let first_id = str_field(first, "id");

        let revoked = herald
            .request(
                Method::DELETE,
                &format!("{keys_path}/{first_id}"),
                admin,
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");

        // The revoked key stops working at once, everywhere.
        for (method, path) in [
            (Method::GET, "/api/v1/app"),
            (Method::GET, "/api/v1/app/before-rotation"),
            (
                Method::POST,
                "/api/v1/auth/app-portal-access/before-rotation",
            ),
        ] {
            let body = (method == Method::POST).then(|| json!({}));
            let reply = herald
                .request(method.clone(), path, Some(&tenant.key), body)
                .await;
            assert_unauthorized(&reply, &format!("revoked key on {method} {path}"));
        }

        // The second key keeps working, for reads and writes, again and again.
        for round in 0..3 {
            let list = herald
                .request(Method::GET, "/api/v1/app", Some(&second_key), None)
                .await;
            assert_eq!(list.status, StatusCode::OK, "round {round}: {list:?}");
            let created = herald
                .request(
                    Method::POST,
                    "/api/v1/app",
                    Some(&second_key),
                    Some(json!({"name": format!("After rotation {round}")})),
                )
                .await;
            assert_eq!(
                created.status,
                StatusCode::CREATED,
                "round {round}: {created:?}"
            );
        }

        // The listing records the revocation.
        let listed = herald.request(Method::GET, &keys_path, admin, None).await;
        let keys = listed.body.as_array().expect("array of keys");
        for key in keys {
            let is_first = key["id"] == first_id.as_str();
            assert_eq!(key["revokedAt"].is_string(), is_first, "{key}");
        }
    }
}

herald_e2e::e2e_tests! {
    async fn app_token_can_use_its_own_application_by_id_or_uid() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let et = herald
            .post(
                "/api/v1/event-type",
                json!({"name": "user.signup", "description": "signup"}),
            )
            .await;
        assert_eq!(et.status, StatusCode::CREATED, "{et:?}");
        let app_id = create_app(&herald, "Portal", "portal").await;

        // Issued by id ...
        let reply = herald
            .post(
                &format!("/api/v1/auth/app-portal-access/{app_id}"),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let by_id = str_field(&reply.body, "token");
        let url = str_field(&reply.body, "url");
        assert_eq!(url, format!("{}/console#token={by_id}", herald.url), "the portal");
        // ... and by uid, for the same application.
        let by_uid = app_token(&herald, "portal", json!({})).await;

        for token in [&by_id, &by_uid] {
            for path in [
                format!("/api/v1/app/{app_id}"),
                "/api/v1/app/portal".to_owned(),
            ] {
                let got = as_token(&herald, token, Method::GET, &path, None).await;
                assert_eq!(got.status, StatusCode::OK, "GET {path}: {got:?}");
                assert_eq!(got.body["id"], app_id.as_str());
            }

            // Endpoints of its app: create, list, get, patch, delete.
            let base = format!("/api/v1/app/{app_id}/endpoint");
            let created = as_token(
                &herald,
                token,
                Method::POST,
                &base,
                Some(json!({"url": "https://example.com/hook", "filterTypes": ["user.signup"]})),
            )
            .await;
            assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
            let ep_id = str_field(&created.body, "id");
            let listed = as_token(&herald, token, Method::GET, &base, None).await;
            assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
            let ids: Vec<&Value> = listed.body["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| &e["id"])
                .collect();
            assert_eq!(ids, vec![&json!(ep_id)], "{listed:?}");
            let ep_path = format!("{base}/{ep_id}");
            let got = as_token(&herald, token, Method::GET, &ep_path, None).await;
            assert_eq!(got.status, StatusCode::OK, "{got:?}");
            assert_eq!(got.body, created.body);
            let patched = as_token(
                &herald,
                token,
                Method::PATCH,
                &ep_path,
                Some(json!({"description": "from the portal"})),
            )
            .await;
            assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
            assert_eq!(patched.body["description"], "from the portal");
            let deleted = as_token(&herald, token, Method::DELETE, &ep_path, None).await;
            assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
            let gone = as_token(&herald, token, Method::GET, &ep_path, None).await;
            assert_not_found(&gone, "deleted endpoint");

            // Event types are readable (the portal needs them to build filters).
            let types = as_token(&herald, token, Method::GET, "/api/v1/event-type", None).await;
            assert_eq!(types.status, StatusCode::OK, "{types:?}");
            let names: Vec<&Value> = types.body["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| &e["name"])
                .collect();
            assert_eq!(names, vec![&json!("user.signup")], "{types:?}");
            let one = as_token(
                &herald,
                token,
                Method::GET,
                "/api/v1/event-type/user.signup",
                None,
            )
            .await;
            assert_eq!(one.status, StatusCode::OK, "{one:?}");
            assert_eq!(one.body["name"], "user.signup");
        }
    }
}

herald_e2e::e2e_tests! {
    async fn app_portal_access_url_points_at_this_server() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        create_app(&herald, "Portal", "portal").await;
        let reply = herald
            .post("/api/v1/auth/app-portal-access/portal", json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let token = str_field(&reply.body, "token");
        let url = str_field(&reply.body, "url");
        // No HERALD_PUBLIC_URL is set, so the default is where the server listens
        // (the harness binds port 0 and reads the real port from the start-up line).
        assert_eq!(
            url,
            format!("{}/console#token={token}", herald.url),
            "the portal url must reach this server"
        );
    }
}

herald_e2e::e2e_tests! {
    async fn app_portal_access_with_an_application_creates_it_for_a_new_uid() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        // Without `application`, an unknown uid is a 404 and nothing is created.
        let missing = herald
            .post("/api/v1/auth/app-portal-access/new-customer", json!({}))
            .await;
        assert_not_found(&missing, "unknown uid without application");
        assert_eq!(herald.count_rows("application").await, 0);

        let token = app_token(
            &herald,
            "new-customer",
            json!({"application": {"name": "x"}}),
        )
        .await;
        let app = herald.get("/api/v1/app/new-customer").await;
        assert_eq!(app.status, StatusCode::OK, "the app was created: {app:?}");
        assert_eq!(app.body["name"], "x");
        assert_eq!(app.body["uid"], "new-customer");
        assert_eq!(herald.count_rows("application").await, 1);

        // The token is for the new app.
        let seen = as_token(
            &herald,
            &token,
            Method::GET,
            "/api/v1/app/new-customer",
            None,
        )
        .await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        assert_eq!(seen.body["id"], app.body["id"]);

        // Asking again with `application` reuses the app instead of creating another.
        app_token(
            &herald,
            "new-customer",
            json!({"application": {"name": "other"}}),
        )
        .await;
        assert_eq!(herald.count_rows("application").await, 1);
        assert_eq!(
            herald.get("/api/v1/app/new-customer").await.body["name"],
            "x"
        );
    }
}

/// POST with an `idempotency-key`, authenticated by `token`.
async fn post_idempotent(
    herald: &Herald,
    token: &str,
    key: &str,
    path: &str,
    body: Value,
) -> Reply {
    let response = herald
        .http
        .post(format!("{}{path}", herald.url))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("request reaches herald");
    Herald::reply(response).await
}

herald_e2e::e2e_tests! {
    async fn revoked_key_cannot_replay_idempotent_responses() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let tenant = herald.tenant.clone();
        let admin = Some(herald.admin_token.as_str());
        let keys_path = format!("/admin/v1/tenants/{}/keys", tenant.id);
        create_app(&herald, "Portal", "portal").await;

        // While the key is valid: an app, and an app token, each under an idempotency key.
        let app = post_idempotent(
            &herald,
            &tenant.key,
            "replay-app",
            "/api/v1/app",
            json!({"name": "Replayed"}),
        )
        .await;
        assert_eq!(app.status, StatusCode::CREATED, "{app:?}");
        let portal_path = "/api/v1/auth/app-portal-access/portal";
        let access =
            post_idempotent(&herald, &tenant.key, "replay-token", portal_path, json!({})).await;
        assert_eq!(access.status, StatusCode::OK, "{access:?}");

        let listed = herald.request(Method::GET, &keys_path, admin, None).await;
        let key_id = str_field(&listed.body[0], "id");
        let revoked = herald
            .request(
                Method::DELETE,
                &format!("{keys_path}/{key_id}"),
                admin,
                None,
            )
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");

        // The same requests again: the key is revoked, so they must be refused,
        // not answered from the idempotency cache (which, among other things,
        // hands the revoked key an app-scoped token that is valid for days).
        let app_again = post_idempotent(
            &herald,
            &tenant.key,
            "replay-app",
            "/api/v1/app",
            json!({"name": "Replayed"}),
        )
        .await;
        let access_again =
            post_idempotent(&herald, &tenant.key, "replay-token", portal_path, json!({})).await;
        assert_eq!(
            (app_again.status, access_again.status),
            (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
            "a revoked key replayed cached responses:\nPOST /api/v1/app: {app_again:?}\n\
             POST {portal_path}: {access_again:?}"
        );
        assert_unauthorized(&app_again, "revoked key replaying POST /api/v1/app");
        assert_unauthorized(&access_again, "revoked key replaying app-portal-access");
    }
}

herald_e2e::e2e_tests! {
    async fn app_token_is_refused_on_organisation_routes_with_403() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "Portal", "portal").await;
        let token = app_token(&herald, &app_id, json!({})).await;
        let own = format!("/api/v1/app/{app_id}");

        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/api/v1/app".into(), None),
            (
                Method::POST,
                "/api/v1/app".into(),
                Some(json!({"name": "Sneaky"})),
            ),
            (
                Method::POST,
                "/api/v1/event-type".into(),
                Some(json!({"name": "sneaky.event", "description": "no"})),
            ),
            (Method::PUT, own.clone(), Some(json!({"name": "Renamed"}))),
            (Method::PATCH, own.clone(), Some(json!({"name": "Renamed"}))),
            (Method::DELETE, own.clone(), None),
            (
                Method::POST,
                format!("/api/v1/auth/app-portal-access/{app_id}"),
                Some(json!({})),
            ),
            (
                Method::POST,
                "/api/v1/auth/app-portal-access/portal".into(),
                Some(json!({})),
            ),
        ];
        for (method, path, body) in attempts {
            let reply = as_token(&herald, &token, method.clone(), &path, body).await;
            assert_forbidden(&reply, &format!("app token on {method} {path}"));
        }

        // Nothing changed.
        let app = herald.get(&own).await;
        assert_eq!(app.status, StatusCode::OK, "{app:?}");
        assert_eq!(app.body["name"], "Portal");
        assert_eq!(herald.count_rows("application").await, 1);
        assert_eq!(herald.count_rows("event_type").await, 0);
    }
}

herald_e2e::e2e_tests! {
    async fn app_token_gets_404_for_other_applications() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "Mine", "mine").await;
        let other_id = create_app(&herald, "Other", "other").await;
        let ep = herald
            .post(
                &format!("/api/v1/app/{other_id}/endpoint"),
                json!({"url": "https://example.com/other"}),
            )
            .await;
        assert_eq!(ep.status, StatusCode::CREATED, "{ep:?}");
        let other_ep = str_field(&ep.body, "id");
        let token = app_token(&herald, &app_id, json!({})).await;

        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/api/v1/app/{other_id}"), None),
            (Method::GET, "/api/v1/app/other".into(), None),
            (
                Method::GET,
                format!("/api/v1/app/{other_id}/endpoint"),
                None,
            ),
            (
                Method::POST,
                format!("/api/v1/app/{other_id}/endpoint"),
                Some(json!({"url": "https://example.com/sneaky"})),
            ),
            (
                Method::GET,
                format!("/api/v1/app/{other_id}/endpoint/{other_ep}"),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/v1/app/{other_id}/endpoint/{other_ep}"),
                Some(json!({"description": "sneaky"})),
            ),
            (
                Method::DELETE,
                format!("/api/v1/app/{other_id}/endpoint/{other_ep}"),
                None,
            ),
            (
                Method::GET,
                format!("/api/v1/app/{other_id}/endpoint/{other_ep}/secret"),
                None,
            ),
            // Its own app's path with another app's endpoint id.
            (
                Method::GET,
                format!("/api/v1/app/{app_id}/endpoint/{other_ep}"),
                None,
            ),
        ];
        for (method, path, body) in attempts {
            let reply = as_token(&herald, &token, method.clone(), &path, body).await;
            assert_not_found(&reply, &format!("app token on {method} {path}"));
        }
        assert_eq!(
            herald.count_rows("endpoint").await,
            1,
            "the other app's endpoint is untouched"
        );

        // An app of another tenant is just as invisible.
        let tenant_b = herald.create_tenant("second").await;
        let b_app = herald
            .request(
                Method::POST,
                "/api/v1/app",
                Some(&tenant_b.key),
                Some(json!({"name": "B", "uid": "mine"})),
            )
            .await;
        assert_eq!(b_app.status, StatusCode::CREATED, "{b_app:?}");
        let b_id = str_field(&b_app.body, "id");
        let reply = as_token(
            &herald,
            &token,
            Method::GET,
            &format!("/api/v1/app/{b_id}"),
            None,
        )
        .await;
        assert_not_found(&reply, "app token on another tenant's app");
        // The same uid resolves to the token's own app, never the other tenant's.
        let reply = as_token(&herald, &token, Method::GET, "/api/v1/app/mine", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["id"], app_id.as_str());
    }
}

herald_e2e::e2e_tests! {
    async fn tampered_app_tokens_get_401() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "Mine", "mine").await;
        let other_id = create_app(&herald, "Other", "other").await;
        let token = app_token(&herald, &app_id, json!({})).await;
        let other_token = app_token(&herald, &other_id, json!({})).await;
        let path = format!("/api/v1/app/{app_id}");
        assert_eq!(
            as_token(&herald, &token, Method::GET, &path, None)
                .await
                .status,
            StatusCode::OK
        );

        // One character of the signature changed.
        let (signed, signature) = token.rsplit_once('.').expect("three segments");
        let mut flipped: Vec<char> = signature.chars().collect();
        flipped[0] = if flipped[0] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{signed}.{}", flipped.into_iter().collect::<String>());
        assert_ne!(tampered, token);
        let reply = as_token(&herald, &tampered, Method::GET, &path, None).await;
        assert_unauthorized(&reply, "token with a flipped signature character");

        // The signature cut off, or removed entirely.
        for broken in [
            format!("{signed}."),
            format!("{signed}.{}", &signature[..signature.len() / 2]),
        ] {
            let reply = as_token(&herald, &broken, Method::GET, &path, None).await;
            assert_unauthorized(&reply, &format!("token {broken:?}"));
        }

        // Claims of one valid token with the signature of another: a forged grant
        // for the other app is refused, not honoured.
        let mut parts = token.split('.');
        let (header, _, sig) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let other_claims = other_token.split('.').nth(1).unwrap();
        let forged = format!("{header}.{other_claims}.{sig}");
        let reply = as_token(
            &herald,
            &forged,
            Method::GET,
            &format!("/api/v1/app/{other_id}"),
            None,
        )
        .await;
        assert_unauthorized(&reply, "claims swapped between two tokens");

        // An unsigned ("alg": "none") token built from real claims.
        // {"alg":"none","typ":"JWT"} in base64url:
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{other_claims}.");
        let reply = as_token(
            &herald,
            &none,
            Method::GET,
            &format!("/api/v1/app/{other_id}"),
            None,
        )
        .await;
        assert_unauthorized(&reply, "alg=none token");
    }
}

herald_e2e::e2e_tests! {
    async fn app_portal_access_expiry_must_be_at_least_an_hour() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        create_app(&herald, "Portal", "portal").await;
        for expiry in [0, 1, 60, 3599] {
            let reply = herald
                .post(
                    "/api/v1/auth/app-portal-access/portal",
                    json!({"expiry": expiry}),
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "expiry {expiry}: {reply:?}"
            );
            let detail = reply.body["detail"]
                .as_array()
                .unwrap_or_else(|| panic!("{reply:?}"));
            assert!(
                detail.iter().any(|d| d["loc"]
                    .as_array()
                    .is_some_and(|loc| loc.iter().any(|l| l == "expiry"))),
                "the error points at expiry: {reply:?}"
            );
        }
        // Beyond seven days is refused too.
        let too_long = herald
            .post(
                "/api/v1/auth/app-portal-access/portal",
                json!({"expiry": 7 * 24 * 3600 + 1}),
            )
            .await;
        assert_eq!(
            too_long.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{too_long:?}"
        );
        // Exactly an hour and exactly seven days are fine, and the token works.
        for expiry in [3600, 7 * 24 * 3600] {
            let token = app_token(&herald, "portal", json!({"expiry": expiry})).await;
            let got = as_token(&herald, &token, Method::GET, "/api/v1/app/portal", None).await;
            assert_eq!(got.status, StatusCode::OK, "expiry {expiry}: {got:?}");
        }
    }
}

herald_e2e::e2e_tests! {
    async fn app_token_cannot_use_the_admin_api() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "Portal", "portal").await;
        let token = app_token(&herald, &app_id, json!({})).await;
        let tenant_id = herald.tenant.id.clone();
        for (method, path, body) in [
            (Method::GET, "/admin/v1/tenants".to_owned(), None),
            (
                Method::POST,
                "/admin/v1/tenants".to_owned(),
                Some(json!({"name": "evil"})),
            ),
            (Method::GET, format!("/admin/v1/tenants/{tenant_id}"), None),
            (
                Method::GET,
                format!("/admin/v1/tenants/{tenant_id}/keys"),
                None,
            ),
            (
                Method::POST,
                format!("/admin/v1/tenants/{tenant_id}/keys"),
                Some(json!({})),
            ),
        ] {
            let reply = as_token(&herald, &token, method.clone(), &path, body).await;
            assert_unauthorized(&reply, &format!("app token on {method} {path}"));
        }
        assert_eq!(herald.count_rows("tenant").await, 1);
        assert_eq!(herald.count_rows("api_key").await, 1);
    }
}

/// A request to send with a given set of `Authorization` headers.
struct Call {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    idempotency_key: Option<&'static str>,
}

impl Call {
    fn new(method: Method, path: &'static str, body: Option<Value>) -> Self {
        Self {
            method,
            path,
            body,
            idempotency_key: None,
        }
    }

    /// Sends it with each of `authorizations` as an `Authorization` header of
    /// its own.
    async fn send(&self, herald: &Herald, authorizations: &[String]) -> Reply {
        let url = format!("{}{}", herald.url, self.path);
        let mut request = herald.http.request(self.method.clone(), url);
        for value in authorizations {
            // `header` appends: each value is a header of its own.
            request = request.header("authorization", value);
        }
        if let Some(key) = self.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        Herald::reply(request.send().await.expect("request reaches herald")).await
    }
}

herald_e2e::e2e_tests! {
    async fn two_authorization_headers_get_400_and_nothing_is_done() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app = create_app(&herald, "Owner", "owner").await;
        let app_token = app_token(&herald, &app, json!({})).await;
        let bearer = |token: &str| format!("Bearer {token}");
        let tenant = bearer(&herald.tenant.key);
        let admin = bearer(&herald.admin_token);
        let unknown = bearer("hsk_unknownunknownunknownunknown1");
        let apps_before = herald.count_rows("application").await;
        let tenants_before = herald.count_rows("tenant").await;

        let new_app = json!({"name": "Twice", "uid": "twice"});
        let create_app = Call::new(Method::POST, "/api/v1/app", Some(new_app.clone()));
        let idempotent_create = Call {
            // Through the idempotency middleware, which authenticates first.
            idempotency_key: Some("dup-auth-1"),
            ..Call::new(Method::POST, "/api/v1/app", Some(new_app))
        };
        let list_apps = Call::new(Method::GET, "/api/v1/app", None);
        let read_app = Call::new(Method::GET, "/api/v1/app/owner", None);
        let create_tenant = Call::new(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "twice"})),
        );
        // Both valid, valid then invalid, invalid then valid, two kinds of
        // credential: which one a proxy in front looked at is unknowable.
        let tenant_pairs = [
            [tenant.clone(), tenant.clone()],
            [tenant.clone(), unknown.clone()],
            [unknown.clone(), tenant.clone()],
            [bearer(&app_token), tenant.clone()],
        ];
        let mut cases = Vec::new();
        for pair in &tenant_pairs {
            cases.extend([(&create_app, pair.clone()), (&list_apps, pair.clone())]);
        }
        cases.extend([
            (&idempotent_create, [tenant.clone(), unknown.clone()]),
            (&read_app, [bearer(&app_token), bearer(&app_token)]),
            (&create_tenant, [admin.clone(), admin.clone()]),
            (&create_tenant, [admin.clone(), unknown.clone()]),
        ]);

        for (call, pair) in cases {
            let reply = call.send(&herald, &pair).await;
            let what = format!("{} {} with Authorization {pair:?}", call.method, call.path);
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {reply:?}");
            assert_eq!(reply.body["code"], "duplicate_authorization", "{what}: {reply:?}");
            assert!(reply.body["detail"].is_string(), "{what}: {reply:?}");
        }
        assert_eq!(herald.count_rows("application").await, apps_before);
        assert_eq!(herald.count_rows("tenant").await, tenants_before);

        // One header of the same value is fine, so the count is the reason;
        // and the idempotency key was never claimed.
        let once = idempotent_create.send(&herald, std::slice::from_ref(&tenant)).await;
        assert_eq!(once.status, StatusCode::CREATED, "{once:?}");
    }
}
