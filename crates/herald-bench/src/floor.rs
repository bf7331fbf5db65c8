//! `herald-bench floor-broker`: RabbitMQ's floor, the CPU a bare publish,
//! delivery and ack cost per message on this broker, with none of Herald
//! around them. Publishers send batches of N persistent messages and wait
//! once per batch for their confirms; a consumer acks every N deliveries
//! with one `multiple` ack. The queue is declared like Herald's work queue
//! (`crates/herald-queue/src/rabbit.rs`): a durable quorum queue behind a
//! direct exchange, with the same dead-lettering arguments. See
//! `docs/benchmarks.md`, "The floor".

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;

use crate::cpu;
use crate::report::{rate, round3};

/// Routing key of the work queue, as Herald's.
const KEY_DELIVERIES: &str = "deliveries";
/// Routing key of the dead-letter queue, as Herald's.
const KEY_DEAD: &str = "dead";
/// `x-delivery-limit` of the work queue: herald-queue's `DEFAULT_DELIVERY_LIMIT`.
const DELIVERY_LIMIT: i32 = 10;
/// Longest wait, after publishing stops, for every message to be acked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Times a run is made before its failure (such as the broker closing the
/// connections, as herald-queue's reconnect test does) ends the measurement.
const ATTEMPTS: u32 = 5;
/// Wait before making a failed run again.
const RETRY_PAUSE: Duration = Duration::from_secs(20);
/// Left to the broker, after the last ack is sent, to process it before the
/// CPU time is read.
const SETTLE: Duration = Duration::from_millis(250);

/// How the work queue is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueType {
    /// Herald's: a quorum queue with its dead-lettering arguments.
    Quorum,
    /// A durable classic queue without arguments, for comparison.
    Classic,
}

/// Measures RabbitMQ's floor: batched publishes with confirms, consumed and
/// acked in batches.
#[derive(Debug, Parser)]
#[command(
    name = "herald-bench floor-broker",
    bin_name = "herald-bench floor-broker"
)]
pub struct FloorArgs {
    /// AMQP URL of the broker.
    #[arg(
        long,
        env = "HERALD_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Messages per batch: published before one wait for their confirms, and
    /// acked with one `multiple` ack (repeatable).
    #[arg(long = "batch", value_name = "N", default_values_t = [1u16, 8, 32, 128])]
    batches: Vec<u16>,
    /// Seconds each run publishes for.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Runs of each batch size.
    #[arg(long, default_value_t = 2)]
    repeat: u32,
    /// Publishers, each on its own confirm-mode channel of one connection and
    /// each with one batch in flight.
    #[arg(long, default_value_t = 4)]
    publishers: u16,
    /// Size of each message body, in bytes (a JSON object).
    #[arg(long, default_value_t = 500)]
    body_bytes: usize,
    /// The work queue's type (repeatable: each batch size runs on each).
    #[arg(long = "queue-type", value_enum, default_values_t = [QueueType::Quorum])]
    queue_types: Vec<QueueType>,
    /// Pid of the broker (RabbitMQ's beam.smp): its CPU time and that of its
    /// children is counted.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// With --broker-pid: seconds before each run during which the broker's
    /// CPU is read with nothing of ours going on (its idle use, and whatever
    /// other clients of the broker cost meanwhile).
    #[arg(long, default_value_t = 3)]
    idle_seconds: u64,
    /// Prefix of the exchange and queues declared (and deleted afterwards);
    /// not Herald's, so a Herald on the same broker is left alone.
    #[arg(long, default_value = "herald-floor")]
    prefix: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloorRun {
    pub queue_type: QueueType,
    pub batch: u16,
    /// Which run of this batch size and queue type, from 1.
    pub run: u32,
    /// Messages published and confirmed (all of them also consumed and acked).
    pub messages: u64,
    /// From the first publish to the last ack sent.
    pub secs: f64,
    pub messages_per_sec: f64,
    /// prefetch of the consumer: every batch the publishers can have in
    /// flight, twice.
    pub prefetch: u16,
    /// The broker's process tree (`--broker-pid`), over the run and the
    /// settling time after it.
    pub broker_cpu_secs: Option<f64>,
    pub broker_ms_per_message: Option<f64>,
    /// The broker's CPU over the `--idle-seconds` before the run, in percent
    /// of one cpu.
    pub broker_idle_percent: Option<f64>,
    /// `broker_ms_per_message` less that idle rate over the run's window.
    pub broker_net_ms_per_message: Option<f64>,
    /// This process: the publishers and the consumer.
    pub client_cpu_secs: Option<f64>,
    pub client_ms_per_message: Option<f64>,
    /// Busy time of the whole machine over the run, in percent of all cpus.
    pub machine_busy_percent: Option<f64>,
}

/// The exchange and queue names under `prefix`.
struct Names {
    exchange: String,
    deliveries: String,
    dead: String,
}

impl Names {
    fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}.work"),
            deliveries: format!("{prefix}.deliveries"),
            dead: format!("{prefix}.dead"),
        }
    }
}

/// Runs every queue type and batch size `--repeat` times, prints a line per
/// run and, with `--json`, writes them all.
pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    if args.publishers == 0 || args.batches.contains(&0) {
        bail!("--publishers and every --batch must be at least 1");
    }
    let names = Names::new(&args.prefix);
    let body = Arc::new(body(args.body_bytes));
    println!(
        "queue\tbatch\trun\tmessages\tmsg/s\tbroker_ms/msg\tbroker_idle_%\tbroker_net_ms/msg\t\
         client_ms/msg\tmachine_busy_%"
    );
    let mut runs = Vec::new();
    for &queue_type in &args.queue_types {
        let setup = connect(&args.amqp_url, "setup").await?;
        declare(&setup.create_channel().await?, &names, queue_type).await?;
        let _ = setup.close(200, "done".into()).await;
        for &batch in &args.batches {
            for number in 1..=args.repeat {
                let mut attempt = 1;
                let run = loop {
                    match run_once(&args, &names, &body, queue_type, batch, number).await {
                        Ok(run) => break run,
                        Err(e) if attempt < ATTEMPTS => {
                            eprintln!(
                                "herald-bench: run failed, running it again in {RETRY_PAUSE:?}: \
                                 {e:#}"
                            );
                            attempt += 1;
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                println!(
                    "{:?}\t{}\t{}\t{}\t{:.0}\t{}\t{}\t{}\t{}\t{}",
                    run.queue_type,
                    run.batch,
                    run.run,
                    run.messages,
                    run.messages_per_sec,
                    show(run.broker_ms_per_message),
                    show(run.broker_idle_percent),
                    show(run.broker_net_ms_per_message),
                    show(run.client_ms_per_message),
                    show(run.machine_busy_percent),
                );
                runs.push(run);
            }
        }
        let setup = connect(&args.amqp_url, "setup").await?;
        delete(&setup.create_channel().await?, &names).await?;
        let _ = setup.close(200, "done".into()).await;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&runs)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("herald-bench: results written to {}", path.display());
    }
    Ok(())
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// A JSON object of `bytes` bytes (at least its 10 bytes of syntax).
fn body(bytes: usize) -> Vec<u8> {
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes.saturating_sub(10))).into_bytes()
}

async fn connect(url: &str, role: &str) -> anyhow::Result<Connection> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("herald-floor {role}").into());
    Connection::connect(url, properties)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Declares the direct exchange, the work queue and the dead-letter queue it
/// dead-letters to, as Herald declares its own (see `declare_topology` in
/// `crates/herald-queue/src/rabbit.rs`), or a classic work queue.
async fn declare(channel: &Channel, names: &Names, queue_type: QueueType) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let text = |s: &str| AMQPValue::LongString(s.into());
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), text("quorum"));
    let queues = match queue_type {
        QueueType::Quorum => {
            let mut work = quorum.clone();
            work.insert("x-dead-letter-exchange".into(), text(&names.exchange));
            work.insert("x-dead-letter-routing-key".into(), text(KEY_DEAD));
            work.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            work.insert("x-overflow".into(), text("reject-publish"));
            work.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(DELIVERY_LIMIT),
            );
            vec![
                (&names.deliveries, KEY_DELIVERIES, work),
                (&names.dead, KEY_DEAD, quorum),
            ]
        }
        QueueType::Classic => vec![(&names.deliveries, KEY_DELIVERIES, FieldTable::default())],
    };
    for (name, key, arguments) in queues {
        channel
            .queue_declare(name.as_str().into(), durable, arguments)
            .await
            .with_context(|| {
                format!("declaring {name} (delete it if it exists with other arguments)")
            })?;
        channel
            .queue_bind(
                name.as_str().into(),
                names.exchange.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Deletes what [`declare`] declared.
async fn delete(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    for queue in [&names.deliveries, &names.dead] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    channel
        .exchange_delete(
            names.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await?;
    Ok(())
}

/// One run, on connections of its own: publishers for `--seconds`, the
/// consumer until it has acked everything they published; CPU read around
/// both.
async fn run_once(
    args: &FloorArgs,
    names: &Names,
    body: &Arc<Vec<u8>>,
    queue_type: QueueType,
    batch: u16,
    number: u32,
) -> anyhow::Result<FloorRun> {
    let prefetch = batch.saturating_mul(args.publishers).saturating_mul(2);
    let consumer_connection = connect(&args.amqp_url, "consumer").await?;
    let consumer_channel = consumer_connection.create_channel().await?;
    // Whatever an earlier, failed run left.
    consumer_channel
        .queue_purge(
            names.deliveries.as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await?;
    consumer_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let stream = consumer_channel
        .basic_consume(
            names.deliveries.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publisher_connection = connect(&args.amqp_url, "publisher").await?;
    let mut channels = Vec::with_capacity(usize::from(args.publishers));
    for _ in 0..args.publishers {
        let channel = publisher_connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channels.push(channel);
    }

    let trees: Vec<u32> = args.broker_pid.into_iter().collect();
    let idle = match args.broker_pid {
        Some(_) => {
            let sampler = cpu::Sampler::start(&[], &[], &trees);
            tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
            let idle = sampler.finish();
            idle.processes
                .first()
                .and_then(|p| p.cpu_secs)
                .map(|secs| secs / idle.window_secs)
        }
        None => None,
    };
    let sampler = cpu::Sampler::start(&[], &[], &trees);
    let started = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn(consume(stream, u64::from(batch), acked.clone()));
    let until = started + Duration::from_secs(args.seconds);
    let publishers: Vec<_> = channels
        .into_iter()
        .map(|channel| {
            let (exchange, body) = (names.exchange.clone(), body.clone());
            tokio::spawn(async move { publish(&channel, &exchange, batch, &body, until).await })
        })
        .collect();
    let mut published = 0;
    for publisher in publishers {
        published += publisher.await??;
    }
    let drain_by = Instant::now() + DRAIN_TIMEOUT;
    while acked.load(Ordering::Relaxed) < published {
        if consumer.is_finished() {
            consumer.await??;
            bail!("the consumer stopped");
        }
        if Instant::now() > drain_by {
            bail!(
                "{} of {published} messages acked after {DRAIN_TIMEOUT:?}",
                acked.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let cpu = sampler.finish();
    consumer.abort();
    let _ = publisher_connection.close(200, "done".into()).await;
    let _ = consumer_connection.close(200, "done".into()).await;

    let broker_cpu_secs = cpu.processes.first().and_then(|p| p.cpu_secs);
    let broker_net_secs = broker_cpu_secs
        .zip(idle)
        .map(|(busy, idle)| busy - idle * cpu.window_secs);
    let per = |secs: Option<f64>| secs.map(|s| round3(s * 1000.0 / published.max(1) as f64));
    Ok(FloorRun {
        queue_type,
        batch,
        run: number,
        messages: published,
        secs: round3(secs),
        messages_per_sec: rate(published, secs),
        prefetch,
        broker_cpu_secs,
        broker_ms_per_message: per(broker_cpu_secs),
        broker_idle_percent: idle.map(|rate| round3(rate * 100.0)),
        broker_net_ms_per_message: per(broker_net_secs),
        client_cpu_secs: cpu.bench_cpu_secs,
        client_ms_per_message: per(cpu.bench_cpu_secs),
        machine_busy_percent: cpu.machine.map(|m| m.busy_percent),
    })
}

/// Publishes batches of `batch` persistent messages until `until`, waiting
/// for each batch's confirms before the next; returns how many it published.
async fn publish(
    channel: &Channel,
    exchange: &str,
    batch: u16,
    body: &[u8],
    until: Instant,
) -> anyhow::Result<u64> {
    let mut published = 0;
    while Instant::now() < until {
        let mut confirms = Vec::with_capacity(usize::from(batch));
        for _ in 0..batch {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    KEY_DELIVERIES.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                other => bail!("publish not confirmed: {other:?}"),
            }
        }
        published += u64::from(batch);
    }
    Ok(published)
}

/// Consumes for ever, acking every `batch` deliveries with one `multiple`
/// ack and counting them in `acked` once the ack is sent. Publishers publish
/// whole batches, so nothing is left unacked at the end.
async fn consume(
    mut stream: lapin::Consumer,
    batch: u64,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut unacked = 0;
    while let Some(delivery) = stream.next().await {
        let delivery = delivery.context("consuming")?;
        unacked += 1;
        if unacked == batch {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .context("acking")?;
            acked.fetch_add(batch, Ordering::Relaxed);
            unacked = 0;
        }
    }
    bail!("the broker cancelled the consumer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_a_json_object_of_the_size_asked() {
        for bytes in [10, 100, 500] {
            let body = body(bytes);
            assert_eq!(body.len(), bytes);
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(value["pad"].is_string());
        }
        assert_eq!(body(0), br#"{"pad":""}"#);
    }

    #[test]
    fn parses_the_defaults_and_repeated_options() {
        let args = FloorArgs::parse_from(["floor-broker"]);
        assert_eq!(args.batches, [1, 8, 32, 128]);
        assert_eq!(args.queue_types, [QueueType::Quorum]);
        let args = FloorArgs::parse_from([
            "floor-broker",
            "--batch",
            "4",
            "--batch",
            "16",
            "--queue-type",
            "classic",
            "--broker-pid",
            "42",
        ]);
        assert_eq!(args.batches, [4, 16]);
        assert_eq!(args.queue_types, [QueueType::Classic]);
        assert_eq!(args.broker_pid, Some(42));
    }
}
