//! An SQS batch, as Lambda's event source mapping delivers it (`Records`, each with its
//! `messageId` and `body`, `eventSource` `aws:sqs`): the units of a distribution sweep. The
//! bodies are read by the job that queued them; here only the envelope is checked.

use serde::Deserialize;

use super::{from_value, Trigger};
use crate::error::{Error, Result};

/// One message of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueRecord {
    /// SQS's id of the message: what a partial batch failure names.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// The message as it was sent.
    pub body: String,
    /// `aws:sqs`.
    #[serde(rename = "eventSource")]
    pub event_source: String,
}

#[derive(Deserialize)]
struct Batch {
    #[serde(rename = "Records")]
    records: Vec<QueueRecord>,
}

/// Parses an SQS batch; a record from any other source is refused, naming it.
pub(super) fn parse(value: serde_json::Value) -> Result<Trigger> {
    let batch: Batch = from_value(value, "$")?;
    if let Some(n) = batch
        .records
        .iter()
        .position(|r| r.event_source != "aws:sqs")
    {
        return Err(Error::event(
            format!("$.Records[{n}].eventSource"),
            "only SQS batches (`aws:sqs`) are accepted as Records",
        ));
    }
    Ok(Trigger::Queue {
        records: batch.records,
    })
}
