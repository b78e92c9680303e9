//! What a pipeline does with a record it cannot process.

/// What a worker does with a bad record: one whose key or value does not decode, that an
/// operator returns an error for, whose output does not encode, or that the producer refuses
/// (larger than `message.max.bytes`). Panics are not bad records (see
/// [`OnPanic`](crate::OnPanic)).
///
/// `Skip` and `DeadLetter` keep exactly-once: the cycle the bad record was in is aborted
/// (so nothing it produced before failing is visible) and replayed, and on the replay the
/// record is skipped, or written to the dead-letter topic, in the cycle's transaction: a bad
/// record is neither lost nor duplicated, and nothing else is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BadRecords {
    /// Stop, naming topic, partition, offset and cause; nothing at or past the record is
    /// committed (the default).
    #[default]
    Fail,
    /// Skip the record: a WARN line with its coordinates and the cause, and
    /// `exactly_bad_records_total{topic, policy="skip"}`.
    Skip,
    /// Write the record to this topic — its raw key, value, timestamp and headers, plus the
    /// headers `exactly.error.topic`, `exactly.error.partition`, `exactly.error.offset` and
    /// `exactly.error.message` — in the same transaction as the rest of its cycle, and count
    /// it (`policy="dead_letter"`). The topic must exist (checked at start).
    DeadLetter(String),
}

impl BadRecords {
    /// The policy's label in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            BadRecords::Fail => "fail",
            BadRecords::Skip => "skip",
            BadRecords::DeadLetter(_) => "dead_letter",
        }
    }
}

/// The header names of a dead letter's error.
pub(crate) mod header {
    pub(crate) const TOPIC: &str = "exactly.error.topic";
    pub(crate) const PARTITION: &str = "exactly.error.partition";
    pub(crate) const OFFSET: &str = "exactly.error.offset";
    pub(crate) const MESSAGE: &str = "exactly.error.message";
}

/// Under `Skip`, logs a bad record found in an aborted cycle; under `DeadLetter`, writes it
/// — raw key, value, timestamp and headers, plus the error's headers — to `output` (the open
/// transaction). `topic` is the record's input topic.
pub(crate) fn divert_record(
    policy: &BadRecords,
    output: &dyn crate::producer::Output,
    topic: &str,
    m: &dyn super::node::InputMessage,
    reason: &str,
) -> crate::error::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    let (partition, offset) = (m.partition(), m.offset());
    match policy {
        BadRecords::Fail => Ok(()),
        BadRecords::Skip => {
            tracing::warn!(topic, partition, offset, reason, "bad record skipped");
            Ok(())
        }
        BadRecords::DeadLetter(dlq) => {
            let mut headers = OwnedHeaders::new();
            for h in m.headers() {
                headers = headers.insert(Header {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            let (p, o) = (partition.to_string(), offset.to_string());
            for (key, value) in [
                (header::TOPIC, topic),
                (header::PARTITION, p.as_str()),
                (header::OFFSET, o.as_str()),
                (header::MESSAGE, reason),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            tracing::warn!(topic, partition, offset, reason, dead_letter = %dlq, "bad record written to the dead-letter topic");
            output.send_encoded(
                dlq,
                crate::producer::Encoded {
                    key: m.key().map(std::borrow::Cow::Borrowed),
                    value: m.payload().map(std::borrow::Cow::Borrowed),
                    headers: Some(headers),
                    partition: None,
                    timestamp: m.timestamp(),
                },
            )
        }
    }
}
