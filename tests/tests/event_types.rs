//! Event types over HTTP: create, conflict, archive and un-archive, expunge,
//! upsert, and listing by name.

use herald_e2e::Herald;
use serde_json::json;

herald_e2e::e2e_tests! {
    async fn event_type_lifecycle_follows_the_svix_contract() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let schema = json!({"1": {"type": "object", "properties": {"id": {"type": "string"}}}});
        let created = herald
            .post(
                "/api/v1/event-type",
                json!({"name": "invoice.paid", "description": "An invoice was paid", "schemas": schema}),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        assert_eq!(created.body["archived"], false);
        assert_eq!(created.body["deprecated"], false);
        assert_eq!(created.body["schemas"], schema);

        let duplicate = herald
            .post(
                "/api/v1/event-type",
                json!({"name": "invoice.paid", "description": "again"}),
            )
            .await;
        assert_eq!(duplicate.status, 409);

        // Schemas only with with_content=true in listings.
        let list = herald.get("/api/v1/event-type").await;
        assert_eq!(list.body["data"][0]["schemas"], serde_json::Value::Null);
        let with_content = herald.get("/api/v1/event-type?with_content=true").await;
        assert_eq!(with_content.body["data"][0]["schemas"], schema);

        // Delete archives: hidden by default, shown with include_archived.
        assert_eq!(
            herald
                .delete("/api/v1/event-type/invoice.paid")
                .await
                .status,
            204
        );
        assert_eq!(
            herald.get("/api/v1/event-type").await.body["data"],
            json!([])
        );
        let archived = herald.get("/api/v1/event-type?include_archived=true").await;
        assert_eq!(archived.body["data"][0]["archived"], true);
        assert_eq!(
            herald.get("/api/v1/event-type/invoice.paid").await.body["archived"],
            true
        );

        // Re-creating an archived name un-archives it with the new fields.
        let recreated = herald
            .post(
                "/api/v1/event-type",
                json!({"name": "invoice.paid", "description": "back"}),
            )
            .await;
        assert_eq!(recreated.status, 201);
        assert_eq!(recreated.body["archived"], false);
        assert_eq!(recreated.body["description"], "back");
        assert_eq!(recreated.body["createdAt"], created.body["createdAt"]);

        // PATCH and PUT.
        let patched = herald
            .patch(
                "/api/v1/event-type/invoice.paid",
                json!({"deprecated": true, "featureFlag": "beta"}),
            )
            .await;
        assert_eq!(patched.status, 200);
        assert_eq!(patched.body["deprecated"], true);
        assert_eq!(patched.body["featureFlag"], "beta");
        assert_eq!(patched.body["description"], "back");
        let put_new = herald
            .put(
                "/api/v1/event-type/user.signup",
                json!({"description": "A user signed up"}),
            )
            .await;
        assert_eq!(put_new.status, 201);
        let put_existing = herald
            .put(
                "/api/v1/event-type/user.signup",
                json!({"description": "changed"}),
            )
            .await;
        assert_eq!(put_existing.status, 200);
        assert_eq!(put_existing.body["description"], "changed");

        // Expunge removes it for good.
        assert_eq!(
            herald
                .delete("/api/v1/event-type/invoice.paid?expunge=true")
                .await
                .status,
            204
        );
        assert_eq!(
            herald.get("/api/v1/event-type/invoice.paid").await.status,
            404
        );
        assert_eq!(herald.count_rows("event_type").await, 1);
    }
}

herald_e2e::e2e_tests! {
    async fn event_types_list_in_name_order_across_pages() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let names = ["c.three", "a.one", "e.five", "b.two", "d.four"];
        for name in names {
            let reply = herald
                .post(
                    "/api/v1/event-type",
                    json!({"name": name, "description": name}),
                )
                .await;
            assert_eq!(reply.status, 201);
        }
        let first = herald.get("/api/v1/event-type?limit=2").await;
        let iterator = first.body["iterator"].as_str().unwrap().to_owned();
        let second = herald
            .get(&format!("/api/v1/event-type?limit=2&iterator={iterator}"))
            .await;
        let third = herald
            .get(&format!(
                "/api/v1/event-type?limit=2&iterator={}",
                second.body["iterator"].as_str().unwrap()
            ))
            .await;
        let collect = |body: &serde_json::Value| {
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let mut all = collect(&first.body);
        all.extend(collect(&second.body));
        all.extend(collect(&third.body));
        assert_eq!(all, ["a.one", "b.two", "c.three", "d.four", "e.five"]);
        assert_eq!(first.body["done"], false);
        assert_eq!(third.body["done"], true);
    }
}
