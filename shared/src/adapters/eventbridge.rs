//! The EventBridge adapter: publishes the domain's events with PutEvents, in batches, retrying
//! the entries EventBridge reports as failed.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use futures::StreamExt;

use crate::domain::event::{Event, Published, SOURCE};
use crate::error::Error;
use crate::ports::EventSink;

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

impl EventSink for EventBridge {
    async fn publish(&self, events: Vec<Event>) -> Published {
        let mut report = Published::default();
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
            let mut batches = Vec::new();
            let mut rest = pending.into_iter().peekable();
            while rest.peek().is_some() {
                batches.push(rest.by_ref().take(BATCH).collect::<Vec<_>>());
            }
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
            report.published += total - failed.len();
            pending = failed;
        }
        report.failed = pending
            .into_iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.detail_type,
                    last_error.clone().unwrap_or_default()
                )
            })
            .collect();
        report
    }
}
