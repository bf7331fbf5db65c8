//! Endpoints over HTTP: filters, upsert, null-clearing patches, secrets with
//! rotation, and custom headers with redaction.

use herald_e2e::Herald;
use serde_json::{json, Value};

async fn app_with_event_types(herald: &Herald) -> String {
    for name in ["user.signup", "user.deleted", "invoice.paid"] {
        let reply = herald
            .post(
                "/api/v1/event-type",
                json!({"name": name, "description": name}),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    let app = herald
        .post("/api/v1/app", json!({"name": "Acme", "uid": "acme"}))
        .await;
    assert_eq!(app.status, 201);
    app.body["id"].as_str().unwrap().to_owned()
}

herald_e2e::e2e_tests! {
    async fn endpoint_lifecycle_follows_the_svix_contract() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");

        let created = herald
            .post(
                &base,
                json!({
                    "url": "https://example.com/hook",
                    "uid": "primary",
                    "description": "main receiver",
                    "filterTypes": ["user.signup", "user.deleted"],
                    "channels": ["project_1"],
                    "metadata": {"team": "billing"},
                    "rateLimit": 20,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let ep = created.body;
        let ep_id = ep["id"].as_str().unwrap().to_owned();
        assert!(ep_id.starts_with("ep_"));
        assert_eq!(ep["eventTypes"], json!(["user.signup", "user.deleted"]));
        assert_eq!(ep["filterTypes"], ep["eventTypes"]);
        assert_eq!(ep["channels"], json!(["project_1"]));
        assert_eq!(ep["throttleRate"], 20);
        assert_eq!(ep["rateLimit"], 20);
        assert_eq!(ep["version"], 1);
        assert_eq!(ep["disabled"], false);

        // By id and by uid, also through the app's uid.
        assert_eq!(herald.get(&format!("{base}/{ep_id}")).await.body, ep);
        assert_eq!(
            herald.get("/api/v1/app/acme/endpoint/primary").await.body,
            ep
        );

        // Duplicate uid in the same app conflicts.
        let duplicate = herald
            .post(
                &base,
                json!({"url": "https://example.com/2", "uid": "primary"}),
            )
            .await;
        assert_eq!(duplicate.status, 409);

        // Listing.
        let list = herald.get(&base).await;
        assert_eq!(list.status, 200);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(list.body["done"], true);

        // PATCH: null clears filters, absent fields stay.
        let patched = herald
            .patch(
                &format!("{base}/primary"),
                json!({"eventTypes": null, "disabled": true}),
            )
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(patched.body["eventTypes"], Value::Null);
        assert_eq!(patched.body["channels"], json!(["project_1"]));
        assert_eq!(patched.body["disabled"], true);
        assert_eq!(patched.body["description"], "main receiver");

        // PUT replaces (200) and keeps the secret; creates under a new uid (201).
        let replaced = herald
            .put(
                &format!("{base}/{ep_id}"),
                json!({"url": "https://example.com/v2", "uid": "primary"}),
            )
            .await;
        assert_eq!(replaced.status, 200, "{replaced:?}");
        assert_eq!(replaced.body["url"], "https://example.com/v2");
        assert_eq!(replaced.body["channels"], Value::Null);
        let secret = herald.get(&format!("{base}/{ep_id}/secret")).await;
        assert_eq!(secret.body["key"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let upserted = herald
            .put(
                &format!("{base}/secondary"),
                json!({"url": "http://127.0.0.1:9/"}),
            )
            .await;
        assert_eq!(upserted.status, 201, "{upserted:?}");
        assert_eq!(upserted.body["uid"], "secondary");

        assert_eq!(herald.delete(&format!("{base}/primary")).await.status, 204);
        assert_eq!(herald.get(&format!("{base}/{ep_id}")).await.status, 404);
    }
}

herald_e2e::e2e_tests! {
    async fn rotated_secrets_keep_the_previous_key_valid_for_the_grace_period() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");
        let ep = herald
            .post(&base, json!({"url": "https://example.com/hook"}))
            .await;
        let ep_id = ep.body["id"].as_str().unwrap().to_owned();
        let first = herald.get(&format!("{base}/{ep_id}/secret")).await.body["key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(first.starts_with("whsec_"));

        let rotated = herald
            .post(
                &format!("{base}/{ep_id}/secret/rotate"),
                json!({"gracePeriodSeconds": 3600}),
            )
            .await;
        assert_eq!(rotated.status, 200, "{rotated:?}");
        let second = rotated.body["key"].as_str().unwrap().to_owned();
        assert_ne!(first, second);
        assert_eq!(
            herald.get(&format!("{base}/{ep_id}/secret")).await.body["key"],
            second.as_str()
        );

        // Many rotations keep at most 10 previous keys, the first among them until
        // it is pushed out; a zero grace period keeps none of the rotated-out key.
        for _ in 0..12 {
            let reply = herald
                .post(&format!("{base}/{ep_id}/secret/rotate"), json!({}))
                .await;
            assert_eq!(reply.status, 200);
        }
        let stored = stored_secrets(&herald, &ep_id).await;
        assert_eq!(stored["previous"].as_array().unwrap().len(), 10);
        assert!(
            !stored.to_string().contains(&first),
            "oldest key was dropped"
        );

        let explicit = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let reply = herald
            .post(
                &format!("{base}/{ep_id}/secret/rotate"),
                json!({"key": explicit, "gracePeriodSeconds": 0}),
            )
            .await;
        assert_eq!(reply.body["key"], explicit);
        let stored = stored_secrets(&herald, &ep_id).await;
        assert_eq!(stored["current"], explicit);
        assert_eq!(stored["previous"].as_array().unwrap().len(), 10);
    }
}

async fn stored_secrets(herald: &Herald, ep_id: &str) -> Value {
    let mut conn = herald.db().await;
    let text: String =
        sqlx::query_scalar("SELECT CAST(secrets AS TEXT) FROM endpoint WHERE id = $1")
            .bind(ep_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

herald_e2e::e2e_tests! {
    async fn endpoint_headers_are_replaced_patched_and_redacted() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");
        let ep = herald
            .post(
                &base,
                json!({"url": "https://example.com/hook", "headers": {"X-Initial": "1"}}),
            )
            .await;
        let path = format!("{base}/{}/headers", ep.body["id"].as_str().unwrap());
        assert_eq!(
            herald.get(&path).await.body["headers"],
            json!({"X-Initial": "1"})
        );

        let put = herald
            .put(
                &path,
                json!({"headers": {"X-Team": "billing", "Authorization": "Bearer s3cret"}}),
            )
            .await;
        assert_eq!(put.status, 204, "{put:?}");
        let shown = herald.get(&path).await;
        assert_eq!(shown.body["headers"], json!({"X-Team": "billing"}));
        assert_eq!(shown.body["sensitive"], json!(["Authorization"]));
        assert!(!shown.body.to_string().contains("s3cret"));

        let patch = herald
            .patch(
                &path,
                json!({"headers": {"x-team": null, "X-New": "2"}, "deleteHeaders": ["Authorization"]}),
            )
            .await;
        assert_eq!(patch.status, 204, "{patch:?}");
        let shown = herald.get(&path).await;
        assert_eq!(shown.body["headers"], json!({"X-New": "2"}));
        assert_eq!(shown.body["sensitive"], json!([]));
    }
}

herald_e2e::e2e_tests! {
    async fn concurrent_rotations_and_patches_never_lose_a_secret() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");
        let ep = herald
            .post(&base, json!({"url": "https://example.com/hook"}))
            .await;
        let ep_path = format!("{base}/{}", ep.body["id"].as_str().unwrap());
        let rotate_path = format!("{ep_path}/secret/rotate");
        for round in 0..10 {
            let rotate = herald.post(&rotate_path, json!({}));
            let patch = herald.patch(&ep_path, json!({"description": format!("round {round}")}));
            let (rotated, patched) = tokio::join!(rotate, patch);
            assert_eq!(rotated.status, 200, "{rotated:?}");
            assert_eq!(patched.status, 200, "{patched:?}");
            let current = herald.get(&format!("{ep_path}/secret")).await;
            assert_eq!(
                current.body["key"], rotated.body["key"],
                "round {round}: rotation lost"
            );
            let stored = herald.get(&ep_path).await;
            assert_eq!(stored.body["description"], format!("round {round}"));
        }
    }
}

herald_e2e::e2e_tests! {
    async fn put_by_uid_is_repeatable() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let path = format!("/api/v1/app/{app_id}/endpoint/sync-ep");
        let first = herald
            .put(&path, json!({"url": "https://example.com/a"}))
            .await;
        assert_eq!(first.status, 201);
        for _ in 0..2 {
            let again = herald
                .put(&path, json!({"url": "https://example.com/a"}))
                .await;
            assert_eq!(again.status, 200, "{again:?}");
            assert_eq!(again.body["id"], first.body["id"]);
            assert_eq!(again.body["uid"], "sync-ep");
        }
        let apps = herald
            .put("/api/v1/app/sync-app", json!({"name": "x"}))
            .await;
        assert_eq!(apps.status, 201);
        let again = herald
            .put("/api/v1/app/sync-app", json!({"name": "y"}))
            .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body["id"], apps.body["id"]);
        assert_eq!(again.body["uid"], "sync-app");
        assert_eq!(herald.count_rows("application").await, 2);
    }
}
