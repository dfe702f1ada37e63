//! The EventBridge adapter: publishes the domain's events with PutEvents, in batches, retrying
//! the entries EventBridge reports as failed.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use futures::StreamExt;

use crate::domain::event::{Event, SOURCE};
use crate::error::Error;
use crate::ports::EventBus;

/// PutEvents takes at most 10 entries a call.
pub const BATCH: usize = 10;

/// PutEvents calls in flight at once.
pub const CONCURRENT_BATCHES: usize = 8;

/// How many times entries that PutEvents reported as failed are sent again.
pub const RETRIES: usize = 3;

/// The EventBridge adapter.
#[derive(Debug, Clone)]
pub struct EventBridge {
    client: Client,
    bus: String,
}

impl EventBridge {
    /// Publishes on `bus` (a name or ARN).
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        EventBridge {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, e: &Event) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(&e.detail_type)
            .set_resources(Some(e.resources.clone()))
            .detail(e.detail.to_string())
            .build()
    }

    /// Sends one batch of at most 10; returns the events that failed and the last error.
    async fn send_batch(&self, batch: Vec<Event>) -> (Vec<Event>, Option<String>) {
        let entries = batch.iter().map(|e| self.entry(e)).collect::<Vec<_>>();
        match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let mut failed = Vec::new();
                let mut last = None;
                for (event, result) in batch.into_iter().zip(out.entries()) {
                    if let Some(code) = result.error_code() {
                        last = Some(format!(
                            "{code}: {}",
                            result.error_message().unwrap_or_default()
                        ));
                        failed.push(event);
                    }
                }
                (failed, last)
            }
            Err(e) => {
                let err = Error::aws("PutEvents", "", e);
                (batch, Some(err.to_string()))
            }
        }
    }
}

/// The request size PutEvents accepts, less a margin for the request's own framing: the entries
/// of one call together stay below 256 KB (EventBridge API reference, PutEvents).
pub const BATCH_BYTES: usize = 240 * 1024;

/// Splits events into PutEvents calls of at most [`BATCH`] entries and [`BATCH_BYTES`].
fn batches_of(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut batches: Vec<Vec<Event>> = Vec::new();
    let mut size = 0;
    for e in events {
        let bytes = e.entry_size();
        match batches.last_mut() {
            Some(batch) if batch.len() < BATCH && size + bytes <= BATCH_BYTES => {
                size += bytes;
                batch.push(e);
            }
            _ => {
                size = bytes;
                batches.push(vec![e]);
            }
        }
    }
    batches
}

impl EventBus for EventBridge {
    async fn send(&self, events: Vec<Event>) -> (usize, Vec<(Event, String)>) {
        let mut published = 0;
        let mut pending = events;
        let mut last_error = None;
        for attempt in 0..=RETRIES {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let total = pending.len();
            let mut failed = Vec::new();
            let batches = batches_of(pending);
            // Batches go out concurrently (PutEvents quotas are in the thousands per second).
            let sent: Vec<(Vec<Event>, Option<String>)> = futures::stream::iter(batches)
                .map(|batch| self.send_batch(batch))
                .buffer_unordered(CONCURRENT_BATCHES)
                .collect()
                .await;
            for (f, err) in sent {
                failed.extend(f);
                if err.is_some() {
                    last_error = err;
                }
            }
            published += total - failed.len();
            pending = failed;
        }
        let why = last_error.unwrap_or_default();
        (
            published,
            pending.into_iter().map(|e| (e, why.clone())).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::event;

    #[test]
    fn batches_hold_at_most_ten_entries_and_stay_under_the_request_size() {
        let big = || {
            let text = "x".repeat(60 * 1024);
            event(
                "AMI Deregistered",
                Vec::new(),
                serde_json::json!({ "note": text }),
            )
        };
        let small = || event("AMI Deregistered", Vec::new(), serde_json::json!({"n": 1}));
        let events: Vec<Event> = (0..6)
            .map(|_| big())
            .chain((0..25).map(|_| small()))
            .collect();
        let batches = batches_of(events);
        assert_eq!(
            batches.iter().map(Vec::len).sum::<usize>(),
            31,
            "nothing lost"
        );
        for b in &batches {
            assert!(b.len() <= BATCH);
            assert!(b.iter().map(Event::entry_size).sum::<usize>() <= BATCH_BYTES);
        }
        assert_eq!(
            batches[0].len(),
            3,
            "three 60 KB entries fit in one call, not four"
        );
    }
}
