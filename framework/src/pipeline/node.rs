//! The per-task chain the builder assembles: source decode → operators → sink.
//!
//! Each node forwards the commit-cycle signals (barrier, commit, abort, revoke) downstream
//! after handling them itself, so upstream emissions reach downstream before it flushes.

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::operator::{Collector, Context, Operator};
use crate::record::{Header, Origin, Record};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::sync::Arc;

/// A typed link of the chain.
pub(crate) trait Node<K, V>: Send {
    fn push(&mut self, record: Record<K, V>) -> Result<()>;
    fn barrier(&mut self) -> Result<()>;
    fn commit(&mut self, input_offset: i64) -> Result<()>;
    fn abort(&mut self);
    fn revoke(&mut self);
}

/// The head of a chain: takes raw Kafka messages.
pub(crate) trait RawNode: Send {
    fn push_message(&mut self, message: &BorrowedMessage<'_>) -> Result<()>;
    fn barrier(&mut self) -> Result<()>;
    fn commit(&mut self, input_offset: i64) -> Result<()>;
    fn abort(&mut self);
    fn revoke(&mut self);
}

/// Lets an operator emit into the rest of the chain.
pub(crate) struct Downstream<K, V>(pub(crate) Box<dyn Node<K, V>>);

impl<K, V> Collector<K, V> for Downstream<K, V> {
    #[inline]
    fn collect(&mut self, record: Record<K, V>) -> Result<()> {
        self.0.push(record)
    }
}

/// One operator instance with its context and the rest of the chain.
pub(crate) struct OperatorNode<O: Operator<K, V>, K, V> {
    pub(crate) op: O,
    pub(crate) ctx: Context,
    pub(crate) next: Downstream<O::OutKey, O::OutValue>,
    pub(crate) assigned: bool,
    pub(crate) _in: std::marker::PhantomData<fn(K, V)>,
}

impl<O: Operator<K, V>, K: 'static, V: 'static> Node<K, V> for OperatorNode<O, K, V> {
    #[inline]
    fn push(&mut self, record: Record<K, V>) -> Result<()> {
        if !self.assigned {
            self.op.on_assign(&mut self.ctx)?;
            self.assigned = true;
        }
        self.op.process(record, &mut self.ctx, &mut self.next)
    }
    fn barrier(&mut self) -> Result<()> {
        if self.assigned {
            self.op.on_barrier(&mut self.ctx, &mut self.next)?;
            self.ctx.state_barrier()?;
        }
        self.next.0.barrier()
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        if self.assigned {
            self.ctx.state_commit(input_offset)?;
            self.op.on_commit(&mut self.ctx)?;
        }
        self.next.0.commit(input_offset)
    }
    fn abort(&mut self) {
        if self.assigned {
            self.ctx.state_abort();
            self.op.on_abort(&mut self.ctx);
        }
        self.next.0.abort()
    }
    fn revoke(&mut self) {
        if self.assigned {
            self.op.on_revoke(&mut self.ctx);
        }
        self.next.0.revoke()
    }
}

/// Decodes Kafka messages into typed records.
pub(crate) struct SourceNode<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) key: Arc<dyn Codec<K>>,
    pub(crate) value: Arc<dyn Codec<V>>,
    pub(crate) next: Box<dyn Node<K, V>>,
}

impl<K: 'static, V: 'static> RawNode for SourceNode<K, V> {
    fn push_message(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        let decode_error = |part: &'static str, message: String| Error::Decode {
            part,
            topic: self.topic.to_string(),
            partition: m.partition(),
            offset: m.offset(),
            message,
        };
        let key = match m.key() {
            None => None,
            Some(bytes) => Some(
                self.key
                    .decode(Some(bytes))
                    .map_err(|e| decode_error("key", e))?,
            ),
        };
        let value = self
            .value
            .decode(m.payload())
            .map_err(|e| decode_error("value", e))?;
        let headers = match m.headers() {
            None => Vec::new(),
            Some(hs) => hs
                .iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        };
        self.next.push(Record {
            key,
            value,
            timestamp: m.timestamp().to_millis(),
            headers,
            origin: Origin {
                topic: self.topic.clone(),
                partition: m.partition(),
                offset: m.offset(),
            },
        })
    }
    fn barrier(&mut self) -> Result<()> {
        self.next.barrier()
    }
    fn commit(&mut self, input_offset: i64) -> Result<()> {
        self.next.commit(input_offset)
    }
    fn abort(&mut self) {
        self.next.abort()
    }
    fn revoke(&mut self) {
        self.next.revoke()
    }
}
