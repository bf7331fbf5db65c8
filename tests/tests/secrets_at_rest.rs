//! Secrets at rest, in both topologies: with `HERALD_MAIN_KEY` set, no table
//! holds an endpoint secret, a sensitive header value or a source's secret in
//! plaintext, and deliveries and inbound webhooks still verify; a rotation keeps old data readable and `herald
//! main-key reseal` moves everything to the new key; a wrong or missing key
//! stops the server at start.

mod common;

use std::time::Duration;

use herald_e2e::receiver::Receiver;
use herald_e2e::{Backend, Herald, Options};
use herald_signature::SignatureScheme;
use serde_json::json;

/// Two fixed main keys (32 bytes, base64) and the ids Herald derives.
const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const WRONG: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";
const SENSITIVE: &str = "Bearer do-not-store-me-7f3a";
/// A Stripe-style secret a source verifies `/ingest` requests with.
const SOURCE_SECRET: &str = "whsec_source-secret-never-stored-9c1e";

/// Every row of every table of the server's database, as text.
async fn every_row(herald: &Herald) -> String {
    let mut db = common::db(herald).await;
    let mut text = String::new();
    match Backend::current() {
        Backend::Services => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&mut db)
            .await
            .unwrap();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&mut db)
                        .await
                        .unwrap();
                text.push_str(&rows.join("\n"));
            }
        }
        Backend::Embedded => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&mut db)
            .await
            .unwrap();
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(&mut db)
                        .await
                        .unwrap();
                // Column by column, as bytes: text, numbers and blobs alike.
                for column in columns {
                    let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                        "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
                    ))
                    .fetch_all(&mut db)
                    .await
                    .unwrap();
                    for value in values.into_iter().flatten() {
                        text.push_str(&String::from_utf8_lossy(&value));
                        text.push('\n');
                    }
                }
            }
        }
    }
    text
}

/// The `secrets` column of every endpoint.
async fn stored_secrets(herald: &Herald) -> Vec<String> {
    let mut db = common::db(herald).await;
    let sql = match Backend::current() {
        Backend::Services => "SELECT secrets::text FROM endpoint",
        Backend::Embedded => "SELECT secrets FROM endpoint",
    };
    sqlx::query_scalar(sql).fetch_all(&mut db).await.unwrap()
}

/// Creates an endpoint on `url` with a sensitive and a plain header; its
/// path and signing key.
async fn endpoint(herald: &Herald, url: String, scheme: &str) -> (String, String) {
    let ep = herald
        .post(
            "/api/v1/app/a/endpoint",
            json!({"url": url, "signatureScheme": scheme}),
        )
        .await;
    assert_eq!(ep.status, 201, "{ep:?}");
    let path = format!("/api/v1/app/a/endpoint/{}", ep.body["id"].as_str().unwrap());
    let headers = herald
        .put(
            &format!("{path}/headers"),
            json!({"headers": {"Authorization": SENSITIVE, "X-Plain": "visible"}}),
        )
        .await;
    assert_eq!(headers.status, 204, "{headers:?}");
    let key = herald.get(&format!("{path}/secret")).await.body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (path, key)
}

/// Posts a message and checks `path` of `receiver` gets it, signed with
/// `key` under `scheme`, with the sensitive header.
async fn delivered(
    herald: &Herald,
    receiver: &Receiver,
    path: &str,
    scheme: &SignatureScheme,
    key: &str,
) {
    let before = receiver.received(path).len();
    let created = herald
        .post(
            "/api/v1/app/a/msg",
            json!({"eventType": "e", "payload": {"n": before}}),
        )
        .await;
    assert_eq!(created.status, 202, "{created:?}");
    let got = receiver
        .wait_for(path, before + 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        got.len(),
        before + 1,
        "not delivered; server log:\n{}",
        herald.log()
    );
    let last = got.last().unwrap();
    assert_eq!(last.verify(scheme, key), Ok(()), "{last:?}");
    assert_eq!(last.header("authorization"), SENSITIVE);
    assert_eq!(last.header("x-plain"), "visible");
}

/// The secrets in the database must be sealed, each with `key_id`.
async fn assert_sealed(herald: &Herald, secrets: &[&str], key_id: &str) {
    let rows = every_row(herald).await;
    for secret in secrets.iter().chain([&SENSITIVE, &SOURCE_SECRET]) {
        // The key's body, without its prefix, is what must not appear.
        let body = secret.rsplit('_').next().unwrap();
        assert!(!rows.contains(body), "{secret} is stored in plaintext");
    }
    assert!(rows.contains("visible"), "the plain header is not sealed");
    for stored in stored_secrets(herald).await {
        assert!(
            stored.contains(&format!("v1.{key_id}.")),
            "not sealed with {key_id}: {stored}"
        );
    }
}

/// The `secret` column of every source.
async fn stored_source_secrets(herald: &Herald) -> Vec<String> {
    let mut db = common::db(herald).await;
    let sql = match Backend::current() {
        Backend::Services => "SELECT secret::text FROM source",
        Backend::Embedded => "SELECT secret FROM source",
    };
    sqlx::query_scalar(sql).fetch_all(&mut db).await.unwrap()
}

/// A Stripe source with [`SOURCE_SECRET`], for an application of its own
/// (no endpoint: the deliveries checked here are the messages'); its id.
async fn source(herald: &Herald) -> String {
    let app = herald
        .post("/api/v1/app", json!({"name": "B", "uid": "b"}))
        .await;
    assert_eq!(app.status, 201, "{app:?}");
    let created = herald
        .post(
            "/api/v1/source",
            json!({"appId": "b", "provider": "stripe", "secret": SOURCE_SECRET}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.body["id"].as_str().unwrap().to_owned()
}

/// Posts a Stripe-signed event to the source: it must verify with the
/// secret, whatever key sealed it.
async fn ingested(herald: &Herald, source_id: &str, n: usize) {
    let body = format!(r#"{{"id":"evt_{n}","object":"event","type":"charge.succeeded"}}"#);
    let now = herald_signature::unix_now();
    let signature =
        herald_signature::stripe::header(&[SOURCE_SECRET.as_bytes()], now, body.as_bytes())
            .unwrap();
    let reply = herald
        .http
        .post(format!("{}/ingest/{source_id}", herald.url))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202, "{:?}", reply.text().await);
}

/// The key id Herald prints at start for the key it seals with.
fn key_id_in(log: &str) -> String {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split("sealed with main key ").nth(1))
        .unwrap_or_else(|| panic!("no main key line in:\n{log}"));
    line.split_whitespace().next().unwrap().to_owned()
}

herald_e2e::e2e_tests! {
    async fn secrets_are_sealed_rotate_and_a_wrong_key_stops_the_start() {
        let Some(mut herald) = Herald::start_with(Options {
            worker: true,
            rabbit: true,
            env: vec![("HERALD_MAIN_KEY".into(), KEY_1.into())],
            ..Options::default()
        })
        .await
        else {
            return;
        };
        let (status, out) = herald.cli(&["main-key", "reseal"]).await;
        assert!(status.success(), "{out}");
        let key_1 = key_id_in(&out);
        let receiver = Receiver::start().await;
        herald.post("/api/v1/app", json!({"name": "A", "uid": "a"})).await;
        let (std_path, std_key) = endpoint(&herald, receiver.url("std"), "standard").await;
        let (_, ed_key) = endpoint(&herald, receiver.url("ed"), "ed25519").await;
        delivered(&herald, &receiver, "std", &SignatureScheme::Standard, &std_key).await;
        let ed = receiver.wait_for("ed", 1, Duration::from_secs(20)).await;
        assert_eq!(ed.len(), 1, "not delivered; server log:\n{}", herald.log());
        assert_eq!(ed[0].verify(&SignatureScheme::Ed25519, &ed_key), Ok(()));
        let source_id = source(&herald).await;
        ingested(&herald, &source_id, 1).await;
        assert_sealed(&herald, &[&std_key], &key_1).await;
        for stored in stored_source_secrets(&herald).await {
            assert!(stored.contains(&format!("v1.{key_1}.")), "not sealed: {stored}");
        }
        let mut db = common::db(&herald).await;
        let jwt: String =
            sqlx::query_scalar("SELECT value FROM server_setting WHERE name = 'jwt_secret'")
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert!(jwt.starts_with(&format!("$sealed:v1.{key_1}.")), "{jwt}");

        // Rotation: the new key seals, the old one still reads.
        herald.set_env("HERALD_MAIN_KEY", Some(KEY_2));
        herald.set_env("HERALD_MAIN_KEY_PREVIOUS", Some(KEY_1));
        herald.restart().await;
        let key_2 = key_id_in(&herald.log());
        assert_ne!(key_1, key_2);
        let secret = herald.get(&format!("{std_path}/secret")).await;
        assert_eq!(secret.body["key"], std_key.as_str(), "{secret:?}");
        delivered(&herald, &receiver, "std", &SignatureScheme::Standard, &std_key).await;
        let (status, out) = herald.cli(&["main-key", "reseal"]).await;
        assert!(status.success(), "{out}");
        assert!(out.contains("2 endpoints rewritten"), "{out}");
        assert!(out.contains("1 sources rewritten"), "{out}");
        assert_sealed(&herald, &[&std_key], &key_2).await;
        for stored in stored_source_secrets(&herald).await {
            assert!(stored.contains(&format!("v1.{key_2}.")), "not resealed: {stored}");
        }

        // Without the old key now, the server starts and still delivers.
        herald.set_env("HERALD_MAIN_KEY_PREVIOUS", None);
        herald.restart().await;
        delivered(&herald, &receiver, "std", &SignatureScheme::Standard, &std_key).await;
        ingested(&herald, &source_id, 2).await;
        let shown = herald.get(&format!("/api/v1/source/{source_id}/secret")).await;
        assert_eq!(shown.body["key"], SOURCE_SECRET, "{shown:?}");

        // A wrong key, or none, stops the start with a clear error.
        herald.set_env("HERALD_MAIN_KEY", Some(WRONG));
        let (status, out) = herald.cli(&["serve"]).await;
        assert!(!status.success(), "{out}");
        assert!(out.contains(&format!("sealed with main key {key_2}")), "{out}");
        assert!(out.contains("a wrong key?"), "{out}");
        herald.set_env("HERALD_MAIN_KEY", None);
        let (status, out) = herald.cli(&["serve"]).await;
        assert!(!status.success(), "{out}");
        assert!(out.contains("set HERALD_MAIN_KEY"), "{out}");
        herald.set_env("HERALD_MAIN_KEY", Some("not base64"));
        let (status, out) = herald.cli(&["serve"]).await;
        assert!(!status.success(), "{out}");
        assert!(out.contains("HERALD_MAIN_KEY is invalid"), "{out}");
    }
}
