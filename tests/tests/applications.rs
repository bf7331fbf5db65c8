//! Applications over HTTP: create, get by id or uid, upsert, patch, delete, and
//! Svix-style keyset pagination in both directions.

use herald_e2e::Herald;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

herald_e2e::e2e_tests! {
    async fn application_lifecycle_follows_the_svix_contract() {
        let Some(herald) = Herald::start().await else {
            return;
        };

        let created = herald
            .post(
                "/api/v1/app",
                json!({"name": "Acme", "uid": "acme", "metadata": {"tier": "gold"}, "throttleRate": 10}),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        let app = created.body;
        let id = app["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("app_") && id.len() == 31, "{id}");
        assert_eq!(app["uid"], "acme");
        assert_eq!(app["metadata"], json!({"tier": "gold"}));
        assert_eq!(app["throttleRate"], 10);
        assert!(app["createdAt"].is_string() && app["updatedAt"].is_string());

        // Found by id and by uid, identically.
        let by_id = herald.get(&format!("/api/v1/app/{id}")).await;
        let by_uid = herald.get("/api/v1/app/acme").await;
        assert_eq!(by_id.status, 200);
        assert_eq!(by_id.body, app);
        assert_eq!(by_uid.body, app);

        // A second create with the same uid conflicts, unless get_if_exists.
        let duplicate = herald
            .post("/api/v1/app", json!({"name": "Other", "uid": "acme"}))
            .await;
        assert_eq!(duplicate.status, 409);
        assert_eq!(duplicate.body["code"], "conflict");
        let existing = herald
            .post(
                "/api/v1/app?get_if_exists=true",
                json!({"name": "Other", "uid": "acme"}),
            )
            .await;
        assert_eq!(existing.status, 200);
        assert_eq!(existing.body["id"], id.as_str());

        // PATCH changes only what it names; null clears a nullable field.
        let patched = herald
            .patch(
                "/api/v1/app/acme",
                json!({"name": "Acme Inc", "throttleRate": null}),
            )
            .await;
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(patched.body["name"], "Acme Inc");
        assert_eq!(patched.body["metadata"], json!({"tier": "gold"}));
        assert_eq!(patched.body["throttleRate"], Value::Null);

        // PUT replaces an existing application (200) ...
        let replaced = herald
            .put(
                &format!("/api/v1/app/{id}"),
                json!({"name": "Replaced", "uid": "acme"}),
            )
            .await;
        assert_eq!(replaced.status, 200);
        assert_eq!(replaced.body["id"], id.as_str());
        assert_eq!(replaced.body["metadata"], json!({}));
        assert_eq!(replaced.body["createdAt"], app["createdAt"]);
        // ... creates one under a new uid (201) ...
        let upserted = herald
            .put("/api/v1/app/brand-new", json!({"name": "New"}))
            .await;
        assert_eq!(upserted.status, 201, "{upserted:?}");
        assert_eq!(upserted.body["uid"], "brand-new");
        // ... and never invents an object for an unknown id.
        let unknown = herald
            .put(
                "/api/v1/app/app_2fGhJkLmNpQrStUvWxYz01234Ab",
                json!({"name": "x"}),
            )
            .await;
        assert_eq!(unknown.status, 404);

        let deleted = herald.delete("/api/v1/app/acme").await;
        assert_eq!(deleted.status, 204);
        assert_eq!(herald.get(&format!("/api/v1/app/{id}")).await.status, 404);
        assert_eq!(herald.delete("/api/v1/app/acme").await.status, 404);
    }
}

herald_e2e::e2e_tests! {
    async fn application_list_pages_forwards_and_backwards_without_gaps() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let mut created = Vec::new();
        for i in 0..7 {
            let reply = herald
                .post("/api/v1/app", json!({"name": format!("app {i}")}))
                .await;
            assert_eq!(reply.status, 201);
            created.push(reply.body["id"].as_str().unwrap().to_owned());
        }
        // Ids are time-ordered within a second only by randomness, so compare sets
        // against the server's own ascending order.
        let all = herald.get("/api/v1/app?limit=250").await;
        let ordered = ids(&all.body);
        assert_eq!(all.body["done"], true);
        let mut sorted = created.clone();
        sorted.sort();
        assert_eq!(ordered, sorted, "ascending order is by id");

        // Forwards in pages of 3.
        let mut seen = Vec::new();
        let mut iterator: Option<String> = None;
        let mut pages = Vec::new();
        loop {
            let path = match &iterator {
                Some(it) => format!("/api/v1/app?limit=3&iterator={it}"),
                None => "/api/v1/app?limit=3".to_owned(),
            };
            let page = herald.get(&path).await;
            assert_eq!(page.status, 200, "{page:?}");
            seen.extend(ids(&page.body));
            pages.push(page.body.clone());
            if page.body["done"] == true {
                break;
            }
            iterator = page.body["iterator"].as_str().map(str::to_owned);
            assert!(pages.len() < 10, "pagination does not terminate");
        }
        assert_eq!(seen, ordered);
        assert_eq!(pages.len(), 3);

        // Backwards from the last page with prevIterator.
        let prev = pages[2]["prevIterator"].as_str().unwrap();
        assert!(prev.starts_with('-'));
        let back = herald
            .get(&format!("/api/v1/app?limit=3&iterator={prev}"))
            .await;
        assert_eq!(ids(&back.body), ordered[3..6].to_vec());

        // Descending order.
        let desc = herald.get("/api/v1/app?limit=250&order=descending").await;
        let mut reversed = ordered.clone();
        reversed.reverse();
        assert_eq!(ids(&desc.body), reversed);
        let desc_page = herald.get("/api/v1/app?limit=2&order=descending").await;
        let next = desc_page.body["iterator"].as_str().unwrap();
        let desc_next = herald
            .get(&format!(
                "/api/v1/app?limit=2&order=descending&iterator={next}"
            ))
            .await;
        assert_eq!(ids(&desc_next.body), reversed[2..4].to_vec());
    }
}
