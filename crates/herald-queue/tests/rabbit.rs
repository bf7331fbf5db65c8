//! RabbitMQ-specific behaviour beyond the shared contract: what the broker does
//! with messages that are not tasks or events, how a topology clash is
//! reported, the bounded stats queue, and the fanout of events.

mod support;

use std::time::Duration;

use herald_queue::{AttemptCompleted, EventBus, QueueError, RabbitQueue, Topology};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::{
    assert_no_event, attempt, delete_topology, next_event, next_task, rabbit_or_skip, task,
    unique_prefix, with_rabbit, with_rabbit_options,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_that_is_not_a_task_is_dead_lettered_by_the_broker() {
    with_rabbit(|harness| async move {
        let topology = harness.queue.topology().clone();
        let url = support::amqp_url();
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        // Straight into the work queue through the default exchange.
        channel
            .basic_publish(
                "".into(),
                topology.deliveries.as_str().into(),
                BasicPublishOptions::default(),
                b"this is not json",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish garbage")
            .await
            .expect("garbage confirmed");

        use herald_queue::Queue;
        harness.queue.publish(&task(1)).await.expect("publish");
        let mut consumer = harness.queue.consume(10).await.expect("consume");
        let received = next_task(&mut consumer).await;
        assert_eq!(
            received.task,
            task(1),
            "the malformed message is never handed out"
        );
        received.ack().await.expect("ack");

        let deadline = tokio::time::Instant::now() + support::EVENTUALLY;
        let dead = loop {
            if let Some(message) = channel
                .basic_get(
                    topology.dead.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get")
            {
                break message.delivery;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "malformed message not dead-lettered"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(dead.data, b"this is not json");
        let reason = dead
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-first-death-reason").cloned());
        assert_eq!(reason, Some(AMQPValue::LongString("rejected".into())));
        let _ = connection.close(200, "done".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_a_topology_error_when_a_queue_exists_with_other_arguments() {
    let Some(url) = rabbit_or_skip().await else {
        return;
    };
    let prefix = unique_prefix();
    let topology = Topology::new(&prefix);
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    // A classic queue squatting on the work queue's name.
    channel
        .queue_declare(
            topology.deliveries.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare classic queue");

    let outcome = RabbitQueue::connect(&url, &prefix).await;
    let _ = connection.close(200, "done".into()).await;
    delete_topology(&url, &topology).await;
    match outcome {
        Err(QueueError::Topology(message)) => {
            assert!(message.contains(&topology.deliveries), "{message}");
        }
        Err(e) => panic!("expected a topology error, got {e}"),
        Ok(_) => panic!("connect accepted a clashing queue"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stats_queue_refuses_events_at_once_and_accepts_them_again_once_drained() {
    const MAX: u32 = 5;
    let configure = |options: &mut herald_queue::RabbitOptions| {
        options.stats_max_length = MAX;
    };
    with_rabbit_options(configure, |harness| async move {
        let bus = &harness.queue;
        // Quorum queues apply the limit approximately, so publish until refused.
        let mut accepted = 0u32;
        let refusal = loop {
            let started = tokio::time::Instant::now();
            match bus.publish_attempt(&attempt(accepted + 1)).await {
                Ok(()) => accepted += 1,
                Err(e) => break (e, started.elapsed()),
            }
            assert!(
                accepted <= MAX * 2,
                "{accepted} events accepted past a limit of {MAX}"
            );
        };
        let (error, took) = refusal;
        eprintln!("accepted {accepted} events; then refused after {took:?}: {error}");
        assert!(accepted >= MAX, "refused after only {accepted} events");
        assert!(
            matches!(error, QueueError::Unavailable(ref message) if message.contains(".stats")),
            "unexpected error: {error}"
        );
        assert!(
            took < Duration::from_secs(5),
            "the refusal is not retried until the publish timeout: took {took:?}"
        );

        // Tasks are not affected by a full stats queue.
        use herald_queue::Queue;
        bus.publish(&task(1)).await.expect("publish a task");

        let mut consumer = bus.consume_attempts(100).await.expect("consume");
        for n in 1..=accepted {
            let received = next_event(&mut consumer).await;
            assert_eq!(received.event, attempt(n));
            received.ack().await.expect("ack");
        }
        assert_no_event(&mut consumer, Duration::from_secs(1)).await;
        let deadline = tokio::time::Instant::now() + support::EVENTUALLY;
        while let Err(e) = bus.publish_attempt(&attempt(100)).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still refused after the queue was drained: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(next_event(&mut consumer).await.event, attempt(100));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_queue_bound_to_the_attempts_exchange_gets_every_event_too() {
    with_rabbit(|harness| async move {
        let topology = harness.queue.topology().clone();
        let connection = Connection::connect(&support::amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        // A later consumer's own queue (exclusive, so it goes with the connection).
        let own = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare own queue");
        channel
            .queue_bind(
                own.name().as_str().into(),
                topology.attempts_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind own queue");

        harness
            .queue
            .publish_attempt(&attempt(1))
            .await
            .expect("publish");

        let mut consumer = harness.queue.consume_attempts(10).await.expect("consume");
        let received = next_event(&mut consumer).await;
        assert_eq!(received.event, attempt(1));
        received.ack().await.expect("ack");

        let copy = channel
            .basic_get(own.name().as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .expect("the bound queue got a copy");
        let event: AttemptCompleted =
            serde_json::from_slice(&copy.delivery.data).expect("an attempt event");
        assert_eq!(event, attempt(1));
        assert_eq!(
            copy.delivery.properties.delivery_mode(),
            &Some(2),
            "persistent"
        );
        let _ = connection.close(200, "done".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_on_the_stats_queue_that_is_not_an_event_is_dropped() {
    with_rabbit(|harness| async move {
        let topology = harness.queue.topology().clone();
        let connection = Connection::connect(&support::amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        channel
            .basic_publish(
                "".into(),
                topology.stats.as_str().into(),
                BasicPublishOptions::default(),
                b"this is not json",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish garbage")
            .await
            .expect("garbage confirmed");
        harness
            .queue
            .publish_attempt(&attempt(1))
            .await
            .expect("publish");

        let mut consumer = harness.queue.consume_attempts(10).await.expect("consume");
        let received = next_event(&mut consumer).await;
        assert_eq!(
            received.event,
            attempt(1),
            "the malformed message is never handed out"
        );
        received.ack().await.expect("ack");
        assert_no_event(&mut consumer, Duration::from_secs(1)).await;
        drop(consumer);
        let left = channel
            .basic_get(
                topology.stats.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get");
        assert!(left.is_none(), "the malformed message is gone");
        let _ = connection.close(200, "done".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_together_arrive_as_one_message_and_settle_together() {
    with_rabbit(|harness| async move {
        let events: Vec<AttemptCompleted> = (1..=3).map(attempt).collect();
        harness
            .queue
            .publish_attempts(&events)
            .await
            .expect("publish");
        use herald_queue::Queue;
        assert_eq!(
            harness.queue.depths().await.expect("depths").stats_events,
            1,
            "three events, one broker message"
        );

        let mut consumer = harness.queue.consume_attempts(10).await.expect("consume");
        let first: Vec<_> = [
            next_event(&mut consumer).await,
            next_event(&mut consumer).await,
            next_event(&mut consumer).await,
        ]
        .into();
        assert_eq!(
            first.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
            events
        );
        // One event dropped unacked: the message, all three events, comes back.
        let mut first = first.into_iter();
        first.next().unwrap().ack().await.expect("ack");
        drop(first.next());
        first.next().unwrap().ack().await.expect("ack");
        let again = [
            next_event(&mut consumer).await,
            next_event(&mut consumer).await,
            next_event(&mut consumer).await,
        ];
        assert_eq!(
            again.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
            events
        );
        for received in again {
            received.ack().await.expect("ack");
        }
        assert_no_event(&mut consumer, Duration::from_millis(500)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batching_bus_confirms_each_event_of_concurrent_publishes() {
    with_rabbit(|harness| async move {
        let bus = std::sync::Arc::new(herald_queue::BatchingEventBus::new(std::sync::Arc::new(
            harness.queue.clone(),
        )));
        let publishes: Vec<_> = (1..=50)
            .map(|n| {
                let bus = bus.clone();
                tokio::spawn(async move { bus.publish_attempt(&attempt(n)).await })
            })
            .collect();
        for publish in publishes {
            publish.await.expect("task").expect("confirmed");
        }
        let mut consumer = bus.consume_attempts(100).await.expect("consume");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let received = next_event(&mut consumer).await;
            seen.insert(received.event.attempt_id.clone());
            received.ack().await.expect("ack");
        }
        assert_eq!(seen.len(), 50, "every event once");
        assert_no_event(&mut consumer, Duration::from_millis(500)).await;
    })
    .await;
}
