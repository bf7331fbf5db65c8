//! RabbitMQ-specific behaviour beyond the shared contract: what the broker does
//! with messages that are not tasks, and how a topology clash is reported.

mod support;

use herald_queue::{QueueError, RabbitQueue, Topology};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::{delete_topology, next_task, rabbit_or_skip, task, unique_prefix, with_rabbit};

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
