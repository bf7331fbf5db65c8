//! Runs the store contract against SQLite, each test on a fresh database file
//! in its own temporary directory (removed afterwards), plus what only SQLite
//! needs checking: the file settings and writers in two processes.

mod contract;

use herald_store::prelude::*;
use herald_store::SqlStore;

/// A migrated store on a fresh file (its directory is removed with the guard).
struct FreshFile {
    store: SqlStore,
    dir: tempfile::TempDir,
}

async fn fresh() -> Option<FreshFile> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(&dir).await;
    store.migrate().await.expect("migrate");
    Some(FreshFile { store, dir })
}

async fn open(dir: &tempfile::TempDir) -> SqlStore {
    let path = dir.path().join("herald.db");
    SqlStore::sqlite(path.to_str().expect("utf-8 path"), 4)
        .await
        .expect("open SQLite store")
}

contract::contract_tests!(fresh);

#[tokio::test]
async fn the_file_is_created_in_wal_mode_with_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/herald.db");
    let store = SqlStore::sqlite(&format!("sqlite://{}", path.display()), 2)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    assert!(path.exists());
    let (writer, reader) = store.sqlite_pools().expect("a SQLite store");
    for pool in [writer, reader] {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(foreign_keys, 1);
        // NORMAL = 1.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(synchronous, 1);
    }
    // Readers cannot write, so no write ever bypasses the writer queue.
    let refused = sqlx::query("INSERT INTO server_setting (name, value) VALUES ('x', 'y')")
        .execute(reader)
        .await;
    assert!(refused.is_err());
    store.close().await;
}

#[tokio::test]
async fn writers_in_two_processes_wait_for_each_other() {
    // Two stores on one file stand for two processes (e.g. a CLI command next
    // to the server): their writes contend for SQLite's lock, and wait for it
    // (busy timeout, BEGIN IMMEDIATE) rather than fail with SQLITE_BUSY.
    let Some(first) = fresh().await else { return };
    let second = open(&first.dir).await;
    let stores: [&dyn Store; 2] = [&first.store, &second];
    let t = contract::tenant(&first.store, "t").await;
    let app = contract::application(None);
    first.store.insert_application(&t, &app).await.unwrap();
    let ep = contract::endpoint(&app.id, None);
    first.store.insert_endpoint(&t, &ep).await.unwrap();
    let (t, app, ep) = (&t, &app, &ep);
    let writes = (0..40).map(|i| async move {
        let store = stores[i % 2];
        let now = herald_store::now();
        let msg = herald_store::Message {
            id: herald_core::MessageId::new(),
            app_id: app.id.clone(),
            event_id: None,
            event_type: herald_core::EventTypeName::parse("a.b").unwrap(),
            channels: None,
            tags: None,
            payload: Some(b"{}".to_vec()),
            created_at: now,
            expires_at: now + chrono::Duration::days(1),
        };
        store
            .insert_message(t, &msg, std::slice::from_ref(&ep.id))
            .await
            .unwrap();
        store
            .claim_due_deliveries(
                herald_store::now() + chrono::Duration::seconds(1),
                chrono::Duration::seconds(30),
                5,
            )
            .await
            .unwrap()
            .len()
    });
    let claimed: usize = futures::future::join_all(writes).await.into_iter().sum();
    assert_eq!(claimed, 40, "every delivery claimed exactly once");
    second.close().await;
}

#[tokio::test]
async fn an_unknown_stored_error_class_reads_as_other() {
    // A class name this version does not know (another version's, or one
    // written by hand) must not make the attempt unreadable.
    let Some(fresh) = fresh().await else { return };
    let store = &fresh.store;
    let t = contract::tenant(store, "t").await;
    let app = contract::application(None);
    store.insert_application(&t, &app).await.unwrap();
    let ep = contract::endpoint(&app.id, None);
    store.insert_endpoint(&t, &ep).await.unwrap();
    let msg = contract::message(&app.id);
    store
        .insert_message(&t, &msg, std::slice::from_ref(&ep.id))
        .await
        .unwrap();
    let attempt = herald_store::Attempt {
        id: herald_core::AttemptId::new(),
        msg_id: msg.id.clone(),
        endpoint_id: ep.id.clone(),
        app_id: app.id.clone(),
        url: ep.url.as_str().to_owned(),
        status_code: 0,
        error_class: Some(herald_core::ErrorClass::Timeout),
        response_body: None,
        request_headers: None,
        response_headers: None,
        duration_us: 1,
        trigger: herald_store::AttemptTrigger::Scheduled,
        created_at: herald_store::now(),
    };
    let update = herald_store::DeliveryUpdate {
        state: herald_store::DeliveryState::Dead,
        next_attempt_at: None,
    };
    store.record_attempt(&t, &attempt, &update).await.unwrap();
    let (writer, _) = store.sqlite_pools().expect("a SQLite store");
    for (stored, read) in [
        ("timeout", herald_core::ErrorClass::Timeout),
        ("expired", herald_core::ErrorClass::Other),
    ] {
        sqlx::query("UPDATE message_attempt SET error_class = $1 WHERE id = $2")
            .bind(stored)
            .bind(attempt.id.as_str())
            .execute(writer)
            .await
            .unwrap();
        let attempts = store.attempts_of_message(&t, &msg.id).await.unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.error_class).collect::<Vec<_>>(),
            [Some(read)],
            "stored {stored:?}"
        );
    }
    store.close().await;
}
