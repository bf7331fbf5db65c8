//! The lifetime of an app-scoped token beyond its expiry: `POST
//! /api/v1/auth/logout` revokes the token it is called with (and no other),
//! and a token is refused before its `nbf` time.

use herald_e2e::{Herald, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn create_app(herald: &Herald, uid: &str) -> String {
    let reply = herald
        .post("/api/v1/app", json!({"name": uid, "uid": uid}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.body["id"].as_str().expect("app id").to_owned()
}

async fn app_token(herald: &Herald, app: &str) -> String {
    let reply = herald
        .post(&format!("/api/v1/auth/app-portal-access/{app}"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["token"].as_str().expect("token").to_owned()
}

async fn as_token(herald: &Herald, token: &str, method: Method, path: &str) -> StatusCode {
    herald.request(method, path, Some(token), None).await.status
}

herald_e2e::e2e_tests! {
    async fn logout_revokes_the_app_token_it_is_called_with_and_no_other() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "portal").await;
        let own = format!("/api/v1/app/{app_id}");
        let leaving = app_token(&herald, &app_id).await;
        let staying = app_token(&herald, &app_id).await;
        assert_ne!(leaving, staying, "two tokens must be told apart");
        assert_eq!(as_token(&herald, &leaving, Method::GET, &own).await, StatusCode::OK);

        let reply = herald
            .request(Method::POST, "/api/v1/auth/logout", Some(&leaving), None)
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");

        let refused = herald.request(Method::GET, &own, Some(&leaving), None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(refused.body["code"], "authentication_failed");
        assert_eq!(
            as_token(&herald, &leaving, Method::POST, "/api/v1/auth/logout").await,
            StatusCode::UNAUTHORIZED,
            "a logged-out token cannot log out again"
        );
        assert_eq!(
            as_token(&herald, &staying, Method::GET, &own).await,
            StatusCode::OK,
            "another token of the same application still works"
        );
        assert_eq!(herald.get(&own).await.status, StatusCode::OK, "the tenant key still works");
    }
}

herald_e2e::e2e_tests! {
    async fn a_logout_holds_across_a_restart_of_the_api() {
        let Some(mut herald) = Herald::start().await else {
            return;
        };
        let app_id = create_app(&herald, "portal").await;
        let token = app_token(&herald, &app_id).await;
        let reply = herald
            .request(Method::POST, "/api/v1/auth/logout", Some(&token), None)
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
        herald.restart().await;
        assert_eq!(
            as_token(&herald, &token, Method::GET, &format!("/api/v1/app/{app_id}")).await,
            StatusCode::UNAUTHORIZED,
            "the revocation is stored, not only cached"
        );
    }
}

/// Signs app-token claims with the server's configured secret, as Herald does.
fn sign(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign claims")
}

herald_e2e::e2e_tests! {
    async fn a_token_is_refused_before_its_not_before_time() {
        let secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
        let Some(herald) = Herald::start_with(Options {
            env: vec![("HERALD_JWT_SECRET".into(), secret.clone())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let app_id = create_app(&herald, "portal").await;
        let own = format!("/api/v1/app/{app_id}");
        let now = chrono::Utc::now().timestamp();
        let claims = |nbf: Option<i64>| {
            let mut claims = json!({
                "iss": "herald",
                "sub": app_id,
                "tenant": herald.tenant.id,
                "jti": uuid::Uuid::new_v4().simple().to_string(),
                "iat": now,
                "exp": now + 3_600,
            });
            if let Some(nbf) = nbf {
                claims["nbf"] = json!(nbf);
            }
            claims
        };

        // The claims are right: without nbf, or with one that has passed, they work.
        for nbf in [None, Some(now - 60)] {
            let token = sign(&secret, claims(nbf));
            assert_eq!(as_token(&herald, &token, Method::GET, &own).await, StatusCode::OK, "nbf {nbf:?}");
        }
        let early = sign(&secret, claims(Some(now + 600)));
        let reply = herald.request(Method::GET, &own, Some(&early), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.body["code"], "authentication_failed");
    }
}
