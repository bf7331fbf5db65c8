//! Idempotency records reach a Redis that only speaks TLS (`rediss://`), as a
//! managed Redis requires: a redis-server started here with a certificate
//! from a throwaway CA, which the server under test trusts through
//! `SSL_CERT_FILE`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_e2e::{skip_or_fail, Backend, Herald, Options};
use serde_json::json;

/// A redis-server on a free loopback port that accepts only TLS; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=herald-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

fn start_tls_redis(dir: &Path) -> TlsRedis {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let redis = TlsRedis { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    redis
}

#[tokio::test]
async fn idempotency_records_go_to_a_redis_that_requires_tls() {
    let tools = ["redis-server", "redis-cli", "openssl"];
    if let Some(missing) = tools
        .iter()
        .find(|tool| Command::new(tool).arg("-h").output().is_err())
    {
        return skip_or_fail(missing, "not installed").unwrap_or(());
    }
    let dir = tempfile_dir();
    make_certificates(&dir);
    let redis = start_tls_redis(&dir);
    let ca = dir.join("ca.pem").display().to_string();

    let Some(herald) = Backend::Services
        .scope(Herald::start_with(Options {
            env: vec![
                (
                    "HERALD_REDIS_URL".into(),
                    format!("rediss://127.0.0.1:{}", redis.port),
                ),
                ("SSL_CERT_FILE".into(), ca),
            ],
            ..Options::default()
        }))
        .await
    else {
        return;
    };
    // The same key twice: one application, the second answer replayed from Redis.
    let post = || async {
        let response = herald
            .http
            .post(format!("{}/api/v1/app", herald.url))
            .bearer_auth(&herald.tenant.key)
            .header("idempotency-key", "tls-key-1")
            .json(&json!({ "name": "over tls" }))
            .send()
            .await
            .expect("POST /api/v1/app");
        Herald::reply(response).await
    };
    let first = post().await;
    let second = post().await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(
        first.body["id"], second.body["id"],
        "the retry was not replayed"
    );
    let apps = herald.get("/api/v1/app").await;
    assert_eq!(
        apps.body["data"].as_array().map(Vec::len),
        Some(1),
        "{apps:?}"
    );
    // The record is in the TLS-only Redis (the only one this server knows).
    let keys = Command::new("redis-cli")
        .args(["--tls", "--cacert", "ca.pem", "-h", "127.0.0.1"])
        .args(["-p", &redis.port.to_string(), "DBSIZE"])
        .current_dir(&dir)
        .output()
        .expect("run redis-cli");
    let keys = String::from_utf8_lossy(&keys.stdout).trim().to_owned();
    assert!(
        keys.parse::<u64>().is_ok_and(|n| n > 0),
        "the TLS Redis holds no key (DBSIZE said {keys:?})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "herald-redis-tls-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}
