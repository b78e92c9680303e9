//! The commit cycle's traits over rdkafka: the worker's transactional producer and its
//! group consumer.

use super::{Group, Membership, Position, Transactions};
use crate::error::{Error, KafkaOp, Result};
use crate::producer::WorkerProducer;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use std::ffi::CStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The worker's producer as [`Transactions`]; `timeout` bounds each blocking call.
pub(crate) struct KafkaTransactions {
    pub(crate) output: Arc<WorkerProducer>,
    pub(crate) timeout: Duration,
    /// The worker's `group_instance_id`: its transactional id is derived from it, so a
    /// fenced producer means another worker with the same id.
    pub(crate) instance: Option<String>,
}

impl KafkaTransactions {
    /// `e` classified; a fenced producer of a static member is a duplicate instance.
    fn error(&self, op: KafkaOp, e: KafkaError) -> Error {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match (&self.instance, e.rdkafka_error_code()) {
            (
                Some(instance),
                Some(Code::ProducerFenced | Code::Fenced | Code::InvalidProducerEpoch),
            ) => Error::DuplicateInstance {
                instance: instance.clone(),
                op,
                reason: e.to_string(),
            },
            _ => Error::kafka(op, e),
        }
    }

    /// Waits (bounded by the timeout) until every produced record is acknowledged.
    ///
    /// `commit_transaction` and `flush` flush first, and rdkafka's flush waits for the
    /// `ThreadedProducer`'s delivery reports in 100 ms slices: without this, every commit
    /// took at least 100 ms. Polling the in-flight count brings a commit down to a few ms.
    fn drain(&self) {
        let deadline = Instant::now() + self.timeout;
        while self.output.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Transactions for KafkaTransactions {
    type Metadata = ConsumerGroupMetadata;

    fn begin(&mut self) -> Result<()> {
        self.output
            .producer
            .begin_transaction()
            .map_err(|e| self.error(KafkaOp::BeginTransaction, e))
    }

    fn send_offsets(
        &mut self,
        offsets: &[Position],
        metadata: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let tpl = partition_list(offsets, KafkaOp::SendOffsets)?;
        self.output
            .producer
            .send_offsets_to_transaction(&tpl, metadata, self.timeout)
            .map_err(|e| self.error(KafkaOp::SendOffsets, e))
    }

    fn commit(&mut self) -> Result<()> {
        self.drain();
        self.output
            .producer
            .commit_transaction(self.timeout)
            .map_err(|e| self.error(KafkaOp::CommitTransaction, e))
    }

    fn abort(&mut self) -> Result<()> {
        self.output
            .producer
            .abort_transaction(self.timeout)
            .map_err(|e| self.error(KafkaOp::AbortTransaction, e))
    }

    fn flush(&mut self) -> Result<()> {
        let failures = || {
            self.output
                .producer
                .context()
                .delivery_failures
                .load(Ordering::Relaxed)
        };
        let before = failures();
        self.drain();
        self.output
            .producer
            .flush(self.timeout)
            .map_err(|e| self.error(KafkaOp::Flush, e))?;
        if failures() != before {
            return Err(self.output.producer.context().last_failure());
        }
        Ok(())
    }
}

/// The worker's group consumer as [`Group`], for the duration of one call.
pub(crate) struct KafkaGroup<'a, C: ConsumerContext + 'static> {
    pub(crate) consumer: &'a BaseConsumer<C>,
    pub(crate) timeout: Duration,
}

impl<C: ConsumerContext + 'static> Group for KafkaGroup<'_, C> {
    type Metadata = ConsumerGroupMetadata;

    /// Reads the member id and generation before and after taking the metadata that will
    /// be sent: if both reads agree, no rebalance happened in between (a rejoin always
    /// brings a new generation), so the metadata sent is the one checked.
    fn membership(&self) -> Membership<ConsumerGroupMetadata> {
        let before = member_and_generation(self.consumer);
        let metadata = self.consumer.group_metadata();
        let after = member_and_generation(self.consumer);
        let lost = self.consumer.assignment_lost();
        let (member_id, generation) = before.clone().unwrap_or((String::new(), -1));
        Membership {
            lost,
            member_id,
            generation,
            metadata: metadata.filter(|_| before.is_some() && before == after),
        }
    }

    fn seek(&mut self, positions: &[Position]) -> Result<()> {
        let tpl = partition_list(positions, KafkaOp::Seek)?;
        let result = self
            .consumer
            .seek_partitions(tpl, self.timeout)
            .map_err(|e| Error::kafka(KafkaOp::Seek, e))?;
        for elem in result.elements() {
            if let Err(e) = elem.error() {
                return Err(Error::kafka(KafkaOp::Seek, e));
            }
        }
        Ok(())
    }

    fn commit_offsets(&mut self, offsets: &[Position]) -> Result<()> {
        let tpl = partition_list(offsets, KafkaOp::CommitOffsets)?;
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| Error::kafka(KafkaOp::CommitOffsets, e))
    }
}

/// The consumer's current member id and generation, as librdkafka would send them.
pub(crate) fn member_and_generation<C: ConsumerContext + 'static>(
    consumer: &BaseConsumer<C>,
) -> Option<(String, i32)> {
    use rdkafka::bindings as rd;
    // SAFETY: `rd_kafka_consumer_group_metadata` returns a new object that this function
    // owns (or NULL); its member id is a NUL-terminated string it owns. Both are read before
    // the object is destroyed, exactly once.
    unsafe {
        let md = rd::rd_kafka_consumer_group_metadata(consumer.client().native_ptr());
        if md.is_null() {
            return None;
        }
        let member = rd::rd_kafka_consumer_group_metadata_member_id(md);
        let member = if member.is_null() {
            String::new()
        } else {
            CStr::from_ptr(member).to_string_lossy().into_owned()
        };
        let generation = rd::rd_kafka_consumer_group_metadata_generation_id(md);
        rd::rd_kafka_consumer_group_metadata_destroy(md);
        Some((member, generation))
    }
}

/// `positions` as an rdkafka list.
pub(crate) fn partition_list(positions: &[Position], op: KafkaOp) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (task, offset) in positions {
        tpl.add_partition_offset(&task.topic, task.partition, Offset::Offset(*offset))
            .map_err(|e| Error::kafka(op, e))?;
    }
    Ok(tpl)
}
