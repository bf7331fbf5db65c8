//! Recovery from lost connections: RabbitMQ dropping every connection
//! (`rabbitmqctl close_all_connections`, in its own test binary because it would
//! disturb the other tests of this crate running in parallel), RabbitMQ
//! dropping one queue's connections (the event bus), and the broker being
//! unreachable for a while (a proxy that is cut and restored).

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_queue::{EventBus, Queue};
use support::{
    attempt, drain_events_until_seen, drain_until_seen, msg_id, next_event, next_task, task,
    with_rabbit, with_rabbit_options, Proxy,
};

/// The two tests here disrupt connections; one at a time keeps each test's
/// disruption its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rabbitmqctl_available() -> bool {
    Command::new("rabbitmqctl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success())
}

async fn close_all_connections() {
    let output = tokio::task::spawn_blocking(|| {
        Command::new("rabbitmqctl")
            .args(["close_all_connections", "test"])
            .output()
    })
    .await
    .expect("join rabbitmqctl")
    .expect("run rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl close_all_connections failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Closes the broker's connections whose name mentions `prefix` (every
/// connection of one test's queue: `herald-queue {prefix} …`), leaving other
/// clients of the broker alone; returns how many it closed.
async fn close_connections_of(prefix: &str) -> usize {
    let prefix = prefix.to_owned();
    tokio::task::spawn_blocking(move || {
        let listed = Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("run rabbitmqctl list_connections");
        assert!(
            listed.status.success(),
            "rabbitmqctl list_connections failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
        let needle = format!("herald-queue {prefix} ");
        let mut closed = 0;
        for line in String::from_utf8_lossy(&listed.stdout).lines() {
            let Some((pid, properties)) = line.split_once('\t') else {
                continue;
            };
            if !properties.contains(&needle) {
                continue;
            }
            let output = Command::new("rabbitmqctl")
                .args(["close_connection", pid.trim(), "test"])
                .output()
                .expect("run rabbitmqctl close_connection");
            // A connection may have closed by itself since it was listed.
            if output.status.success() {
                closed += 1;
            }
        }
        closed
    })
    .await
    .expect("join rabbitmqctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_publishing_and_consuming_recover_after_their_connections_are_closed() {
    if !rabbitmqctl_available() {
        support::skip_notice("rabbitmqctl not found; cannot force-close connections");
        return;
    }
    let _serial = SERIAL.lock().await;
    with_rabbit(|harness| async move {
        let queue = harness.queue.clone();
        let prefix = queue.topology().attempts_exchange.clone();
        let prefix = prefix.trim_end_matches(".attempts").to_owned();
        for n in 1..=20 {
            queue
                .publish_attempt(&attempt(n))
                .await
                .expect("publish before");
        }

        let mut consumer = queue.consume_attempts(5).await.expect("consume");
        let mut acked = HashSet::new();
        let mut held = Vec::new();
        for n in 0..6 {
            let received = next_event(&mut consumer).await;
            if n % 2 == 0 {
                acked.insert(received.event.attempt_id.clone());
                received.ack().await.expect("ack before the disruption");
            } else {
                held.push(received);
            }
        }

        // Keep publishing one by one until the connections were closed, and
        // twenty more after that.
        let disrupted = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (queue, disrupted) = (queue.clone(), Arc::clone(&disrupted));
            tokio::spawn(async move {
                let mut n = 20;
                let mut after = 0;
                while after < 20 {
                    if disrupted.load(Ordering::SeqCst) {
                        after += 1;
                    }
                    n += 1;
                    queue.publish_attempt(&attempt(n)).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok::<_, herald_queue::QueueError>(n)
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let closed = close_connections_of(&prefix).await;
        disrupted.store(true, Ordering::SeqCst);
        assert!(
            closed >= 2,
            "closed {closed} connections, expected the publisher's and the consumer's"
        );
        let last = publisher
            .await
            .expect("join publisher")
            .expect("event publishing recovers after its connection is closed");

        // The held events died with their connection; the consumer's new
        // connection gets them again.
        drop(held);
        let expected: HashSet<String> = (1..=last)
            .map(|n| attempt(n).attempt_id)
            .filter(|id| !acked.contains(id))
            .collect();
        drain_events_until_seen(&mut consumer, &expected).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_recover_after_all_connections_are_closed() {
    if !rabbitmqctl_available() {
        support::skip_notice("rabbitmqctl not found; cannot force-close connections");
        return;
    }
    let _serial = SERIAL.lock().await;
    with_rabbit(|harness| async move {
        let queue = harness.queue.clone();
        let before: Vec<_> = (1..=50).map(task).collect();
        queue.publish_many(&before).await.expect("publish before");

        let mut consumer = queue.consume(10).await.expect("consume");
        let mut acked = HashSet::new();
        let mut held = Vec::new();
        for n in 0..10 {
            let received = next_task(&mut consumer).await;
            if n % 2 == 0 {
                acked.insert(received.task.msg_id.to_string());
                received.ack().await.expect("ack before the disruption");
            } else {
                held.push(received);
            }
        }

        // Keep publishing one by one while the broker drops every connection.
        let publisher = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for n in 51..=150 {
                    queue.publish(&task(n)).await?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok::<_, herald_queue::QueueError>(())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        close_all_connections().await;
        publisher
            .await
            .expect("join publisher")
            .expect("publishing recovers after connections are closed");

        // The held deliveries died with their connection; the broker hands them
        // out again on the consumer's new connection.
        drop(held);
        let expected: HashSet<String> = (1..=150)
            .map(msg_id)
            .filter(|id| !acked.contains(id))
            .collect();
        drain_until_seen(&mut consumer, &expected).await;
    })
    .await;
}

// The consumer's connection dies while the drainer is acking what it had
// already received; lapin can lose an ack made at that instant, and before
// acks were bounded (`RabbitOptions::settle_timeout`) this test hung there in
// most runs, as a worker would after a broker restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_resume_when_an_unreachable_broker_comes_back() {
    let _serial = SERIAL.lock().await;
    let mut proxy = Proxy::start(&support::amqp_url()).await;
    let proxy_url = proxy.url(&support::amqp_url());
    let configure = |options: &mut herald_queue::RabbitOptions| {
        options.url = proxy_url;
        options.reconnect_max = Duration::from_millis(500);
    };
    with_rabbit_options(configure, |harness| async move {
        let queue = harness.queue.clone();
        let before: Vec<_> = (1..=20).map(task).collect();
        queue.publish_many(&before).await.expect("publish before");
        let mut consumer = queue.consume(10).await.expect("consume");
        let mut acked = HashSet::new();
        let mut held = Vec::new();
        for n in 0..6 {
            let received = next_task(&mut consumer).await;
            if n % 2 == 0 {
                acked.insert(received.task.msg_id.to_string());
                received.ack().await.expect("ack before the outage");
            } else {
                held.push(received);
            }
        }

        proxy.cut().await;
        // Both sides keep trying (with backoff) while the broker is unreachable.
        let publisher = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let during: Vec<_> = (21..=40).map(task).collect();
                queue.publish_many(&during).await
            })
        };
        let expected: HashSet<String> = (1..=40)
            .map(msg_id)
            .filter(|id| !acked.contains(id))
            .collect();
        let drainer = tokio::spawn(async move {
            drain_until_seen(&mut consumer, &expected).await;
        });
        drop(held);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !publisher.is_finished(),
            "publish cannot succeed while the broker is unreachable"
        );
        proxy.restore().await;

        publisher
            .await
            .expect("join publisher")
            .expect("publishing resumes when the broker is back");
        drainer.await.expect("every task arrives after the outage");
    })
    .await;
}
