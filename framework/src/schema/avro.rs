//! Avro values through serde, in the Confluent wire format.

use super::registry::{SchemaKind, SchemaRegistry, WriterSchema};
use super::{frame, unframe};
use crate::codec::Codec;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Avro serde for `T` (serde-serializable) with a reader/writer schema: encodes with its
/// schema, registered under its subject (`{topic}-value` by Confluent's default naming);
/// decodes any writer schema the registry has, resolved to its own (Avro schema
/// evolution: added fields with defaults, removed fields). See [`crate::Serde::avro`].
pub struct AvroSerde<T> {
    schema: Schema,
    /// `schema` under its subject, registered on first use.
    own: WriterSchema,
    /// Writer schemas by id.
    writers: Mutex<HashMap<u32, Arc<Schema>>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> AvroSerde<T> {
    /// An Avro serde for `schema` (its JSON text) under `subject` of `registry`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `schema` is not a valid Avro schema.
    pub fn new(
        schema: &str,
        subject: impl Into<String>,
        registry: &Arc<SchemaRegistry>,
    ) -> crate::Result<Self> {
        let parsed = Schema::parse_str(schema)
            .map_err(|e| crate::Error::config("avro schema", e.to_string()))?;
        Ok(AvroSerde {
            schema: parsed,
            own: WriterSchema::new(registry, subject.into(), SchemaKind::Avro, schema),
            writers: Mutex::new(HashMap::new()),
            _t: PhantomData,
        })
    }

    fn writer(&self, id: u32) -> Result<Arc<Schema>, String> {
        if let Some(s) = self
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(s.clone());
        }
        let text = self.own.registry.schema(id)?;
        let schema =
            Arc::new(Schema::parse_str(&text).map_err(|e| format!("writer schema {id}: {e}"))?);
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for AvroSerde<T> {
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String> {
        let id = self.own.id()?;
        let avro = apache_avro::to_value(value)
            .and_then(|v| v.resolve(&self.schema))
            .map_err(|e| {
                format!(
                    "not a value of the Avro schema of `{}`: {e}",
                    self.own.subject
                )
            })?;
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(avro))
            .map_err(|e| format!("avro encoding for `{}`: {e}", self.own.subject))?;
        Ok(Some(Cow::Owned(frame(id, body, &[]))))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        let (id, mut body) = unframe(bytes)?;
        let writer = self.writer(id)?;
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&writer)
            .reader_schema(&self.schema)
            .build()
            .and_then(|r| r.read_value(&mut body))
            .map_err(|e| format!("avro record of schema {id} for `{}`: {e}", self.own.subject))?;
        apache_avro::from_value::<T>(&value)
            .map_err(|e| format!("avro record of schema {id} for `{}`: {e}", self.own.subject))
    }
}
