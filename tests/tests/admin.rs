//! The operator's `/admin/v1` API over HTTP: tenants and their keys, who may
//! call it, and that it does not exist at all without `HERALD_ADMIN_TOKEN`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_e2e::{herald_bin, Herald, Reply, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn admin(herald: &Herald, method: Method, path: &str, body: Option<Value>) -> Reply {
    herald
        .request(method, path, Some(&herald.admin_token), body)
        .await
}

fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {reply:?}");
    assert_eq!(
        reply.body["code"], "authentication_failed",
        "{what}: {reply:?}"
    );
}

fn str_field(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {body}"))
        .to_owned()
}

/// A syntactically valid tenant id that names no tenant.
fn unknown_tenant_id(real: &str) -> String {
    let mut id = real.to_owned();
    let last = id.pop().expect("non-empty id");
    id.push(if last == 'a' { 'b' } else { 'a' });
    id
}

/// Every admin route, with a plausible body, for the authorisation checks.
fn admin_routes(tenant_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/admin/v1/tenants".into(), None),
        (
            Method::POST,
            "/admin/v1/tenants".into(),
            Some(json!({"name": "Intruder"})),
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
        (
            Method::DELETE,
            format!("/admin/v1/tenants/{tenant_id}/keys/key_2bQ8mNeuVvnd6R0xgsJcZ6g3yNZ"),
            None,
        ),
    ]
}

herald_e2e::e2e_tests! {
    async fn create_tenant_answers_201_with_its_first_key() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let reply = admin(
            &herald,
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "Acme Corp"})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        let body = &reply.body;
        let tenant_id = str_field(body, "tenantId");
        assert!(tenant_id.starts_with("tnt_"), "{tenant_id}");
        assert_eq!(body["name"], "Acme Corp");
        assert!(str_field(body, "keyId").starts_with("key_"), "{body}");
        let key = str_field(body, "key");
        assert!(key.starts_with("hsk_") && key.len() > 20, "{key}");
        assert_ne!(key, herald.tenant.key);

        // The key works at once, and sees only its own (empty) tenant.
        herald
            .post("/api/v1/app", json!({"name": "first tenant's app"}))
            .await;
        let apps = herald
            .request(Method::GET, "/api/v1/app", Some(&key), None)
            .await;
        assert_eq!(apps.status, StatusCode::OK, "{apps:?}");
        assert_eq!(apps.body["data"], json!([]));

        // Names are validated.
        for bad in [
            json!({"name": ""}),
            json!({"name": "   "}),
            json!({}),
            json!({"name": "x".repeat(257)}),
        ] {
            let reply = admin(
                &herald,
                Method::POST,
                "/admin/v1/tenants",
                Some(bad.clone()),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}: {reply:?}"
            );
        }
        assert_eq!(herald.count_rows("tenant").await, 2);
    }
}

herald_e2e::e2e_tests! {
    async fn tenants_are_listed_page_by_page() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let mut expected = vec![herald.tenant.id.clone()];
        for i in 0..4 {
            expected.push(herald.create_tenant(&format!("tenant {i}")).await.id);
        }
        // Listings are ordered by id; ids created within the same second are in
        // random order among themselves, so compare against the sorted ids.
        expected.sort();

        // One page with everything.
        let all = admin(&herald, Method::GET, "/admin/v1/tenants", None).await;
        assert_eq!(all.status, StatusCode::OK, "{all:?}");
        assert_eq!(all.body["done"], true, "{all:?}");
        let listed: Vec<String> = all.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| str_field(t, "id"))
            .collect();
        assert_eq!(listed, expected, "ascending id order");
        let first = all.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == herald.tenant.id.as_str())
            .expect("the harness's tenant is listed");
        assert_eq!(first["name"], "first");
        assert!(first["createdAt"].is_string(), "{first}");

        // Pages of two, following the iterator.
        let mut seen = Vec::new();
        let mut iterator: Option<String> = None;
        for _ in 0..10 {
            let path = match &iterator {
                Some(it) => format!("/admin/v1/tenants?limit=2&iterator={it}"),
                None => "/admin/v1/tenants?limit=2".to_owned(),
            };
            let page = admin(&herald, Method::GET, &path, None).await;
            assert_eq!(page.status, StatusCode::OK, "{page:?}");
            let data = page.body["data"].as_array().expect("data");
            assert!(data.len() <= 2, "{page:?}");
            seen.extend(data.iter().map(|t| str_field(t, "id")));
            if page.body["done"] == true {
                break;
            }
            iterator = Some(str_field(&page.body, "iterator"));
        }
        assert_eq!(seen, expected, "paging visits every tenant once, in order");

        // Descending order, and bad parameters.
        let desc = admin(
            &herald,
            Method::GET,
            "/admin/v1/tenants?order=descending",
            None,
        )
        .await;
        let mut reversed = expected.clone();
        reversed.reverse();
        let desc_ids: Vec<String> = desc.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| str_field(t, "id"))
            .collect();
        assert_eq!(desc_ids, reversed);
        for bad in ["limit=0", "limit=251", "iterator=garbage"] {
            let reply = admin(
                &herald,
                Method::GET,
                &format!("/admin/v1/tenants?{bad}"),
                None,
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}: {reply:?}"
            );
        }
    }
}

herald_e2e::e2e_tests! {
    async fn get_tenant_returns_it_and_unknown_tenants_get_404() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let id = herald.tenant.id.clone();
        let reply = admin(
            &herald,
            Method::GET,
            &format!("/admin/v1/tenants/{id}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["id"], id.as_str());
        assert_eq!(reply.body["name"], "first");
        assert!(reply.body["createdAt"].is_string(), "{reply:?}");

        let unknown = unknown_tenant_id(&id);
        for path in [
            format!("/admin/v1/tenants/{unknown}"),
            "/admin/v1/tenants/tnt_nope".to_owned(),
            "/admin/v1/tenants/not-an-id".to_owned(),
            format!("/admin/v1/tenants/{unknown}/keys"),
        ] {
            let reply = admin(&herald, Method::GET, &path, None).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "GET {path}: {reply:?}");
            assert_eq!(reply.body["code"], "not_found", "{reply:?}");
        }
        let reply = admin(
            &herald,
            Method::POST,
            &format!("/admin/v1/tenants/{unknown}/keys"),
            Some(json!({})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
        assert_eq!(herald.count_rows("api_key").await, 1);
    }
}

herald_e2e::e2e_tests! {
    async fn api_keys_are_listed_by_prefix_and_never_shown_again() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let created = admin(
            &herald,
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "Keys"})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        let tenant_id = str_field(&created.body, "tenantId");
        let first_key = str_field(&created.body, "key");
        let first_key_id = str_field(&created.body, "keyId");
        let keys_path = format!("/admin/v1/tenants/{tenant_id}/keys");

        let second = admin(
            &herald,
            Method::POST,
            &keys_path,
            Some(json!({"name": "ci"})),
        )
        .await;
        assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
        let second_key = str_field(&second.body, "key");
        let second_key_id = str_field(&second.body, "id");
        assert!(second_key.starts_with("hsk_"), "{second_key}");
        assert_eq!(second.body["name"], "ci");
        assert!(
            second_key.starts_with(&str_field(&second.body, "prefix")),
            "{second:?}"
        );
        // A nameless key gets the default name.
        let third = admin(&herald, Method::POST, &keys_path, Some(json!({}))).await;
        assert_eq!(third.status, StatusCode::CREATED, "{third:?}");
        assert_eq!(third.body["name"], "default");
        let third_key = str_field(&third.body, "key");
        let third_key_id = str_field(&third.body, "id");

        let listed = admin(&herald, Method::GET, &keys_path, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
        let keys = listed.body.as_array().expect("array of keys");
        assert_eq!(keys.len(), 3, "{listed:?}");
        for (id, full) in [
            (&first_key_id, &first_key),
            (&second_key_id, &second_key),
            (&third_key_id, &third_key),
        ] {
            let listed = keys
                .iter()
                .find(|k| k["id"] == id.as_str())
                .unwrap_or_else(|| panic!("key {id} not listed: {keys:?}"));
            let prefix = str_field(listed, "prefix");
            assert!(
                prefix.starts_with("hsk_") && prefix.len() < full.len(),
                "{listed}"
            );
            assert!(full.starts_with(&prefix), "{prefix} is a prefix of the key");
            assert!(
                listed.get("key").is_none(),
                "the listing has no key field: {listed}"
            );
            assert!(
                listed["createdAt"].is_string() && listed["revokedAt"].is_null(),
                "{listed}"
            );
        }

        // Revoking shows up in the listing (and is idempotent).
        for _ in 0..2 {
            let revoked = admin(
                &herald,
                Method::DELETE,
                &format!("{keys_path}/{first_key_id}"),
                None,
            )
            .await;
            assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked:?}");
        }
        let missing = admin(
            &herald,
            Method::DELETE,
            &format!("{keys_path}/key_2bQ8mNeuVvnd6R0xgsJcZ6g3yNZ"),
            None,
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
        // Another tenant's key cannot be revoked through this tenant.
        let foreign = admin(
            &herald,
            Method::DELETE,
            &format!(
                "/admin/v1/tenants/{}/keys/{}",
                herald.tenant.id,
                str_field(&second.body, "id")
            ),
            None,
        )
        .await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{foreign:?}");

        // No admin response other than the two create responses contains a full key.
        let responses = [
            admin(&herald, Method::GET, &keys_path, None).await,
            admin(&herald, Method::GET, "/admin/v1/tenants", None).await,
            admin(
                &herald,
                Method::GET,
                &format!("/admin/v1/tenants/{tenant_id}"),
                None,
            )
            .await,
            admin(
                &herald,
                Method::GET,
                &format!("/admin/v1/tenants/{}/keys", herald.tenant.id),
                None,
            )
            .await,
        ];
        let after = &responses[0].body;
        let first_listed = after
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == first_key_id.as_str())
            .unwrap();
        assert!(first_listed["revokedAt"].is_string(), "{after}");
        for reply in &responses {
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            let text = reply.body.to_string();
            for key in [&first_key, &second_key, &third_key, &herald.tenant.key] {
                assert!(
                    !text.contains(key.as_str()),
                    "a full key leaked into {text}"
                );
            }
        }
    }
}

herald_e2e::e2e_tests! {
    async fn a_wrong_or_missing_admin_token_gets_401() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let wrong = format!("{}x", herald.admin_token);
        let almost = herald.admin_token[..herald.admin_token.len() - 1].to_owned();
        for (method, path, body) in admin_routes(&herald.tenant.id) {
            for token in [Some(wrong.as_str()), Some(almost.as_str()), Some("x"), None] {
                let reply = herald
                    .request(method.clone(), &path, token, body.clone())
                    .await;
                assert_unauthorized(&reply, &format!("{method} {path} with {token:?}"));
            }
            // Right token, wrong scheme.
            let reply = Herald::reply(
                herald
                    .http
                    .request(method.clone(), format!("{}{path}", herald.url))
                    .header("authorization", format!("Basic {}", herald.admin_token))
                    .send()
                    .await
                    .expect("request reaches herald"),
            )
            .await;
            assert_unauthorized(&reply, &format!("{method} {path} with Basic"));
        }
        assert_eq!(herald.count_rows("tenant").await, 1);
        assert_eq!(herald.count_rows("api_key").await, 1);
    }
}

herald_e2e::e2e_tests! {
    async fn tenant_api_keys_are_refused_on_admin_routes() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        for (method, path, body) in admin_routes(&herald.tenant.id) {
            let reply = herald
                .request(method.clone(), &path, Some(&herald.tenant.key), body)
                .await;
            assert_unauthorized(&reply, &format!("tenant key on {method} {path}"));
        }
        // And the admin token is no tenant key.
        let reply = herald
            .request(Method::GET, "/api/v1/app", Some(&herald.admin_token), None)
            .await;
        assert_unauthorized(&reply, "admin token on /api/v1");
        assert_eq!(herald.count_rows("tenant").await, 1);
        assert_eq!(herald.count_rows("api_key").await, 1);
    }
}

/// A `herald serve` started by hand (the harness always creates a tenant through
/// the admin API, which is exactly what this server must not offer).
struct BareServer {
    child: Child,
    url: String,
    log_path: std::path::PathBuf,
}

impl BareServer {
    fn start(db: &TestDatabase, env: &[(&str, &str)]) -> Self {
        let log_path = std::env::temp_dir().join(format!("{}-bare.log", db.name));
        let log = std::fs::File::create(&log_path).expect("create server log file");
        let mut child = Command::new(herald_bin())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_DATABASE_URL", &db.url)
            .env("HERALD_DATABASE_MAX_CONNECTIONS", "5")
            .env("HERALD_LOG", "warn,herald=info")
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn herald serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("herald: listening on ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let mut server = Self {
            child,
            url: String::new(),
            log_path,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => server.url = url,
            Err(_) => panic!(
                "herald did not start within 60 s; its log:\n{}",
                server.log()
            ),
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

herald_e2e::e2e_tests! {
    async fn admin_routes_answer_404_when_no_admin_token_is_configured() {
        // `Herald::start_with` cannot be used here: it creates its first tenant
        // through the admin API and would fail. The database comes from the
        // harness; the tenant from the CLI.
        let Some(db) = TestDatabase::for_current_backend().await else {
            return;
        };
        // An empty HERALD_ADMIN_TOKEN means "unset" (not "the empty token").
        let server = BareServer::start(
            &db,
            &[("HERALD_ADMIN_TOKEN", ""), ("HERALD_DEFAULT_TENANT", "false")],
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");

        let output = Command::new(herald_bin())
            .args(["tenant", "create", "cli-made", "--json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_DATABASE_URL", &db.url)
            .env("HERALD_LOG", "warn")
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run herald tenant create");
        assert!(output.status.success(), "tenant create failed: {output:?}");
        let created: Value =
            serde_json::from_slice(&output.stdout).expect("tenant create --json prints JSON");
        let tenant_id = str_field(&created, "tenantId");
        let key = str_field(&created, "key");

        let mut routes = admin_routes(&tenant_id);
        routes.push((Method::GET, "/admin/v1/tenants/nope".into(), None));
        for (method, path, body) in routes {
            // With no token, an empty one, a guess, the tenant's key: always 404,
            // so the admin API's existence is not even revealed.
            for token in [
                None,
                Some(""),
                Some("admin-guess-0123456789"),
                Some(key.as_str()),
            ] {
                let mut request = http.request(method.clone(), format!("{}{path}", server.url));
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let reply = Herald::reply(request.send().await.expect("request reaches herald")).await;
                assert_eq!(
                    reply.status,
                    StatusCode::NOT_FOUND,
                    "{method} {path} with {token:?}: {reply:?}\nserver log:\n{}",
                    server.log()
                );
                assert_eq!(reply.body["code"], "not_found", "{reply:?}");
            }
        }

        // The tenant API is unaffected.
        let apps = Herald::reply(
            http.get(format!("{}/api/v1/app", server.url))
                .bearer_auth(&key)
                .send()
                .await
                .expect("request reaches herald"),
        )
        .await;
        assert_eq!(apps.status, StatusCode::OK, "{apps:?}");

        // Nothing was created through the dead admin API.
        let mut conn = db.connect().await;
        let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant")
            .fetch_one(&mut conn)
            .await
            .expect("count tenants");
        assert_eq!(tenants, 1);
        drop(server);
    }
}
