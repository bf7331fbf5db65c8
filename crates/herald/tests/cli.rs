//! The `herald` command line against a real PostgreSQL database: `migrate`,
//! `tenant …`, `openapi`, and a clear failure for an unsupported database URL.
//!
//! Each test that needs PostgreSQL gets its own database from the end-to-end
//! harness, dropped afterwards. They skip when PostgreSQL is unreachable, unless
//! `HERALD_REQUIRE_SERVICES=1`, in which case they fail.

use std::path::PathBuf;
use std::process::{Command, Output};

use herald_e2e::TestDatabase;
use sqlx::Connection;

/// Runs one query returning a single value in the test database.
async fn scalar<T>(db: &TestDatabase, sql: &str, bind: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connect test db");
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// An empty working directory, so no `./herald.toml` of the developer is read.
fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create working directory");
    dir
}

/// Runs `herald <args>` with nothing from the caller's environment but PATH.
fn herald(database_url: Option<&str>, args: &[&str]) -> Output {
    let dir = empty_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&dir);
    if let Some(url) = database_url {
        command.env("HERALD_DATABASE_URL", url);
    }
    let output = command.output().expect("run herald");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command that must succeed and returns its stdout.
fn herald_ok(database_url: &str, args: &[&str]) -> String {
    let output = herald(Some(database_url), args);
    assert!(
        output.status.success(),
        "herald {args:?} failed: {}",
        describe(&output)
    );
    stdout(&output)
}

/// `herald tenant create <name> --json`, parsed: (tenant id, key).
fn create_tenant(database_url: &str, name: &str) -> (String, String) {
    let out = herald_ok(database_url, &["tenant", "create", name, "--json"]);
    let created: serde_json::Value = serde_json::from_str(out.trim_end()).expect("JSON line");
    (
        created["tenantId"].as_str().expect("tenantId").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

/// The value after `label` on the line starting with it (`key id  key_…`).
fn labelled(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{out}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn tenant_create_json_prints_one_line_with_tenant_id_then_key() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let output = herald(Some(&db.url), &["tenant", "create", "acme", "--json"]);
    assert!(output.status.success(), "{}", describe(&output));
    let out = stdout(&output);
    assert!(out.ends_with('\n'), "{out:?}");
    assert_eq!(
        out.lines().count(),
        1,
        "exactly one line on stdout: {out:?}"
    );
    let line = out.trim_end();

    // Keys in this order, and nothing else.
    assert!(line.starts_with("{\"tenantId\":\""), "{line}");
    let tenant_at = line.find("\"tenantId\"").expect("tenantId");
    let key_at = line.find("\"key\"").expect("key");
    assert!(tenant_at < key_at, "tenantId comes before key: {line}");
    let created: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    let object = created.as_object().expect("a JSON object");
    assert_eq!(object.len(), 2, "{line}");
    let tenant_id = object["tenantId"].as_str().expect("tenantId string");
    let key = object["key"].as_str().expect("key string");
    assert!(tenant_id.starts_with("tnt_"), "{tenant_id}");
    assert!(key.starts_with("hsk_"), "{key}");

    // The tenant and an active key for it are stored; the key itself is not.
    let name: String = scalar(&db, "SELECT name FROM tenant WHERE id = $1", tenant_id).await;
    assert_eq!(name, "acme");
    let prefix: String = scalar(
        &db,
        "SELECT prefix FROM api_key WHERE tenant_id = $1 AND revoked_at IS NULL",
        tenant_id,
    )
    .await;
    assert!(
        key.starts_with(&prefix) && prefix.len() < key.len(),
        "{prefix} / {key}"
    );

    // Without --json, the key is printed once, for humans.
    let human = herald_ok(&db.url, &["tenant", "create", "beta"]);
    assert!(labelled(&human, "api key").starts_with("hsk_"), "{human}");

    // `tenant list` shows both.
    let listed = herald_ok(&db.url, &["tenant", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(tenant_id) && l.ends_with("\tacme")),
        "{listed}"
    );
    assert!(listed.lines().any(|l| l.ends_with("\tbeta")), "{listed}");
    assert_eq!(listed.lines().count(), 2, "{listed}");

    // An empty name is refused.
    let refused = herald(Some(&db.url), &["tenant", "create", " ", "--json"]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(refused.stdout.is_empty(), "{}", describe(&refused));
}

#[tokio::test]
async fn tenant_keys_lists_the_prefix_but_never_the_key() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (tenant_id, key) = create_tenant(&db.url, "acme");
    let out = herald_ok(&db.url, &["tenant", "keys", &tenant_id]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(!out.contains(&key), "the full key leaked: {out}");
    let fields: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 4, "id, prefix, name, state: {out}");
    assert!(fields[0].starts_with("key_"), "{out}");
    let prefix = fields[1].trim_end_matches('…');
    assert!(
        prefix.starts_with("hsk_") && key.starts_with(prefix) && prefix.len() < key.len(),
        "{out}"
    );
    assert_eq!(fields[2], "default");
    assert_eq!(fields[3], "active");

    // An unknown tenant is an error, not an empty list.
    let unknown = herald(
        Some(&db.url),
        &["tenant", "keys", "tnt_2bQ8mNeuVvnd6R0xgsJcZ6g3yNZ"],
    );
    assert!(!unknown.status.success(), "{}", describe(&unknown));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no tenant"),
        "{}",
        describe(&unknown)
    );
    let invalid = herald(Some(&db.url), &["tenant", "keys", "acme"]);
    assert!(!invalid.status.success(), "{}", describe(&invalid));
}

#[tokio::test]
async fn create_key_and_revoke_key_manage_a_tenants_keys() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (tenant_id, first_key) = create_tenant(&db.url, "acme");

    let out = herald_ok(
        &db.url,
        &["tenant", "create-key", &tenant_id, "--name", "ci"],
    );
    let key_id = labelled(&out, "key id");
    let second_key = labelled(&out, "api key");
    assert!(key_id.starts_with("key_"), "{out}");
    assert!(
        second_key.starts_with("hsk_") && second_key != first_key,
        "{out}"
    );

    let keys = herald_ok(&db.url, &["tenant", "keys", &tenant_id]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    let line = keys
        .lines()
        .find(|l| l.starts_with(&key_id))
        .unwrap_or_else(|| panic!("new key not listed:\n{keys}"));
    assert!(
        line.contains("\tci\t") && line.ends_with("\tactive"),
        "{line}"
    );
    assert!(
        !keys.contains(&second_key) && !keys.contains(&first_key),
        "a full key leaked:\n{keys}"
    );

    let out = herald_ok(&db.url, &["tenant", "revoke-key", &tenant_id, &key_id]);
    assert!(out.contains(&key_id), "{out}");
    let keys = herald_ok(&db.url, &["tenant", "keys", &tenant_id]);
    let line = keys
        .lines()
        .find(|l| l.starts_with(&key_id))
        .expect("revoked key still listed");
    assert!(line.contains("\trevoked "), "{line}");
    let active = keys.lines().filter(|l| l.ends_with("\tactive")).count();
    assert_eq!(active, 1, "the first key is untouched:\n{keys}");
    let revoked_at: Option<String> = scalar(
        &db,
        "SELECT revoked_at::text FROM api_key WHERE id = $1",
        &key_id,
    )
    .await;
    assert!(revoked_at.is_some());

    // Unknown keys, keys of another tenant and garbage ids are errors.
    let (other_tenant, _) = create_tenant(&db.url, "other");
    for (tenant, key) in [
        (tenant_id.as_str(), "key_2bQ8mNeuVvnd6R0xgsJcZ6g3yNZ"),
        (other_tenant.as_str(), key_id.as_str()),
        (tenant_id.as_str(), "nope"),
    ] {
        let failed = herald(Some(&db.url), &["tenant", "revoke-key", tenant, key]);
        assert!(
            !failed.status.success(),
            "revoke-key {tenant} {key}: {}",
            describe(&failed)
        );
    }
    let failed = herald(
        Some(&db.url),
        &["tenant", "create-key", "tnt_2bQ8mNeuVvnd6R0xgsJcZ6g3yNZ"],
    );
    assert!(!failed.status.success(), "{}", describe(&failed));
}

#[tokio::test]
async fn migrate_succeeds_twice() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    for round in 1..=2 {
        let out = herald_ok(&db.url, &["migrate"]);
        assert!(out.contains("migrations applied"), "round {round}: {out}");
    }
    // The schema is there: a table from the first migration is queryable.
    let tenants: i64 = scalar(&db, "SELECT count(*) FROM tenant WHERE name <> $1", "").await;
    assert_eq!(tenants, 0);
    // And the tenant commands work on the migrated database.
    create_tenant(&db.url, "after-migrate");
}

#[tokio::test]
async fn migrate_creates_the_database_when_it_does_not_exist() {
    // Dropped at the end whether or not `herald` created it.
    let Some(db) = TestDatabase::reserve().await else {
        return;
    };
    let out = herald_ok(&db.url, &["migrate"]);
    assert!(out.contains("migrations applied"), "{out}");
    let tenants: i64 = scalar(&db, "SELECT count(*) FROM tenant WHERE name <> $1", "").await;
    assert_eq!(tenants, 0);
}

#[test]
fn a_non_postgres_database_url_fails_with_a_clear_message() {
    for args in [
        &["migrate"][..],
        &["tenant", "create", "acme", "--json"],
        &["tenant", "list"],
    ] {
        let output = herald(Some("mysql://x"), args);
        assert!(
            !output.status.success(),
            "herald {args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("HERALD_DATABASE_URL") && stderr.contains("postgres://"),
            "herald {args:?} does not say what is wrong: {}",
            describe(&output)
        );
        assert!(
            output.stdout.is_empty(),
            "herald {args:?}: {}",
            describe(&output)
        );
        assert!(
            !stderr.contains("panicked"),
            "herald {args:?} panicked: {}",
            describe(&output)
        );
    }
}

#[test]
fn openapi_prints_the_json_document() {
    // Needs no database: not even a database URL is set.
    let output = herald(None, &["openapi"]);
    assert!(output.status.success(), "{}", describe(&output));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/app",
        "/api/v1/app/{app_id}/endpoint",
        "/api/v1/auth/app-portal-access/{app_id}",
        "/admin/v1/tenants",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }
}
