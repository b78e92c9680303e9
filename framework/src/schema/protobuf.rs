//! Protobuf messages (prost) in the Confluent wire format.

use super::registry::{SchemaKind, SchemaRegistry, WriterSchema};
use super::{frame, unframe};
use crate::codec::Codec;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

/// Protobuf serde for a prost message `T`: encodes as the first message of its `.proto`
/// (message indexes `[0]`, written as the single byte 0), registered under its subject;
/// decodes any record in the wire format whose body is a `T` (the indexes are skipped:
/// the type is the serde's). See [`crate::Serde::protobuf`].
pub struct ProtobufSerde<T> {
    /// The `.proto` under its subject, registered on first use.
    own: WriterSchema,
    _t: PhantomData<fn() -> T>,
}

impl<T> ProtobufSerde<T> {
    /// A Protobuf serde for messages of `proto` (the `.proto` text registered, `T` its first
    /// message) under `subject` of `registry`.
    pub fn new(proto: &str, subject: impl Into<String>, registry: &Arc<SchemaRegistry>) -> Self {
        ProtobufSerde {
            own: WriterSchema::new(registry, subject.into(), SchemaKind::Protobuf, proto),
            _t: PhantomData,
        }
    }
}

/// Reads one zigzag varint.
fn zigzag(body: &mut &[u8]) -> Result<i64, String> {
    let n = prost::encoding::decode_varint(body)
        .map_err(|e| format!("protobuf message indexes: {e}"))?;
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

/// Skips the message indexes before a Protobuf body: a zigzag count, then that many
/// zigzag indexes (a count of 0 stands for `[0]`).
fn skip_indexes(body: &mut &[u8]) -> Result<(), String> {
    let count = zigzag(body)?;
    if !(0..=64).contains(&count) {
        return Err(format!("protobuf message indexes: a count of {count}"));
    }
    for _ in 0..count {
        zigzag(body)?;
    }
    Ok(())
}

impl<T: prost::Message + Default + 'static> Codec<T> for ProtobufSerde<T> {
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String> {
        let id = self.own.id()?;
        Ok(Some(Cow::Owned(frame(id, value.encode_to_vec(), &[0]))))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        let (id, mut body) = unframe(bytes)?;
        skip_indexes(&mut body)?;
        T::decode(body).map_err(|e| {
            format!(
                "protobuf record of schema {id} for `{}`: {e}",
                self.own.subject
            )
        })
    }
}
