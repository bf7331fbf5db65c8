//! Delivery survives RabbitMQ dropping every connection mid-burst
//! (`rabbitmqctl close_all_connections`), in the production topology: an API
//! process and a separate worker process of the real binary.
//!
//! In its own test binary: closing every connection on the broker would
//! disturb the other RabbitMQ tests, and cargo runs test binaries one at a time.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_e2e::receiver::Receiver;
use herald_e2e::skip_or_fail;
use herald_e2e::topology::{
    count_by_message, create_app, post_messages, Topology, TopologyOptions,
};

const BURST: usize = 3000;
const POST_CONCURRENCY: usize = 32;

async fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let mut command = tokio::process::Command::new("rabbitmqctl");
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Ok(Ok(output)) => Err(format!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )),
        Ok(Err(e)) => Err(format!("cannot run rabbitmqctl: {e}")),
        Err(_) => Err(format!("rabbitmqctl {args:?} did not finish within 60 s")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_of_a_burst_arrives_although_rabbitmq_drops_every_connection() {
    if let Err(why) = rabbitmqctl(&["version"]).await {
        let _: Option<()> = skip_or_fail("rabbitmqctl", &why);
        return;
    }
    let Some(topology) = Topology::start(TopologyOptions::default()).await else {
        return;
    };
    let receiver = Receiver::start().await;
    create_app(&topology.api, "burst", &[receiver.url("fast")]).await;

    let started = Instant::now();
    let posted = Arc::new(AtomicUsize::new(0));
    let posting = tokio::spawn(post_messages(
        topology.api.url.clone(),
        topology.api.tenant.key.clone(),
        "burst".to_owned(),
        BURST,
        POST_CONCURRENCY,
        posted.clone(),
    ));

    // Cut every connection twice while the burst is being delivered.
    let mut cuts = Vec::new();
    for threshold in [BURST / 10, BURST * 2 / 5] {
        let got = receiver
            .wait_for("fast", threshold, Duration::from_secs(90))
            .await
            .len();
        assert!(
            got >= threshold,
            "only {got} deliveries within 90 s; logs:\n{}",
            topology.logs()
        );
        rabbitmqctl(&["close_all_connections", "e2e test"])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        cuts.push((
            count_by_message(&receiver.received("fast")).len(),
            posted.load(Ordering::Relaxed),
        ));
    }
    assert!(
        cuts[0].0 < BURST / 2,
        "the first cut came too late to prove anything: {cuts:?}"
    );

    let ids: HashSet<String> = tokio::time::timeout(Duration::from_secs(180), posting)
        .await
        .expect("posting finishes within 180 s")
        .expect("every message is accepted")
        .into_iter()
        .collect();
    assert_eq!(ids.len(), BURST);
    let posted_in = started.elapsed();

    // Unacknowledged tasks come back from RabbitMQ when the worker's consumer
    // reconnects; deliveries whose tasks were lost come back after the lease (20 s).
    let (counts, _) = topology
        .wait_for_every_message(&receiver, "fast", &ids, Duration::from_secs(120))
        .await;
    let all_in = started.elapsed();
    let total: usize = counts.values().sum();
    eprintln!(
        "connections closed at (arrived, posted) {cuts:?} of {BURST}; all posted after \
         {posted_in:?}, all arrived after {all_in:?}; {total} requests for {} messages: \
         {} duplicates",
        counts.len(),
        total - counts.len()
    );
}
