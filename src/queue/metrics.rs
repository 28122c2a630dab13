//! Queue gauges for `/metrics`: waiting, in flight, delayed and dead per queue, sampled every
//! few seconds by each worker (and by the web process for its own `/metrics`).

use std::time::Duration;

use tokio::sync::watch;

use super::Queue;

/// Sets the gauges of `queues` every 5 s until `stop` turns true.
pub async fn sample(queues: Vec<Queue>, mut stop: watch::Receiver<bool>) {
    loop {
        for queue in &queues {
            record(queue).await;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Sets the gauges of one queue once.
pub async fn record(queue: &Queue) {
    let Ok(counts) = queue.counts().await else {
        return;
    };
    let name = queue.keys().name().to_owned();
    metrics::gauge!("queue_waiting", "queue" => name.clone()).set(counts.waiting as f64);
    metrics::gauge!("queue_in_flight", "queue" => name.clone()).set(counts.in_flight as f64);
    metrics::gauge!("queue_delayed", "queue" => name.clone()).set(counts.delayed as f64);
    metrics::gauge!("queue_dead", "queue" => name).set(counts.dead as f64);
}
