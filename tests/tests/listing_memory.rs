//! A message listing holds a bounded number of payload bytes: one call of
//! `GET …/msg?limit=250` over large payloads must not cost the server hundreds
//! of megabytes. Measured as the process's peak resident memory (`VmHWM`,
//! reset through `/proc/<pid>/clear_refs` just before the listings).

use herald_e2e::Herald;
use reqwest::StatusCode;
use serde_json::json;

/// Messages of about 1 MB each: 40 MB of payload in all.
const MESSAGES: usize = 40;
const PAYLOAD_CHARS: usize = 1_000_000;

/// A field of `/proc/<pid>/status`, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

/// Resets the process's peak resident memory to its current size (Linux 4.0+).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("write clear_refs");
}

herald_e2e::e2e_tests! {
    async fn listing_large_payloads_holds_a_bounded_number_of_bytes() {
        let Some(herald) = Herald::start().await else {
            return;
        };
        let app = herald.post("/api/v1/app", json!({"name": "big", "uid": "big"})).await;
        assert_eq!(app.status, StatusCode::CREATED, "{app:?}");
        for i in 0..MESSAGES {
            // Digits, so no compression in the database makes them small.
            let blob: String = (0..PAYLOAD_CHARS).map(|n| char::from(b'0' + ((n * 7 + i) % 10) as u8)).collect();
            let reply = herald
                .post("/api/v1/app/big/msg", json!({"eventType": "big", "payload": {"blob": blob}}))
                .await;
            assert_eq!(reply.status, StatusCode::ACCEPTED, "message {i}: {:?}", reply.status);
        }

        let pid = herald.pid();
        let before_kb = status_kb(pid, "VmRSS");
        reset_peak(pid);
        let list = || herald.get("/api/v1/app/big/msg?limit=250");
        let (first, second) = tokio::join!(list(), list());
        let growth_mb = (status_kb(pid, "VmHWM").saturating_sub(before_kb)) / 1024;
        eprintln!("two concurrent listings of {MESSAGES} ~1 MB payloads raised the peak by {growth_mb} MB");
        // Unbounded, each listing held every payload several times over
        // (rows, response values, the serialised body): far past this.
        assert!(growth_mb < 80, "two listings raised the peak RSS by {growth_mb} MB");

        for page in [&first, &second] {
            assert_eq!(page.status, StatusCode::OK);
            let data = page.body["data"].as_array().expect("data");
            assert!(!data.is_empty() && data.len() <= 4, "{} messages in one page", data.len());
            assert_eq!(page.body["done"], false, "the page was cut short, so it is not done");
            assert!(data.iter().all(|m| m["payload"]["blob"].as_str().map(str::len) == Some(PAYLOAD_CHARS)));
        }

        // Following the iterator reaches every message once.
        let mut seen = std::collections::HashSet::new();
        let mut path = "/api/v1/app/big/msg?limit=250".to_owned();
        for _ in 0..MESSAGES + 1 {
            let page = herald.get(&path).await;
            assert_eq!(page.status, StatusCode::OK);
            for message in page.body["data"].as_array().expect("data") {
                assert!(seen.insert(message["id"].as_str().expect("id").to_owned()), "listed twice");
            }
            if page.body["done"] == true {
                break;
            }
            let iterator = page.body["iterator"].as_str().expect("iterator");
            path = format!("/api/v1/app/big/msg?limit=250&iterator={iterator}");
        }
        assert_eq!(seen.len(), MESSAGES, "every message is listed once");

        // Without content, one page holds them all, and no payload.
        let bare = herald.get("/api/v1/app/big/msg?limit=250&with_content=false").await;
        assert_eq!(bare.status, StatusCode::OK);
        let data = bare.body["data"].as_array().expect("data");
        assert_eq!(data.len(), MESSAGES);
        assert_eq!(bare.body["done"], true);
        assert!(data.iter().all(|m| m["payload"] == json!({})), "payloads left out");
    }
}
