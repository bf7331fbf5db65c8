//! Connections to PostgreSQL use TLS when the connection settings ask for it
//! (`?sslmode=require` in HERALD_DATABASE_URL, or libpq's `PGSSLMODE`), as a
//! managed database requires. Needs a server with `ssl = on` (Debian's
//! default, with its snakeoil certificate).

use herald_e2e::{skip_or_fail, Backend, Herald, Options};
use serde_json::json;
use sqlx::Connection;

/// Whether every connection the server under test holds to its database is
/// encrypted, and how many it holds.
async fn tls_of_connections(herald: &Herald) -> (bool, i64) {
    let mut admin = sqlx::PgConnection::connect(&herald_e2e::postgres_admin_url())
        .await
        .expect("connect to PostgreSQL");
    sqlx::query_as(
        "SELECT coalesce(bool_and(s.ssl), false), count(*) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&herald.db.name)
    .fetch_one(&mut admin)
    .await
    .expect("read pg_stat_ssl")
}

async fn server_with_sslmode(mode: &str) -> Option<Herald> {
    Backend::Services
        .scope(Herald::start_with(Options {
            env: vec![("PGSSLMODE".into(), mode.into())],
            ..Options::default()
        }))
        .await
}

#[tokio::test]
async fn database_connections_are_encrypted_when_tls_is_required() {
    let Ok(mut admin) = sqlx::PgConnection::connect(&herald_e2e::postgres_admin_url()).await else {
        return skip_or_fail("PostgreSQL", "unreachable").unwrap_or(());
    };
    let (ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .expect("SHOW ssl");
    if ssl != "on" {
        return skip_or_fail("PostgreSQL with ssl = on", "ssl is off").unwrap_or(());
    }

    let Some(herald) = server_with_sslmode("require").await else {
        return;
    };
    // The server works over it: a write and a read.
    let created = herald.post("/api/v1/app", json!({ "name": "tls" })).await;
    assert_eq!(created.status, 201, "{created:?}");
    let listed = herald.get("/api/v1/app").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let (encrypted, connections) = tls_of_connections(&herald).await;
    assert!(connections > 0, "the server holds no connection");
    assert!(encrypted, "some of {connections} connections are not TLS");

    // And the check tells the difference: without TLS it sees plain connections.
    let Some(plain) = server_with_sslmode("disable").await else {
        return;
    };
    let (encrypted, connections) = tls_of_connections(&plain).await;
    assert!(connections > 0, "the server holds no connection");
    assert!(!encrypted, "sslmode=disable yet the connections are TLS");
}
