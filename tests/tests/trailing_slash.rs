//! Every route answers with a trailing slash as it does without one, as
//! svix-server does (`GET /api/v1/app/`): older SDKs and hand-written clients
//! add it. The query string is kept, `/` and the docs page are unchanged, and
//! the request is counted under the slashless route template.

use herald_e2e::{Backend, Herald, Options};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The sample value of `herald_http_requests_total` for these labels, 0 when
/// the series does not exist.
fn requests_total(scrape: &str, method: &str, route: &str, status: u16) -> f64 {
    let labels = format!(r#"{{method="{method}",route="{route}",status="{status}"}}"#);
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("herald_http_requests_total"))
        .filter_map(|rest| rest.strip_prefix(labels.as_str()))
        .map(|value| value.trim().parse::<f64>().expect("a sample value"))
        .sum()
}

/// The listing's items without fields that differ between two calls.
fn names(listing: &Value) -> Vec<String> {
    listing["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a listing: {listing}"))
        .iter()
        .map(|item| item["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_route_answers_with_a_trailing_slash_as_without() {
    Backend::Embedded
        .scope(async {
            let herald = Herald::start_with(Options::default())
                .await
                .expect("the embedded backend needs no services");

            // POST, with and without the slash, both create.
            let created = herald
                .post("/api/v1/app/", json!({"name": "Slash", "uid": "slash"}))
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
            let created = herald
                .post("/api/v1/app", json!({"name": "Plain", "uid": "plain"}))
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
            let endpoint = herald
                .post(
                    "/api/v1/app/slash/endpoint/",
                    json!({"url": "https://example.com/hook"}),
                )
                .await;
            assert_eq!(endpoint.status, StatusCode::CREATED, "{endpoint:?}");
            let event_type = herald
                .post(
                    "/api/v1/event-type/",
                    json!({"name": "invoice.paid", "description": "paid"}),
                )
                .await;
            assert_eq!(event_type.status, StatusCode::CREATED, "{event_type:?}");

            // GETs answer the same, status and body.
            for path in [
                "/api/v1/app",
                "/api/v1/app/slash",
                "/api/v1/app/slash/endpoint",
                "/api/v1/event-type",
                "/api/v1/event-type/invoice.paid",
            ] {
                let plain = herald.get(path).await;
                let slashed = herald.get(&format!("{path}/")).await;
                assert_eq!(plain.status, StatusCode::OK, "GET {path}: {plain:?}");
                assert_eq!(slashed.status, plain.status, "GET {path}/: {slashed:?}");
                assert_eq!(slashed.body, plain.body, "GET {path}/ and GET {path}");
            }
            // The query string survives the trim.
            let first = herald.get("/api/v1/app/?limit=1").await;
            assert_eq!(first.status, StatusCode::OK, "{first:?}");
            // (Ids of one second are ordered at random, so which app is first is not.)
            assert_eq!(names(&first.body).len(), 1, "{first:?}");
            assert_eq!(first.body["done"], false, "{first:?}");

            // The public health checks and the admin API.
            for path in ["/api/v1/health/", "/api/v1/health/ping/"] {
                let reply = herald.request(Method::GET, path, None, None).await;
                assert_eq!(
                    reply.status,
                    StatusCode::NO_CONTENT,
                    "GET {path}: {reply:?}"
                );
            }
            let admin = Some(herald.admin_token.as_str());
            let plain = herald
                .request(Method::GET, "/admin/v1/tenants", admin, None)
                .await;
            let slashed = herald
                .request(Method::GET, "/admin/v1/tenants/", admin, None)
                .await;
            assert_eq!(plain.status, StatusCode::OK, "{plain:?}");
            assert_eq!(slashed.body, plain.body, "{slashed:?}");

            // DELETE too; afterwards both forms agree it is gone.
            let deleted = herald.delete("/api/v1/app/plain/").await;
            assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
            for path in ["/api/v1/app/plain", "/api/v1/app/plain/"] {
                let reply = herald.get(path).await;
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "GET {path}: {reply:?}");
            }

            // `/` is not a route, with or without the trim; the docs page
            // still lives at `/docs/`, and `/docs` still sends browsers there.
            let root = herald.request(Method::GET, "/", None, None).await;
            assert_eq!(root.status, StatusCode::NOT_FOUND, "{root:?}");
            assert_eq!(root.body["code"], "not_found", "{root:?}");
            let docs = herald
                .http
                .get(format!("{}/docs/", herald.url))
                .send()
                .await
                .expect("docs answer");
            assert_eq!(docs.status(), StatusCode::OK);
            assert!(docs.text().await.unwrap_or_default().contains("swagger"));

            // Counted under the route template, not as unmatched.
            let scrape = herald
                .http
                .get(format!("{}/metrics", herald.url))
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("scrape body");
            assert_eq!(
                requests_total(&scrape, "GET", "/api/v1/app", 200),
                3.0,
                "GET /api/v1/app, /api/v1/app/ and /api/v1/app/?limit=1:\n{scrape}"
            );
            assert_eq!(
                requests_total(&scrape, "POST", "/api/v1/app", 201),
                2.0,
                "{scrape}"
            );
            assert_eq!(
                requests_total(&scrape, "GET", "/api/v1/health", 204),
                1.0,
                "{scrape}"
            );
            assert_eq!(
                requests_total(&scrape, "GET", "unmatched", 404),
                1.0,
                "only `/`:\n{scrape}"
            );
        })
        .await
}
