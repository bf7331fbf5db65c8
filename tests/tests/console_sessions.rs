//! The console's sessions and the app portal's capabilities, over HTTP
//! (docs/console.md): a key or portal token is exchanged for a cookie that
//! works on `/api/v1` with the same scoping, changes need the CSRF header,
//! signing out ends the session everywhere, and a token's capabilities bind
//! its bearer and its portal session alike. The browser side is
//! tests/tests/console.rs.

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use herald_e2e::{Herald, Reply};

mod common;

/// A console session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    body: Value,
}

/// Opens a session with `credential` (`{"key": …}` or `{"token": …}`).
async fn open(herald: &Herald, credential: Value) -> Result<Session, Reply> {
    let response = herald
        .http
        .post(format!("{}/console/api/session", herald.url))
        .json(&credential)
        .send()
        .await
        .expect("request reaches herald");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let reply = Herald::reply(response).await;
    if reply.status != StatusCode::OK {
        return Err(reply);
    }
    let set_cookie = set_cookie.expect("a session sets its cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // Plain http here: a Secure cookie would never come back.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("herald_console="), "{cookie}");
    Ok(Session {
        cookie,
        csrf: reply.body["csrfToken"].as_str().unwrap().to_owned(),
        body: reply.body,
    })
}

impl Session {
    /// A request with the session's cookie, and its CSRF token when `csrf`.
    async fn call(
        &self,
        herald: &Herald,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&self.cookie).unwrap());
        if csrf {
            headers.insert("x-herald-csrf", HeaderValue::from_str(&self.csrf).unwrap());
        }
        let mut request = herald
            .http
            .request(method, format!("{}{path}", herald.url))
            .headers(headers);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Herald::reply(request.send().await.expect("request reaches herald")).await
    }
}

async fn app(herald: &Herald, uid: &str) -> String {
    let reply = herald
        .post("/api/v1/app", json!({"name": uid, "uid": uid}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn endpoint(herald: &Herald, app: &str) -> String {
    let reply = herald
        .post(
            &format!("/api/v1/app/{app}/endpoint"),
            json!({"url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn portal_token(herald: &Herald, app: &str, request: Value) -> String {
    let reply = herald
        .post(&format!("/api/v1/auth/app-portal-access/{app}"), request)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["token"].as_str().unwrap().to_owned()
}

herald_e2e::e2e_tests! {
    async fn a_tenant_session_uses_the_api_with_csrf_and_ends_on_sign_out() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app(&herald, "shop").await;

        let refused = open(&herald, json!({"key": "hsk_not_a_key"})).await.err().unwrap();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        let both = open(&herald, json!({"key": herald.tenant.key, "token": "x"}))
            .await
            .err()
            .unwrap();
        assert_eq!(both.status, StatusCode::BAD_REQUEST, "{both:?}");

        let session = open(&herald, json!({"key": herald.tenant.key})).await.ok().unwrap();
        assert_eq!(session.body["scope"], "tenant", "{:?}", session.body);
        assert_eq!(session.body["tenantId"], herald.tenant.id.as_str());
        assert_eq!(session.body["readOnly"], false);
        let me = session
            .call(&herald, Method::GET, "/console/api/session", None, false)
            .await;
        assert_eq!(me.status, StatusCode::OK, "{me:?}");
        assert_eq!(me.body["csrfToken"], session.body["csrfToken"]);

        // The cookie reads what the key reads.
        let apps = session.call(&herald, Method::GET, "/api/v1/app", None, false).await;
        assert_eq!(apps.status, StatusCode::OK, "{apps:?}");
        assert_eq!(apps.body["data"][0]["id"], app_id.as_str());

        // A change without the CSRF header is refused and stores nothing.
        let path = format!("/api/v1/app/{app_id}/endpoint");
        let body = json!({"url": "https://example.com/a"});
        let forged = session
            .call(&herald, Method::POST, &path, Some(body.clone()), false)
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
        assert_eq!(forged.body["code"], "csrf_failed");
        let wrong = Session {
            csrf: "not-the-token".into(),
            cookie: session.cookie.clone(),
            body: Value::Null,
        };
        let forged = wrong.call(&herald, Method::POST, &path, Some(body.clone()), true).await;
        assert_eq!(forged.body["code"], "csrf_failed", "{forged:?}");
        assert_eq!(herald.get(&path).await.body["data"], json!([]));
        let created = session.call(&herald, Method::POST, &path, Some(body), true).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");

        // A session cookie is not a bearer token, and an Authorization header
        // wins over the cookie.
        let cookie_value = session.cookie.split_once('=').unwrap().1;
        let as_bearer = herald.request(Method::GET, "/api/v1/app", Some(cookie_value), None).await;
        assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED, "{as_bearer:?}");

        // Signing out needs the CSRF header too, then the cookie is dead.
        let out = session.call(&herald, Method::DELETE, "/console/api/session", None, false).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{out:?}");
        let out = session.call(&herald, Method::DELETE, "/console/api/session", None, true).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{out:?}");
        let after = session.call(&herald, Method::GET, "/api/v1/app", None, false).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{after:?}");

        // Revoking the key ends the sessions it opened.
        let session = open(&herald, json!({"key": herald.tenant.key})).await.ok().unwrap();
        let keys = herald
            .request(
                Method::GET,
                &format!("/admin/v1/tenants/{}/keys", herald.tenant.id),
                Some(&herald.admin_token),
                None,
            )
            .await;
        let key_id = keys.body[0]["id"].as_str().unwrap().to_owned();
        let revoked = herald
            .request(
                Method::DELETE,
                &format!("/admin/v1/tenants/{}/keys/{key_id}", herald.tenant.id),
                Some(&herald.admin_token),
                None,
            )
            .await;
        assert!(revoked.status.is_success(), "{revoked:?}");
        let ended = common::poll(std::time::Duration::from_secs(10), || async {
            let r = session.call(&herald, Method::GET, "/api/v1/app", None, false).await;
            (r.status == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        assert!(ended.is_some(), "a revoked key's session still works");
    }

    async fn a_portal_session_sees_its_application_only() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let mine = app(&herald, "mine").await;
        let other = app(&herald, "other").await;
        endpoint(&herald, &other).await;
        let token = portal_token(&herald, &mine, json!({"accentColor": "#0a7d45"})).await;
        let session = open(&herald, json!({"token": token})).await.ok().unwrap();
        assert_eq!(session.body["scope"], "app");
        assert_eq!(session.body["appId"], mine.as_str());
        assert_eq!(session.body["accentColor"], "#0a7d45");
        assert_eq!(
            session.body["capabilities"],
            json!(["ViewBase", "ViewEndpointSecret", "ManageEndpointSecret", "CreateAttempts", "ManageEndpoint"])
        );

        let own = session
            .call(&herald, Method::GET, &format!("/api/v1/app/{mine}/endpoint"), None, false)
            .await;
        assert_eq!(own.status, StatusCode::OK, "{own:?}");
        for path in [
            format!("/api/v1/app/{other}"),
            format!("/api/v1/app/{other}/endpoint"),
            "/api/v1/app/other/msg".to_owned(),
        ] {
            let hidden = session.call(&herald, Method::GET, &path, None, false).await;
            assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{path}: {hidden:?}");
        }
        let listing = session.call(&herald, Method::GET, "/api/v1/app", None, false).await;
        assert_eq!(listing.status, StatusCode::FORBIDDEN, "{listing:?}");

        // Logging the token out ends the session it opened.
        let logout = herald
            .request(Method::POST, "/api/v1/auth/logout", Some(&token), None)
            .await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT, "{logout:?}");
        let ended = session
            .call(&herald, Method::GET, &format!("/api/v1/app/{mine}"), None, false)
            .await;
        assert_eq!(ended.status, StatusCode::UNAUTHORIZED, "{ended:?}");

        // Signing out of the portal ends the link's token too.
        let token = portal_token(&herald, &mine, json!({})).await;
        let session = open(&herald, json!({"token": token})).await.ok().unwrap();
        let out = session.call(&herald, Method::DELETE, "/console/api/session", None, true).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{out:?}");
        let by_token = herald
            .request(Method::GET, &format!("/api/v1/app/{mine}"), Some(&token), None)
            .await;
        assert_eq!(by_token.status, StatusCode::UNAUTHORIZED, "{by_token:?}");
        assert!(open(&herald, json!({"token": token})).await.is_err());
    }

    async fn behind_https_the_cookie_is_a_secure_host_cookie() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let response = herald
            .http
            .post(format!("{}/console/api/session", herald.url))
            .header("x-forwarded-proto", "https")
            .json(&json!({"key": herald.tenant.key}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(set_cookie.starts_with("__Host-herald_console="), "{set_cookie}");
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        assert!(!set_cookie.contains("Domain"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap();
        let apps = herald
            .http
            .get(format!("{}/api/v1/app", herald.url))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(apps.status(), StatusCode::OK);
    }

    async fn capabilities_bind_the_token_and_its_portal_session() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app(&herald, "caps").await;
        let ep = endpoint(&herald, &app_id).await;
        let secret_path = format!("/api/v1/app/{app_id}/endpoint/{ep}/secret");
        let secret = herald.get(&secret_path).await.body["key"].clone();
        let msg = herald
            .post(
                &format!("/api/v1/app/{app_id}/msg"),
                json!({"eventType": "e", "payload": {}}),
            )
            .await;
        let msg = msg.body["id"].as_str().unwrap().to_owned();
        let deliveries = format!("/api/v1/app/{app_id}/msg/{msg}/endpoint");
        let before = herald.get(&deliveries).await.body["data"][0].clone();

        let read_only = portal_token(&herald, &app_id, json!({"readOnly": true, "capabilities": ["ManageEndpoint"]})).await;
        let session = open(&herald, json!({"token": read_only})).await.ok().unwrap();
        assert_eq!(session.body["readOnly"], true);
        assert_eq!(session.body["capabilities"], json!(["ViewBase"]));
        let rotate = format!("/api/v1/app/{app_id}/endpoint/{ep}/secret/rotate");
        let resend = format!("/api/v1/app/{app_id}/msg/{msg}/endpoint/{ep}/resend");
        for (method, path, body) in [
            (Method::POST, rotate.as_str(), json!({})),
            (Method::POST, resend.as_str(), json!({})),
            (Method::PATCH, &format!("/api/v1/app/{app_id}/endpoint/{ep}"), json!({"disabled": true})),
            (Method::POST, &format!("/api/v1/app/{app_id}/msg"), json!({"eventType": "e", "payload": {}})),
        ] {
            let by_cookie = session.call(&herald, method.clone(), path, Some(body.clone()), true).await;
            assert_eq!(by_cookie.status, StatusCode::FORBIDDEN, "{path}: {by_cookie:?}");
            assert_eq!(by_cookie.body["code"], "insufficient_capability");
            let by_bearer = herald.request(method, path, Some(&read_only), Some(body)).await;
            assert_eq!(by_bearer.status, StatusCode::FORBIDDEN, "{path}: {by_bearer:?}");
            assert_eq!(by_bearer.body["code"], "insufficient_capability");
        }
        let hidden = session.call(&herald, Method::GET, &secret_path, None, false).await;
        assert_eq!(hidden.status, StatusCode::FORBIDDEN, "{hidden:?}");
        let seen = session
            .call(&herald, Method::GET, &format!("/api/v1/app/{app_id}/endpoint/{ep}"), None, false)
            .await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        // Nothing changed.
        assert_eq!(herald.get(&secret_path).await.body["key"], secret);
        assert_eq!(herald.get(&deliveries).await.body["data"][0], before);
        let endpoint_now = herald.get(&format!("/api/v1/app/{app_id}/endpoint/{ep}")).await;
        assert_eq!(endpoint_now.body["disabled"], false);
        assert_eq!(herald.get(&format!("/api/v1/app/{app_id}/msg")).await.body["data"].as_array().unwrap().len(), 1);

        // Each listed capability opens its own actions and no others.
        let secrets = portal_token(&herald, &app_id, json!({"capabilities": ["ViewEndpointSecret", "ManageEndpointSecret"]})).await;
        let shown = herald.request(Method::GET, &secret_path, Some(&secrets), None).await;
        assert_eq!(shown.body["key"], secret, "{shown:?}");
        let rotated = herald.request(Method::POST, &rotate, Some(&secrets), Some(json!({}))).await;
        assert!(rotated.status.is_success(), "{rotated:?}");
        assert_ne!(herald.get(&secret_path).await.body["key"], secret);
        let resent = herald.request(Method::POST, &resend, Some(&secrets), Some(json!({}))).await;
        assert_eq!(resent.body["code"], "insufficient_capability", "{resent:?}");
        let attempts_token = portal_token(&herald, &app_id, json!({"capabilities": ["CreateAttempts"]})).await;
        let resent = herald.request(Method::POST, &resend, Some(&attempts_token), Some(json!({}))).await;
        assert_eq!(resent.status, StatusCode::ACCEPTED, "{resent:?}");

        // Rotating without ViewEndpointSecret rotates but shows nothing.
        let rotate_only = portal_token(&herald, &app_id, json!({"capabilities": ["ManageEndpointSecret"]})).await;
        let before_rotation = herald.get(&secret_path).await.body["key"].clone();
        let rotated = herald.request(Method::POST, &rotate, Some(&rotate_only), Some(json!({}))).await;
        assert_eq!(rotated.status, StatusCode::NO_CONTENT, "{rotated:?}");
        assert_eq!(rotated.body, Value::Null);
        assert_ne!(herald.get(&secret_path).await.body["key"], before_rotation);
        // A new kind of key is a new secret: ManageEndpoint alone cannot make one.
        let manage = portal_token(&herald, &app_id, json!({"capabilities": ["ManageEndpoint"]})).await;
        let endpoint_path = format!("/api/v1/app/{app_id}/endpoint/{ep}");
        let rekey = herald
            .request(Method::PATCH, &endpoint_path, Some(&manage), Some(json!({"signatureScheme": "ed25519"})))
            .await;
        assert_eq!(rekey.body["code"], "insufficient_capability", "{rekey:?}");
        assert_eq!(herald.get(&endpoint_path).await.body["signatureScheme"], "standard");
        let same_key = herald
            .request(Method::PATCH, &endpoint_path, Some(&manage), Some(json!({"signatureScheme": "github"})))
            .await;
        assert_eq!(same_key.status, StatusCode::OK, "{same_key:?}");

        // Unknown capabilities and colours are refused.
        for bad in [json!({"capabilities": ["Everything"]}), json!({"accentColor": "red; x"})] {
            let reply = herald
                .post(&format!("/api/v1/auth/app-portal-access/{app_id}"), bad)
                .await;
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
        }
    }

    async fn the_console_is_served_with_a_strict_policy() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        for path in ["/console", "/console/", "/console/assets/app.js"] {
            let response = herald
                .http
                .get(format!("{}{path}", herald.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
            for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
                assert!(csp.contains(directive), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        }
        let page = herald.http.get(format!("{}/console", herald.url)).send().await.unwrap();
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains("onclick"), "inline script in the page");
        let script = herald.http.get(format!("{}/console/assets/app.js", herald.url)).send().await.unwrap();
        assert!(script.headers()["content-type"].to_str().unwrap().contains("javascript"));
        let etag = script.headers()["etag"].clone();
        let again = herald
            .http
            .get(format!("{}/console/assets/app.js", herald.url))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let missing = herald.http.get(format!("{}/console/assets/nope.js", herald.url)).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let unauthenticated = herald.http.get(format!("{}/console/api/session", herald.url)).send().await.unwrap();
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    }
}
