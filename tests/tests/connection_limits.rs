//! A client cannot hold a connection open at will: a slow request head or an
//! idle connection is closed, a slow body gets a 408 in Herald's error shape,
//! and `HERALD_HTTP_MAX_CONNECTIONS` bounds how many connections are served at
//! once. Each server runs with one-second limits and a raw TCP client, so what
//! reaches the server is exactly what the test wrote, when it wrote it.
//!
//! The bounds asserted are generous (10 s against 1 s limits); without the
//! limit under test each connection would stay open for 30 s or more.

use std::time::Duration;

use herald_e2e::{Backend, Herald, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a limit of one second may take to show.
const BOUND: Duration = Duration::from_secs(10);
/// How often a slow client sends its next byte.
const TRICKLE: Duration = Duration::from_millis(300);

/// Starts an embedded server with these settings on top of the harness's.
async fn start(settings: &[(&str, &str)]) -> Herald {
    let env = settings
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let options = Options {
        env,
        ..Options::default()
    };
    Backend::Embedded
        .scope(Herald::start_with(options))
        .await
        .expect("the embedded backend needs no services")
}

async fn connect(herald: &Herald) -> TcpStream {
    TcpStream::connect(herald.address())
        .await
        .expect("connect to herald")
}

/// Reads one response (its head and a `Content-Length` body) until `deadline`;
/// `None` if no complete response arrived by then or the connection closed.
async fn read_response(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server closes `stream` before `deadline` (whatever it sends first).
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Writes `bytes` one at a time, a [`TRICKLE`] apart, until the server
/// answers or closes or `deadline` passes; returns what the server sent and
/// whether it closed the connection.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = bytes.iter();
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return (String::from_utf8_lossy(&received).into_owned(), true),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(TRICKLE), if received.is_empty() => {
                let Some(byte) = next.next() else { continue };
                if stream.write_all(&[*byte]).await.is_err() {
                    return (String::from_utf8_lossy(&received).into_owned(), true);
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return (String::from_utf8_lossy(&received).into_owned(), false);
            }
        }
    }
}

fn health_request(herald: &Herald) -> String {
    format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\n\r\n",
        herald.address()
    )
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_or_never_gets_the_connection_closed() {
    let herald = start(&[
        ("HERALD_HTTP_HEADER_TIMEOUT", "1"),
        ("HERALD_HTTP_IDLE_TIMEOUT", "60"),
    ])
    .await;

    // A head padded to take a minute at this pace: only the limit ends it.
    let head = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\nX-Padding: {}\r\n\r\n",
        herald.address(),
        "p".repeat(200)
    );
    let mut slow = connect(&herald).await;
    let (answer, closed) = trickle(&mut slow, head.as_bytes(), Instant::now() + BOUND).await;
    assert!(
        closed,
        "a head trickled a byte per {TRICKLE:?} kept its connection for {BOUND:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "answered a head that never ended: {answer}"
    );

    // A connection that never sends anything is closed as well.
    let mut silent = connect(&herald).await;
    assert!(
        closed_by(&mut silent, Instant::now() + BOUND).await,
        "a silent connection stayed open for {BOUND:?}"
    );

    // A head sent at once is served on a fresh connection.
    let mut prompt = connect(&herald).await;
    prompt
        .write_all(health_request(&herald).as_bytes())
        .await
        .expect("send");
    let reply = read_response(&mut prompt, Instant::now() + BOUND).await;
    assert!(
        reply
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.1 204")),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_with_code_and_detail_and_stores_nothing() {
    let herald = start(&[
        ("HERALD_HTTP_BODY_TIMEOUT", "1"),
        ("HERALD_HTTP_HEADER_TIMEOUT", "60"),
        ("HERALD_HTTP_IDLE_TIMEOUT", "60"),
    ])
    .await;
    let body = br#"{"name": "slow", "uid": "slow", "metadata": {"padding": "..................................................."}}"#;
    let head = format!(
        "POST /api/v1/app HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        herald.address(),
        herald.tenant.key,
        body.len()
    );
    let mut stream = connect(&herald).await;
    stream.write_all(head.as_bytes()).await.expect("send head");

    // Every byte comes sooner than the limit, so only a deadline on the whole
    // body (not on the gap between two reads) ends this.
    let (answer, closed) = trickle(&mut stream, body, Instant::now() + BOUND).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a body trickled a byte per {TRICKLE:?} got: {answer:?}"
    );
    let json = &answer[answer.find("\r\n\r\n").expect("a head") + 4..];
    let error: serde_json::Value = serde_json::from_str(json).expect("a JSON body");
    assert_eq!(error["code"], "request_timeout", "{error}");
    assert!(error["detail"].is_string(), "{error}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "a 408 closes the connection: {answer}"
    );
    assert!(closed, "the connection stayed open after the 408");
    assert_eq!(herald.count_rows("application").await, 0);

    // The same body sent at once is taken.
    let created = herald
        .request_raw(
            reqwest::Method::POST,
            "/api/v1/app",
            Some(&herald.tenant.key),
            "application/json",
            body.to_vec(),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let herald = start(&[
        ("HERALD_HTTP_IDLE_TIMEOUT", "1"),
        ("HERALD_HTTP_HEADER_TIMEOUT", "60"),
    ])
    .await;
    let mut stream = connect(&herald).await;
    stream
        .write_all(health_request(&herald).as_bytes())
        .await
        .expect("send");
    let reply = read_response(&mut stream, Instant::now() + BOUND)
        .await
        .expect("a response");
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    assert!(
        !reply.to_ascii_lowercase().contains("connection: close"),
        "the connection is kept alive: {reply}"
    );
    assert!(
        closed_by(&mut stream, Instant::now() + BOUND).await,
        "an idle keep-alive connection stayed open for {BOUND:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let mut herald = start(&[
        ("HERALD_HTTP_MAX_CONNECTIONS", "2"),
        ("HERALD_HTTP_HEADER_TIMEOUT", "60"),
        ("HERALD_HTTP_IDLE_TIMEOUT", "60"),
    ])
    .await;
    // The harness's client keeps its connection alive; a new client drops
    // it, so the cap is the test's alone.
    herald.http = reqwest::Client::new();
    let request = health_request(&herald);

    // Two connections, each served once and then kept open, idle.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&herald).await;
        stream.write_all(request.as_bytes()).await.expect("send");
        let reply = read_response(&mut stream, Instant::now() + BOUND).await;
        assert!(
            reply
                .as_deref()
                .is_some_and(|r| r.starts_with("HTTP/1.1 204")),
            "connection {} of 2: {reply:?}",
            open.len() + 1
        );
        open.push(stream);
    }

    // A third connects (the kernel's backlog takes it) but is not served...
    let mut third = connect(&herald).await;
    third.write_all(request.as_bytes()).await.expect("send");
    let early = read_response(&mut third, Instant::now() + Duration::from_secs(2)).await;
    assert!(
        early.is_none(),
        "a third connection was served with two open and a cap of 2: {early:?}"
    );

    // ...until one of the two closes.
    drop(open.remove(0));
    let reply = read_response(&mut third, Instant::now() + BOUND).await;
    assert!(
        reply
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.1 204")),
        "the third connection was not served after one closed: {reply:?}"
    );
    assert!(herald.is_running());
}
