//! Announcing actions on EventBridge: source `ami.automation`, one detail type per action.

use std::future::Future;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, Result};

/// The `source` of every event this tool publishes.
pub const SOURCE: &str = "ami.automation";

/// PutEvents takes at most 10 entries a call.
pub const BATCH: usize = 10;

/// PutEvents calls in flight at once.
pub const CONCURRENT_BATCHES: usize = 8;

/// How many times entries that PutEvents reported as failed are sent again.
pub const RETRIES: usize = 3;

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `AMI Deprecated`, `AMI Deregistered`, `Policy Run Completed`, ...
    pub detail_type: String,
    /// The ARNs or ids the event is about.
    pub resources: Vec<String>,
    /// The JSON detail.
    pub detail: serde_json::Value,
}

/// What publishing achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Published {
    /// Events accepted by EventBridge.
    pub published: usize,
    /// Events that could not be published, with the error.
    pub failed: Vec<String>,
}

/// Somewhere events go.
pub trait EventSink {
    /// Publishes the events; entries that fail are retried, then reported, never dropped silently.
    fn publish(&self, events: Vec<Event>) -> impl Future<Output = Published> + Send;
}

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

/// Events collected in memory, for unit tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<Event>>);

#[cfg(test)]
impl EventSink for Recorder {
    async fn publish(&self, events: Vec<Event>) -> Published {
        let n = events.len();
        if let Ok(mut all) = self.0.lock() {
            all.extend(events);
        }
        Published {
            published: n,
            failed: Vec::new(),
        }
    }
}

/// Builds an event.
pub fn event(detail_type: &str, resources: Vec<String>, detail: serde_json::Value) -> Event {
    Event {
        detail_type: detail_type.to_string(),
        resources,
        detail,
    }
}

/// Converts a serialisable value to JSON, which cannot fail for the plain structs of this crate.
pub fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::Refused(format!("cannot encode the report: {e}")))
}
