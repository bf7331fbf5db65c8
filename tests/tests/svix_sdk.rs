//! The official Svix Python SDK against a real server, from the cached virtual
//! environment of the providers' pinned PyPI packages
//! (`herald_verifiers::python::PROVIDERS`):
//!
//! - `tests/python/svix_compat.py` (svix==2.9.1) drives every route the SDK
//!   has that Herald serves, and parses every answer with the SDK's models;
//! - `tests/python/svix_delivery.py` posts messages with the SDK, receives them
//!   on its own local receiver, and verifies bytes and signatures with the
//!   `standardwebhooks` library and with `svix.webhooks.Webhook`, before and
//!   after a secret rotation (when both secrets must verify).

mod common;

use herald_e2e::{Herald, Options};

/// A server with the worker, delivering to loopback receivers the scripts run.
async fn start() -> Option<Herald> {
    Herald::start_with(Options {
        worker: true,
        rabbit: true,
        ..Options::default()
    })
    .await
}

herald_e2e::e2e_tests! {
    async fn the_official_svix_python_sdk_works_against_herald() {
        // With the worker: the script checks the attempt log of real deliveries
        // to a receiver it runs on 127.0.0.1.
        let Some(herald) = start().await else {
            return;
        };
        common::run_script(&herald, "svix_compat.py", "svix sdk compat: ok", &[]).await;
    }
}

herald_e2e::e2e_tests! {
    async fn sdk_messages_arrive_byte_identical_and_verify_before_and_after_rotation() {
        let Some(herald) = start().await else {
            return;
        };
        let Some(stdout) = common::run_script(&herald, "svix_delivery.py", "svix delivery: ok", &[]).await else {
            return;
        };

        // The server's own record agrees: each message was delivered once, at the
        // first attempt, with a 2xx.
        let msg_ids: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("msg "))
            .collect();
        assert_eq!(msg_ids.len(), 2, "script output:\n{stdout}");
        let mut db = common::db(&herald).await;
        for msg_id in msg_ids {
            let state: (String, i32) =
                sqlx::query_as("SELECT state, attempts FROM delivery WHERE msg_id = $1")
                    .bind(msg_id)
                    .fetch_one(&mut db)
                    .await
                    .expect("one delivery row per message");
            assert_eq!(state, ("succeeded".to_owned(), 1), "delivery of {msg_id}");
            let attempts: Vec<(i32, Option<String>)> = sqlx::query_as(
                "SELECT status_code, error_class FROM message_attempt WHERE msg_id = $1",
            )
            .bind(msg_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
            assert_eq!(attempts, vec![(204, None)], "attempts of {msg_id}");
        }
    }
}
