//! The queue contract, written once against `&dyn Queue` (through a small
//! harness for reading dead letters) and run against both implementations:
//! `memory::*` against [`MemoryQueue`](herald_queue::MemoryQueue) and `rabbit::*`
//! against a real RabbitMQ.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::{
    assert_no_task, drain_until_seen, next_task, task, wait_for_dead_letters, Harness, EVENTUALLY,
    TEST_DELIVERY_LIMIT,
};
use tokio::time::Instant;

/// How long to watch for a task that must not come.
const QUIET: Duration = Duration::from_secs(1);

mod contract {
    use super::*;

    pub async fn published_task_is_delivered_and_gone_once_acked(harness: &dyn Harness) {
        let queue = harness.queue();
        queue.publish(&task(1)).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");

        let received = next_task(&mut consumer).await;
        assert_eq!(received.task, task(1));
        assert!(!received.redelivered);
        received.ack().await.expect("ack");

        assert_no_task(&mut consumer, QUIET).await;
        drop(consumer);
        let mut consumer = queue.consume(10).await.expect("consume again");
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn requeued_task_is_redelivered(harness: &dyn Harness) {
        let queue = harness.queue();
        queue.publish(&task(1)).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");

        next_task(&mut consumer)
            .await
            .requeue()
            .await
            .expect("requeue");
        let again = next_task(&mut consumer).await;
        assert_eq!(again.task, task(1));
        assert!(again.redelivered);
        again.ack().await.expect("ack");
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn dropped_unacked_delivery_is_requeued(harness: &dyn Harness) {
        let queue = harness.queue();
        queue.publish(&task(1)).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");

        drop(next_task(&mut consumer).await);
        let again = next_task(&mut consumer).await;
        assert_eq!(again.task, task(1));
        assert!(again.redelivered);
        again.ack().await.expect("ack");
    }

    pub async fn unacked_tasks_are_redelivered_after_the_consumer_is_dropped(
        harness: &dyn Harness,
    ) {
        let queue = harness.queue();
        let tasks = [task(1), task(2), task(3)];
        queue.publish_many(&tasks).await.expect("publish");

        let mut first = queue.consume(10).await.expect("consume");
        let mut held = Vec::new();
        for _ in 0..tasks.len() {
            held.push(next_task(&mut first).await);
        }
        // The consumer goes away while its deliveries are still un-acked (a
        // crashed worker): every task must come back.
        drop(first);

        let mut second = queue.consume(10).await.expect("consume again");
        let mut again = HashSet::new();
        for _ in 0..tasks.len() {
            let received = next_task(&mut second).await;
            assert!(
                received.redelivered,
                "{:?} not marked redelivered",
                received.task
            );
            again.insert(received.task.msg_id.clone());
            received.ack().await.expect("ack");
        }
        let expected: HashSet<String> = tasks.iter().map(|t| t.msg_id.clone()).collect();
        assert_eq!(again, expected);

        // The old deliveries are stale now; acking or dropping them changes nothing.
        for old in held {
            let _ = old.ack().await;
        }
        assert_no_task(&mut second, QUIET).await;
    }

    pub async fn delayed_tasks_arrive_not_before_their_delay(harness: &dyn Harness) {
        let queue = harness.queue();
        let delays = [
            (task(1), Duration::from_secs(3)),
            (task(2), Duration::from_secs(1)),
            (task(3), Duration::from_millis(1500)),
        ];
        let start = Instant::now();
        for (delayed, delay) in &delays {
            queue
                .publish_delayed(delayed, *delay)
                .await
                .expect("publish delayed");
        }
        queue.publish(&task(4)).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");

        // The immediate task is not held up behind the delayed ones.
        let first = next_task(&mut consumer).await;
        assert_eq!(first.task, task(4));
        first.ack().await.expect("ack");

        let mut pending: Vec<_> = delays.to_vec();
        while !pending.is_empty() {
            let received = next_task(&mut consumer).await;
            let elapsed = start.elapsed();
            let position = pending
                .iter()
                .position(|(t, _)| *t == received.task)
                .unwrap_or_else(|| panic!("unexpected task {:?}", received.task));
            let (_, delay) = pending.remove(position);
            eprintln!(
                "{} delayed {delay:?} arrived after {elapsed:?}",
                received.task.msg_id
            );
            assert!(
                elapsed >= delay,
                "{} arrived after {elapsed:?}, before its delay of {delay:?}",
                received.task.msg_id
            );
            assert!(
                elapsed < delay + EVENTUALLY,
                "{} took {elapsed:?}",
                received.task.msg_id
            );
            received.ack().await.expect("ack");
        }
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn dead_lettered_task_lands_in_the_dead_letter_queue(harness: &dyn Harness) {
        let queue = harness.queue();
        queue
            .dead_letter(&task(7), "retry schedule exhausted")
            .await
            .expect("dead letter");

        let letters = wait_for_dead_letters(harness, 1).await;
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].task, task(7));
        assert_eq!(letters[0].reason, "retry schedule exhausted");

        let mut consumer = queue.consume(10).await.expect("consume");
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn publish_many_delivers_every_task(harness: &dyn Harness) {
        let queue = harness.queue();
        let tasks: Vec<_> = (1..=200).map(task).collect();
        queue.publish_many(&tasks).await.expect("publish many");

        let mut consumer = queue.consume(50).await.expect("consume");
        let expected: HashSet<String> = tasks.iter().map(|t| t.msg_id.clone()).collect();
        let deliveries = drain_until_seen(&mut consumer, &expected).await;
        assert_eq!(
            deliveries,
            tasks.len(),
            "no task is delivered twice without a failure"
        );
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn task_requeued_past_the_delivery_limit_is_dead_lettered(harness: &dyn Harness) {
        let queue = harness.queue();
        queue.publish(&task(9)).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");

        // The limit counts returns: the task is delivered limit + 1 times, and
        // the return after the last delivery dead-letters it.
        for _ in 0..=TEST_DELIVERY_LIMIT {
            let received = next_task(&mut consumer).await;
            assert_eq!(received.task, task(9));
            received.requeue().await.expect("requeue");
        }

        let letters = wait_for_dead_letters(harness, 1).await;
        assert_eq!(letters[0].task, task(9));
        assert_eq!(letters[0].reason, herald_queue::REASON_DELIVERY_LIMIT);
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn close_ends_consumers_and_refuses_publishes(harness: &dyn Harness) {
        let queue = harness.queue();
        let mut consumer = queue.consume(10).await.expect("consume");
        queue.close().await;

        let ended = tokio::time::timeout(EVENTUALLY, consumer.next()).await;
        assert!(
            matches!(ended, Ok(None)),
            "consumer still running after close"
        );
        let refused = queue.publish(&task(1)).await;
        assert!(
            matches!(refused, Err(herald_queue::QueueError::Closed)),
            "publish after close: {refused:?}"
        );
    }
}

/// Generates one test per contract function for each implementation.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let harness = super::support::MemoryHarness::new();
                    super::contract::$name(&harness).await;
                }
            )*
        }

        mod rabbit {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::support::with_rabbit(|harness| async move {
                        super::contract::$name(&harness).await;
                    })
                    .await;
                }
            )*
        }
    };
}

contract_tests!(
    published_task_is_delivered_and_gone_once_acked,
    requeued_task_is_redelivered,
    dropped_unacked_delivery_is_requeued,
    unacked_tasks_are_redelivered_after_the_consumer_is_dropped,
    delayed_tasks_arrive_not_before_their_delay,
    dead_lettered_task_lands_in_the_dead_letter_queue,
    publish_many_delivers_every_task,
    task_requeued_past_the_delivery_limit_is_dead_lettered,
    close_ends_consumers_and_refuses_publishes,
);
