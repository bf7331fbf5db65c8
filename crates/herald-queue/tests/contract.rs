//! The queue contract, written once against `&dyn Queue` and `&dyn EventBus`
//! (through a small harness for reading dead letters) and run against both
//! implementations: `memory::*` against [`MemoryQueue`](herald_queue::MemoryQueue)
//! and `rabbit::*` against a real RabbitMQ.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_core::ErrorClass;
use herald_queue::{AttemptCompleted, DeadLetter, EventConsumer, Queue};
use support::{
    assert_no_event, assert_no_task, attempt, drain_events_until_seen, drain_until_seen,
    next_event, next_task, task, wait_for_dead_letters, Harness, EVENTUALLY,
    TEST_DEAD_LETTER_BOUND, TEST_DELIVERY_LIMIT,
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
            again.insert(received.task.msg_id.to_string());
            received.ack().await.expect("ack");
        }
        let expected: HashSet<String> = tasks.iter().map(|t| t.msg_id.to_string()).collect();
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

    /// Takes dead letters straight from the queue until `count` came (a
    /// batch dropped a moment ago may still be on its way back), and acks.
    async fn take_dead(queue: &dyn Queue, count: usize) -> Vec<DeadLetter> {
        let deadline = Instant::now() + EVENTUALLY;
        let mut letters = Vec::new();
        while letters.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} dead letters came back: {letters:?}",
                letters.len()
            );
            let batch = queue.take_dead_letters(100).await.expect("take");
            letters.extend(batch.letters.iter().cloned());
            batch.ack().await.expect("ack");
            if letters.len() < count {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        letters
    }

    pub async fn dead_letters_taken_unacked_go_back_and_acked_ones_are_gone(harness: &dyn Harness) {
        let queue = harness.queue();
        for n in 1..=3 {
            queue
                .dead_letter(&task(n), "test")
                .await
                .expect("dead letter");
        }
        let first = queue.take_dead_letters(2).await.expect("take");
        let taken: Vec<_> = first.letters.iter().map(|l| l.task.clone()).collect();
        assert_eq!(taken, vec![task(1), task(2)]);
        drop(first);

        let again = take_dead(queue, 3).await;
        let again: Vec<_> = again.into_iter().map(|l| l.task).collect();
        assert_eq!(again, vec![task(1), task(2), task(3)]);
        let empty = queue.take_dead_letters(100).await.expect("take");
        assert!(empty.letters.is_empty(), "{:?}", empty.letters);
        empty.ack().await.expect("ack");
    }

    pub async fn the_dead_letter_queue_drops_its_oldest_letters_past_its_bound(
        harness: &dyn Harness,
    ) {
        let queue = harness.queue();
        let bound = TEST_DEAD_LETTER_BOUND;
        for n in 1..=bound + 3 {
            queue
                .dead_letter(&task(n), "test")
                .await
                .expect("dead letter");
        }
        let letters = take_dead(queue, bound as usize).await;
        let kept: Vec<_> = letters.into_iter().map(|l| l.task).collect();
        let newest: Vec<_> = (4..=bound + 3).map(task).collect();
        assert_eq!(kept, newest);
    }

    pub async fn dead_letters_carry_no_message_content(harness: &dyn Harness) {
        let queue = harness.queue();
        let mut with_content = task(9);
        with_content.content = Some(std::sync::Arc::new(herald_queue::MessageContent {
            event_type: herald_core::EventTypeName::parse("a.b").expect("event type"),
            payload: serde_json::value::RawValue::from_string("{\"big\":1}".to_owned())
                .expect("payload"),
            created_at: chrono::Utc::now(),
        }));
        queue
            .dead_letter(&with_content, "attempts exhausted")
            .await
            .expect("dead letter");
        let letters = take_dead(queue, 1).await;
        assert_eq!(letters[0].task, task(9));
        assert!(letters[0].task.content.is_none());
    }

    pub async fn publish_many_delivers_every_task(harness: &dyn Harness) {
        let queue = harness.queue();
        let tasks: Vec<_> = (1..=200).map(task).collect();
        queue.publish_many(&tasks).await.expect("publish many");

        let mut consumer = queue.consume(50).await.expect("consume");
        let expected: HashSet<String> = tasks.iter().map(|t| t.msg_id.to_string()).collect();
        let deliveries = drain_until_seen(&mut consumer, &expected).await;
        assert_eq!(
            deliveries,
            tasks.len(),
            "no task is delivered twice without a failure"
        );
        assert_no_task(&mut consumer, QUIET).await;
    }

    pub async fn a_task_requeued_out_of_a_batch_comes_back_alone(harness: &dyn Harness) {
        let queue = harness.queue();
        let tasks = [task(1), task(2), task(3)];
        queue.publish_many(&tasks).await.expect("publish");
        let mut consumer = queue.consume(10).await.expect("consume");
        let mut held = Vec::new();
        for _ in 0..tasks.len() {
            held.push(next_task(&mut consumer).await);
        }
        let returned = held.remove(1);
        assert_eq!(returned.task, task(2));
        returned.requeue().await.expect("requeue");
        for done in held {
            assert!(!done.redelivered);
            done.ack().await.expect("ack");
        }
        let again = next_task(&mut consumer).await;
        assert_eq!(again.task, task(2));
        assert!(again.redelivered, "a returned task counts as redelivered");
        again.ack().await.expect("ack");
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

    // The event bus.

    pub async fn published_events_are_consumed_with_identical_content(harness: &dyn Harness) {
        let bus = harness.bus();
        let mut events: Vec<_> = (1..=4).map(attempt).collect();
        // Edge values survive the trip too.
        events.push(AttemptCompleted {
            attempt_id: "atmpt_edge".to_owned(),
            tenant_id: "tnt_ünïcödé".to_owned(),
            app_id: "app_\"quoted\"".to_owned(),
            endpoint_id: "ep_edge".to_owned(),
            event_type: "invoice.paid.✓".to_owned(),
            success: false,
            status_code: 0,
            error_class: Some(ErrorClass::Timeout),
            duration_us: u64::MAX,
            at_us: i64::MIN,
        });
        for event in &events {
            bus.publish_attempt(event).await.expect("publish event");
        }
        let mut consumer = bus.consume_attempts(10).await.expect("consume events");
        let mut got = Vec::new();
        for _ in 0..events.len() {
            let received = next_event(&mut consumer).await;
            got.push(received.event.clone());
            received.ack().await.expect("ack");
        }
        assert_eq!(
            got, events,
            "one publisher, one consumer: in order and unchanged"
        );
        assert_no_event(&mut consumer, QUIET).await;
    }

    pub async fn events_and_tasks_are_separate_streams(harness: &dyn Harness) {
        harness
            .queue()
            .publish(&task(1))
            .await
            .expect("publish task");
        harness
            .bus()
            .publish_attempt(&attempt(1))
            .await
            .expect("publish event");

        let mut events = harness
            .bus()
            .consume_attempts(10)
            .await
            .expect("consume events");
        let mut tasks = harness.queue().consume(10).await.expect("consume tasks");
        let event = next_event(&mut events).await;
        assert_eq!(event.event, attempt(1));
        event.ack().await.expect("ack event");
        let received = next_task(&mut tasks).await;
        assert_eq!(received.task, task(1));
        received.ack().await.expect("ack task");
        assert_no_event(&mut events, QUIET).await;
        assert_no_task(&mut tasks, QUIET).await;
    }

    pub async fn dropped_unacked_event_is_redelivered(harness: &dyn Harness) {
        let bus = harness.bus();
        bus.publish_attempt(&attempt(1)).await.expect("publish");
        let mut consumer = bus.consume_attempts(10).await.expect("consume");

        let first = next_event(&mut consumer).await;
        assert_eq!(first.event, attempt(1));
        drop(first);
        let again = next_event(&mut consumer).await;
        assert_eq!(again.event, attempt(1));
        again.ack().await.expect("ack");
        assert_no_event(&mut consumer, QUIET).await;
    }

    pub async fn acked_events_are_not_redelivered(harness: &dyn Harness) {
        let bus = harness.bus();
        bus.publish_attempt(&attempt(1)).await.expect("publish");
        bus.publish_attempt(&attempt(2)).await.expect("publish");
        let mut consumer = bus.consume_attempts(10).await.expect("consume");
        for _ in 0..2 {
            next_event(&mut consumer).await.ack().await.expect("ack");
        }
        assert_no_event(&mut consumer, QUIET).await;

        // Not to a new consumer either.
        drop(consumer);
        let mut consumer = bus.consume_attempts(10).await.expect("consume again");
        assert_no_event(&mut consumer, QUIET).await;
    }

    pub async fn prefetch_bounds_unacked_events(harness: &dyn Harness) {
        let bus = harness.bus();
        bus.publish_attempt(&attempt(1)).await.expect("publish");
        bus.publish_attempt(&attempt(2)).await.expect("publish");
        let mut consumer = bus.consume_attempts(1).await.expect("consume");

        let first = next_event(&mut consumer).await;
        assert_eq!(first.event, attempt(1));
        assert_no_event(&mut consumer, QUIET).await;
        first.ack().await.expect("ack");
        let second = next_event(&mut consumer).await;
        assert_eq!(second.event, attempt(2));
        second.ack().await.expect("ack");
    }

    pub async fn competing_consumers_see_every_event_exactly_once(harness: &dyn Harness) {
        const EVENTS: usize = 100;
        let bus = harness.bus();
        // Both subscribe first, so both compete for the whole stream.
        let first = bus.consume_attempts(5).await.expect("consume");
        let second = bus.consume_attempts(5).await.expect("consume");
        for n in 1..=EVENTS as u32 {
            bus.publish_attempt(&attempt(n)).await.expect("publish");
        }

        let acked = Arc::new(AtomicUsize::new(0));
        let drain = |mut consumer: Box<dyn EventConsumer>| {
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                let deadline = Instant::now() + EVENTUALLY;
                let mut seen = Vec::new();
                while acked.load(Ordering::SeqCst) < EVENTS {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {EVENTS} events acked",
                        acked.load(Ordering::SeqCst)
                    );
                    let next =
                        tokio::time::timeout(Duration::from_millis(100), consumer.next()).await;
                    let Ok(next) = next else { continue };
                    let received = next.expect("event consumer ended");
                    // Counting takes a moment, so the other consumer gets its turn.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    seen.push(received.event.attempt_id.clone());
                    received.ack().await.expect("ack");
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                (consumer, seen)
            })
        };
        let (first, second) = (drain(first), drain(second));
        let (mut first, seen_first) = first.await.expect("first consumer");
        let (mut second, seen_second) = second.await.expect("second consumer");

        assert!(
            !seen_first.is_empty() && !seen_second.is_empty(),
            "the stream is shared: {} and {} events",
            seen_first.len(),
            seen_second.len()
        );
        let all: Vec<&String> = seen_first.iter().chain(&seen_second).collect();
        let distinct: HashSet<&String> = all.iter().copied().collect();
        assert_eq!(all.len(), EVENTS, "every event exactly once");
        assert_eq!(distinct.len(), EVENTS, "no event twice");
        assert_no_event(&mut first, QUIET).await;
        assert_no_event(&mut second, QUIET).await;
    }

    pub async fn events_survive_a_consumer_reconnect(harness: &dyn Harness) {
        let bus = harness.bus();
        for n in 1..=6 {
            bus.publish_attempt(&attempt(n)).await.expect("publish");
        }
        let mut first = bus.consume_attempts(10).await.expect("consume");
        let mut acked = HashSet::new();
        let mut held = Vec::new();
        for _ in 0..6 {
            let received = next_event(&mut first).await;
            if acked.len() < 3 {
                acked.insert(received.event.attempt_id.clone());
                received.ack().await.expect("ack");
            } else {
                held.push(received);
            }
        }
        // The stats process dies holding three unacked events, and more events
        // are published while no consumer runs.
        drop(first);
        for n in 7..=9 {
            bus.publish_attempt(&attempt(n)).await.expect("publish");
        }

        let mut second = bus.consume_attempts(10).await.expect("consume again");
        let expected: HashSet<String> = (1..=9)
            .map(|n| attempt(n).attempt_id)
            .filter(|id| !acked.contains(id))
            .collect();
        let deliveries = drain_events_until_seen(&mut second, &expected).await;
        assert_eq!(
            deliveries,
            expected.len(),
            "acked events are not delivered again"
        );

        // The old deliveries are stale now; acking them changes nothing.
        for old in held {
            let _ = old.ack().await;
        }
        assert_no_event(&mut second, QUIET).await;
    }

    pub async fn close_ends_event_consumers_and_refuses_event_publishes(harness: &dyn Harness) {
        let mut consumer = harness.bus().consume_attempts(10).await.expect("consume");
        harness.queue().close().await;

        let ended = tokio::time::timeout(EVENTUALLY, consumer.next()).await;
        assert!(
            matches!(ended, Ok(None)),
            "event consumer still running after close"
        );
        let refused = harness.bus().publish_attempt(&attempt(1)).await;
        assert!(
            matches!(refused, Err(herald_queue::QueueError::Closed)),
            "publish after close: {refused:?}"
        );
        let consume = harness.bus().consume_attempts(10).await;
        assert!(
            matches!(consume, Err(herald_queue::QueueError::Closed)),
            "consume after close succeeded"
        );
    }

    pub async fn depths_count_each_part_of_the_queue(harness: &dyn Harness) {
        let queue = harness.queue();
        assert_eq!(
            queue.depths().await.expect("depths"),
            herald_queue::QueueDepths::default()
        );
        // Published one by one: RabbitMQ counts broker messages, and a batch
        // published together is one.
        for n in [1, 2] {
            queue.publish(&task(n)).await.expect("publish");
        }
        queue
            .publish_delayed(&task(3), Duration::from_secs(600))
            .await
            .expect("publish delayed");
        queue
            .dead_letter(&task(4), "test")
            .await
            .expect("dead letter");
        harness
            .bus()
            .publish_attempt(&attempt(1))
            .await
            .expect("publish event");
        let expected = herald_queue::QueueDepths {
            ready: 2,
            delayed: 1,
            dead: 1,
            stats_events: 1,
        };
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let depths = queue.depths().await.expect("depths");
            if depths == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "depths {depths:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    a_task_requeued_out_of_a_batch_comes_back_alone,
    task_requeued_past_the_delivery_limit_is_dead_lettered,
    close_ends_consumers_and_refuses_publishes,
    published_events_are_consumed_with_identical_content,
    events_and_tasks_are_separate_streams,
    dropped_unacked_event_is_redelivered,
    acked_events_are_not_redelivered,
    prefetch_bounds_unacked_events,
    competing_consumers_see_every_event_exactly_once,
    events_survive_a_consumer_reconnect,
    close_ends_event_consumers_and_refuses_event_publishes,
    depths_count_each_part_of_the_queue,
    dead_letters_taken_unacked_go_back_and_acked_ones_are_gone,
    the_dead_letter_queue_drops_its_oldest_letters_past_its_bound,
    dead_letters_carry_no_message_content,
);
