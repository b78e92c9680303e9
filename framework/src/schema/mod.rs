//! Schema'd data: Avro and Protobuf serdes in the Confluent wire format, with a
//! schema-registry client (feature `schemas`, on in the `exactly` facade).
//!
//! A record in the wire format is a magic byte `0`, the schema id (4 bytes, big-endian) and
//! the encoded body — for Protobuf, after the message indexes. The id names the *writer's*
//! schema in a registry that speaks the Confluent REST API (Confluent Schema Registry,
//! Apicurio's `ccompat` API, Karapace, Redpanda). Encoding registers the serde's schema under
//! its subject once and caches the id; decoding fetches each writer schema once by id and
//! caches it, so the per-record path makes no request after the first of each schema.
//!
//! ```no_run
//! use exactly_framework::schema::SchemaRegistry;
//! use exactly_framework::{Pipeline, Serde};
//! use std::sync::Arc;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Order { id: String, cents: i64 }
//! const ORDER: &str = r#"{"type":"record","name":"Order","fields":[
//!     {"name":"id","type":"string"},{"name":"cents","type":"long"}]}"#;
//!
//! let registry = Arc::new(SchemaRegistry::new("http://127.0.0.1:8081"));
//! let pipeline = Pipeline::from_topic("orders", Serde::avro::<Order>(ORDER, "orders-value", &registry).unwrap())
//!     .to_topic("orders-copy", Serde::bytes(), Serde::avro::<Order>(ORDER, "orders-copy-value", &registry).unwrap());
//! # let _ = pipeline;
//! ```
//!
//! Without a registry (tests, or schemas registered by a deployment step),
//! [`SchemaRegistry::fixed`] knows only the ids it is given: the wire format is the same.

mod avro;
mod protobuf;
mod registry;

pub use avro::AvroSerde;
pub use protobuf::ProtobufSerde;
pub use registry::{SchemaKind, SchemaRegistry};

impl crate::codec::Serde {
    /// Avro through serde for `T`, in the Confluent wire format: `schema` (its JSON text)
    /// registered under `subject` of `registry` on first use; any writer schema the
    /// registry has is read and resolved to `schema`. See [`AvroSerde`].
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `schema` is not a valid Avro schema.
    pub fn avro<T>(
        schema: &str,
        subject: impl Into<String>,
        registry: &std::sync::Arc<SchemaRegistry>,
    ) -> crate::Result<AvroSerde<T>> {
        AvroSerde::new(schema, subject, registry)
    }

    /// Protobuf (a prost message `T`, the first message of `proto`), in the Confluent wire
    /// format: `proto` registered under `subject` of `registry` on first use. See
    /// [`ProtobufSerde`].
    pub fn protobuf<T>(
        proto: &str,
        subject: impl Into<String>,
        registry: &std::sync::Arc<SchemaRegistry>,
    ) -> ProtobufSerde<T> {
        ProtobufSerde::new(proto, subject, registry)
    }
}

/// The first byte of a record in the Confluent wire format.
const MAGIC: u8 = 0;

/// Prefixes `body` with the wire format's magic byte and `id`.
fn frame(id: u32, mut body: Vec<u8>, extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + extra.len() + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(extra);
    out.append(&mut body);
    out
}

/// Splits a record in the wire format into its schema id and the rest.
fn unframe(bytes: Option<&[u8]>) -> Result<(u32, &[u8]), String> {
    let bytes = bytes.ok_or("null (a tombstone) where a schema'd value was expected")?;
    match bytes {
        [MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [m, ..] if *m != MAGIC => Err(format!(
            "not in the schema-registry wire format: the first byte is {m}, not 0 \
             (was it written without a registry serializer?)"
        )),
        _ => Err(format!(
            "{} bytes: too short for the schema-registry wire format (5-byte header)",
            bytes.len()
        )),
    }
}

#[cfg(test)]
mod tests;
