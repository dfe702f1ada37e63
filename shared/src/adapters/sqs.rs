//! The event outbox: an SQS queue where the events EventBridge did not take wait for the next
//! run (SendMessage, ReceiveMessage, DeleteMessage). Its redrive policy moves a message
//! received once and not deleted (sent again and refused again, or its run died) to the
//! failure queue, so an event is sent again at most once.

use aws_sdk_sqs::Client;

use crate::domain::event::Event;
use crate::error::{Error, Result};
use crate::ports::{Outbox, ParkedEvent};

/// ReceiveMessage takes at most 10 messages a call.
const RECEIVE_MAX: i32 = 10;

/// The outbox queue, by its URL.
#[derive(Debug, Clone)]
pub struct SqsOutbox {
    client: Client,
    url: String,
}

impl SqsOutbox {
    /// The outbox at `url` (`AMI_EVENT_OUTBOX_URL`).
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsOutbox {
            client,
            url: url.into(),
        }
    }
}

impl Outbox for SqsOutbox {
    /// One message per event: a detail is at most 64 KiB, well within a message's 256 KiB.
    async fn park(&self, event: &Event) -> Result<()> {
        let body = serde_json::to_string(event)
            .map_err(|e| Error::Refused(format!("the event could not be written: {e}")))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::aws("SendMessage", "", e))?;
        Ok(())
    }

    /// No long polling: an empty outbox answers at once. A message that is not an event (not
    /// written by [`SqsOutbox::park`]) is left to the redrive policy, never sent.
    async fn parked(&self) -> Result<Vec<ParkedEvent>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(RECEIVE_MAX)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| Error::aws("ReceiveMessage", "", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let event = serde_json::from_str::<Event>(m.body()?).ok();
                if event.is_none() {
                    tracing::warn!(message = ?m.message_id(), "a message of the outbox is not an event: left for the failure queue");
                }
                Some(ParkedEvent {
                    receipt: m.receipt_handle()?.to_string(),
                    event: event?,
                })
            })
            .collect())
    }

    async fn done(&self, receipt: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| Error::aws("DeleteMessage", "", e))?;
        Ok(())
    }
}

/// SendMessageBatch takes at most 10 entries a call (SQS API reference).
pub const SEND_BATCH_MAX: usize = 10;

/// Sends each body as one message to `url`, 10 a call; the bodies SQS refused (a batch's
/// entries fail one by one: `Failed` lists them, the others were sent).
pub async fn send_all(client: &Client, url: &str, bodies: Vec<String>) -> Result<Vec<String>> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut refused = Vec::new();
    for chunk in bodies.chunks(SEND_BATCH_MAX) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| Error::Refused(format!("a unit could not be queued: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| Error::aws("SendMessageBatch", "", e))?;
        for failed in out.failed() {
            if let Some(body) = failed.id().parse::<usize>().ok().and_then(|n| chunk.get(n)) {
                refused.push(body.clone());
            }
        }
    }
    Ok(refused)
}
