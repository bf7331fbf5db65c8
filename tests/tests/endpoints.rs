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

herald_e2e::e2e_tests! {
    /// `signatureScheme` and `signatureOptions` through create, get, list, PUT
    /// and PATCH; an `ed25519` endpoint shows only its public key.
    async fn signature_schemes_are_chosen_per_endpoint() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");
        let url = "https://example.com/hook";

        // Omitted means standard, with a whsec_ secret: what Svix clients get.
        let plain = herald.post(&base, json!({"url": url})).await;
        assert_eq!(plain.status, 201, "{plain:?}");
        assert_eq!(plain.body["signatureScheme"], "standard");
        assert_eq!(plain.body["signatureOptions"], Value::Null);
        let plain_id = plain.body["id"].as_str().unwrap().to_owned();
        let secret = herald.get(&format!("{base}/{plain_id}/secret")).await;
        assert!(secret.body["key"].as_str().unwrap().starts_with("whsec_"));

        for scheme in ["standard", "stripe", "github", "shopify", "slack"] {
            let created = herald
                .post(&base, json!({"url": url, "signatureScheme": scheme}))
                .await;
            assert_eq!(created.status, 201, "{created:?}");
            assert_eq!(created.body["signatureScheme"], scheme);
            let id = created.body["id"].as_str().unwrap();
            let fetched = herald.get(&format!("{base}/{id}")).await;
            assert_eq!(fetched.body, created.body);
        }

        let hmac = herald
            .post(
                &base,
                json!({
                    "url": url,
                    "signatureScheme": "hmac",
                    "signatureOptions": {"header": "X-Acme-Signature", "algorithm": "sha512"},
                }),
            )
            .await;
        assert_eq!(hmac.status, 201, "{hmac:?}");
        assert_eq!(
            hmac.body["signatureOptions"],
            json!({"header": "X-Acme-Signature", "algorithm": "sha512", "encoding": "hex"})
        );
        let hmac_id = hmac.body["id"].as_str().unwrap().to_owned();

        // ed25519: a generated key pair; only the public key is ever shown.
        let ed = herald
            .post(&base, json!({"url": url, "signatureScheme": "ed25519"}))
            .await;
        assert_eq!(ed.status, 201, "{ed:?}");
        let ed_id = ed.body["id"].as_str().unwrap().to_owned();
        let public = herald.get(&format!("{base}/{ed_id}/secret")).await;
        let public = public.body["key"].as_str().unwrap().to_owned();
        assert!(public.starts_with("whpk_"), "{public}");
        assert!(herald_signature::VerifyingKey::parse(&public).is_ok());
        let rotated = herald
            .post(&format!("{base}/{ed_id}/secret/rotate"), json!({}))
            .await;
        assert_eq!(rotated.status, 200, "{rotated:?}");
        let new_public = rotated.body["key"].as_str().unwrap();
        assert!(new_public.starts_with("whpk_") && new_public != public);

        // A tenant's own key pair is accepted; the response shows its public half.
        let pair = herald_signature::ed25519::SecretKey::generate();
        let own = herald
            .post(
                &base,
                json!({"url": url, "signatureScheme": "ed25519", "secret": pair.to_text()}),
            )
            .await;
        assert_eq!(own.status, 201, "{own:?}");
        let own_id = own.body["id"].as_str().unwrap();
        assert_eq!(
            herald.get(&format!("{base}/{own_id}/secret")).await.body["key"],
            pair.public_key().to_text()
        );

        // Listing shows the schemes too.
        let list = herald.get(&format!("{base}?limit=50")).await;
        let schemes: Vec<&str> = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ep| ep["signatureScheme"].as_str().unwrap())
            .collect();
        assert!(schemes.contains(&"ed25519") && schemes.contains(&"hmac"), "{schemes:?}");

        // PUT without the field keeps the scheme (clients that don't know it).
        let put = herald
            .put(&format!("{base}/{hmac_id}"), json!({"url": "https://example.com/2"}))
            .await;
        assert_eq!(put.status, 200, "{put:?}");
        assert_eq!(put.body["signatureScheme"], "hmac");
        assert_eq!(put.body["signatureOptions"]["algorithm"], "sha512");

        // PATCH: options alone change an hmac endpoint; a new name replaces it.
        let patched = herald
            .patch(
                &format!("{base}/{hmac_id}"),
                json!({"signatureOptions": {"header": "X-Other", "encoding": "base64"}}),
            )
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(
            patched.body["signatureOptions"],
            json!({"header": "X-Other", "algorithm": "sha256", "encoding": "base64"})
        );
        let patched = herald
            .patch(&format!("{base}/{hmac_id}"), json!({"signatureScheme": "github"}))
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(patched.body["signatureScheme"], "github");
        assert_eq!(patched.body["signatureOptions"], Value::Null);
    }

    /// Unknown schemes, missing or misplaced options, keys of the wrong kind and
    /// header collisions are 422s naming the field, and change nothing.
    async fn bad_signature_settings_are_refused_and_store_nothing() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app_id = app_with_event_types(&herald).await;
        let base = format!("/api/v1/app/{app_id}/endpoint");
        let url = "https://example.com/hook";
        let refused = [
            (json!({"url": url, "signatureScheme": "md5"}), "signatureScheme"),
            (json!({"url": url, "signatureScheme": "standardWebhooks"}), "signatureScheme"),
            (json!({"url": url, "signatureScheme": "hmac"}), "signatureOptions"),
            (
                json!({"url": url, "signatureScheme": "stripe", "signatureOptions": {"header": "X-S"}}),
                "signatureOptions",
            ),
            (json!({"url": url, "signatureOptions": {"header": "X-S"}}), "signatureOptions"),
            (
                json!({"url": url, "signatureScheme": "hmac", "signatureOptions": {"header": "X S"}}),
                "signatureOptions",
            ),
            (
                json!({"url": url, "signatureScheme": "hmac", "signatureOptions": {"header": "X-S", "algorithm": "md5"}}),
                "signatureOptions",
            ),
            (
                json!({"url": url, "signatureScheme": "hmac", "signatureOptions": {"header": "X-S", "salt": "x"}}),
                "signatureOptions",
            ),
            (
                json!({"url": url, "signatureScheme": "hmac", "signatureOptions": {"header": "webhook-signature"}}),
                "signatureOptions",
            ),
            (
                json!({"url": url, "signatureScheme": "ed25519", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
                "secret",
            ),
            (
                json!({"url": url, "secret": herald_signature::ed25519::SecretKey::generate().to_text()}),
                "secret",
            ),
            (json!({"url": url, "signatureScheme": "ed25519", "secret": "whsk_dGVzdA=="}), "secret"),
            (
                json!({"url": url, "signatureScheme": "stripe", "headers": {"Stripe-Signature": "x"}}),
                "headers",
            ),
            (
                json!({"url": url, "signatureScheme": "hmac", "signatureOptions": {"header": "X-Sig"}, "headers": {"x-sig": "x"}}),
                "headers",
            ),
        ];
        for (body, field) in refused {
            let reply = herald.post(&base, body.clone()).await;
            assert_eq!(reply.status, 422, "{body}: {reply:?}");
            let loc = &reply.body["detail"][0]["loc"];
            assert_eq!(loc[0], "body", "{body}: {reply:?}");
            assert_eq!(loc[1], field, "{body}: {reply:?}");
            assert!(reply.body["detail"][0]["msg"].as_str().is_some());
        }
        assert_eq!(herald.count_rows("endpoint").await, 0);

        // On an existing endpoint: the scheme and its custom headers may not collide
        // whichever is changed second, and a rotation key must fit the scheme.
        let created = herald
            .post(&base, json!({"url": url, "headers": {"X-Hub-Signature-256": "x"}}))
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let ep = format!("{base}/{}", created.body["id"].as_str().unwrap());
        let before = herald.get(&ep).await.body;
        let reply = herald.patch(&ep, json!({"signatureScheme": "github"})).await;
        assert_eq!(reply.status, 422, "{reply:?}");
        assert_eq!(reply.body["detail"][0]["loc"][1], "signatureScheme");
        let reply = herald
            .put(&ep, json!({"url": url, "signatureScheme": "github"}))
            .await;
        assert_eq!(reply.status, 422, "{reply:?}");
        let reply = herald.patch(&ep, json!({"signatureScheme": "stripe"})).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let reply = herald
            .patch(&format!("{ep}/headers"), json!({"headers": {"stripe-signature": "x"}}))
            .await;
        assert_eq!(reply.status, 422, "{reply:?}");
        assert_eq!(reply.body["detail"][0]["loc"][1], "headers");
        let reply = herald
            .put(&format!("{ep}/headers"), json!({"headers": {"Stripe-Signature": "x"}}))
            .await;
        assert_eq!(reply.status, 422, "{reply:?}");
        let pair = herald_signature::ed25519::SecretKey::generate().to_text();
        let reply = herald
            .post(&format!("{ep}/secret/rotate"), json!({"key": pair}))
            .await;
        assert_eq!(reply.status, 422, "{reply:?}");
        assert_eq!(reply.body["detail"][0]["loc"], json!(["body", "key"]));
        let after = herald.get(&ep).await.body;
        assert_eq!(after["signatureScheme"], "stripe");
        assert_ne!(before["signatureScheme"], after["signatureScheme"]);
        let headers = herald.get(&format!("{ep}/headers")).await.body;
        assert_eq!(headers["headers"], json!({"X-Hub-Signature-256": "x"}));
    }
}
