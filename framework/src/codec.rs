//! Serdes: how keys and values become bytes and back.
//!
//! [`Serde`] names the built-in ones (`Serde::string()`, `Serde::bytes()`, `Serde::raw()`,
//! `Serde::json()`, `Serde::bincode()`); implement [`Codec`] for your own format.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

/// Turns a `T` into bytes and back. Errors are messages; the runtime adds the record's
/// topic, partition and offset.
pub trait Codec<T>: Send + Sync + 'static {
    /// Encodes a value; `None` writes a null (a tombstone, for values).
    ///
    /// # Errors
    /// A message saying why the value cannot be encoded.
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String>;

    /// Decodes a value; `None` is a null in Kafka.
    ///
    /// # Errors
    /// A message saying why the bytes are not a `T`.
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String>;
}

/// A shared codec is a codec (what a stage keeps to encode a repartition hop).
impl<T: 'static> Codec<T> for std::sync::Arc<dyn Codec<T>> {
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String> {
        (**self).encode(value)
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        (**self).decode(bytes)
    }
}

/// A key codec seen as a codec of `Option<K>` (how keyed state stores record keys): `None`
/// encodes as no key, and every decoded key is `Some`.
pub(crate) struct OptionalKey<K>(pub(crate) std::sync::Arc<dyn Codec<K>>);

impl<K: 'static> Codec<Option<K>> for OptionalKey<K> {
    fn encode<'a>(&self, value: &'a Option<K>) -> Result<Option<Cow<'a, [u8]>>, String> {
        match value {
            Some(k) => self.0.encode(k),
            None => Ok(None),
        }
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<K>, String> {
        self.0.decode(bytes).map(Some)
    }
}

/// A stage input's key codec, type-erased: an `Arc<dyn Codec<K0>>` and an
/// `Arc<dyn Codec<Option<K0>>>` for the input key type `K0`. A state keyed by `K0` or by
/// `Option<K0>` (a record's key) is queryable with them (`Context::queryable_state`).
#[derive(Clone)]
pub(crate) struct InputKey {
    pub(crate) plain: Arc<dyn std::any::Any + Send + Sync>,
    pub(crate) optional: Arc<dyn std::any::Any + Send + Sync>,
}

impl InputKey {
    pub(crate) fn of<K: 'static>(key: Arc<dyn Codec<K>>) -> Self {
        let optional: Arc<dyn Codec<Option<K>>> = Arc::new(OptionalKey(key.clone()));
        InputKey {
            plain: Arc::new(key),
            optional: Arc::new(optional),
        }
    }

    /// The codec of a state key `SK` (the input key type or its `Option`), if it is one.
    pub(crate) fn codec<SK: 'static>(&self) -> Option<Arc<dyn Codec<SK>>> {
        self.plain
            .downcast_ref::<Arc<dyn Codec<SK>>>()
            .or_else(|| self.optional.downcast_ref::<Arc<dyn Codec<SK>>>())
            .cloned()
    }
}

/// The built-in serdes.
pub struct Serde;

impl Serde {
    /// UTF-8 strings; invalid UTF-8 or a null is a decode error.
    pub fn string() -> StringSerde {
        StringSerde
    }
    /// Bytes as they are; a null is a decode error.
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }
    /// Bytes as they are, null kept as `None` (for copying records unchanged).
    pub fn raw() -> RawSerde {
        RawSerde
    }
    /// JSON through serde_json.
    pub fn json<T>() -> JsonSerde<T> {
        JsonSerde(PhantomData)
    }
    /// bincode 2 (standard configuration) through serde.
    pub fn bincode<T>() -> BincodeSerde<T> {
        BincodeSerde(PhantomData)
    }
}

fn non_null(bytes: Option<&[u8]>) -> Result<&[u8], String> {
    bytes.ok_or_else(|| "null (a tombstone) where a value was expected".to_string())
}

/// UTF-8 string serde. See [`Serde::string`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Codec<String> for StringSerde {
    fn encode<'a>(&self, value: &'a String) -> Result<Option<Cow<'a, [u8]>>, String> {
        Ok(Some(Cow::Borrowed(value.as_bytes())))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        let b = non_null(bytes)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8 ({e})"))
    }
}

/// Byte-vector serde. See [`Serde::bytes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Codec<Vec<u8>> for BytesSerde {
    fn encode<'a>(&self, value: &'a Vec<u8>) -> Result<Option<Cow<'a, [u8]>>, String> {
        Ok(Some(Cow::Borrowed(value)))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Vec<u8>, String> {
        non_null(bytes).map(<[u8]>::to_vec)
    }
}

/// Nullable bytes serde. See [`Serde::raw`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawSerde;

impl Codec<Option<Vec<u8>>> for RawSerde {
    fn encode<'a>(&self, value: &'a Option<Vec<u8>>) -> Result<Option<Cow<'a, [u8]>>, String> {
        Ok(value.as_deref().map(Cow::Borrowed))
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
        Ok(bytes.map(<[u8]>::to_vec))
    }
}

/// JSON serde. See [`Serde::json`].
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Codec<T> for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String> {
        serde_json::to_vec(value)
            .map(|v| Some(Cow::Owned(v)))
            .map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        serde_json::from_slice(non_null(bytes)?).map_err(|e| format!("invalid JSON ({e})"))
    }
}

/// bincode 2 serde. See [`Serde::bincode`].
pub struct BincodeSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for BincodeSerde<T> {
    fn clone(&self) -> Self {
        BincodeSerde(PhantomData)
    }
}

impl<T> Codec<T> for BincodeSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    fn encode<'a>(&self, value: &'a T) -> Result<Option<Cow<'a, [u8]>>, String> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map(|v| Some(Cow::Owned(v)))
            .map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        bincode::serde::decode_from_slice(non_null(bytes)?, bincode::config::standard())
            .map(|(v, _)| v)
            .map_err(|e| format!("invalid bincode ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: PartialEq + std::fmt::Debug>(c: &impl Codec<T>, v: T) {
        let bytes = c.encode(&v).unwrap().map(|b| b.into_owned());
        assert_eq!(c.decode(bytes.as_deref()).unwrap(), v);
    }

    #[test]
    fn built_ins_round_trip() {
        round_trip(&Serde::string(), "héllo".to_string());
        round_trip(&Serde::bytes(), vec![0, 159, 146, 150]);
        round_trip(&Serde::raw(), None);
        round_trip(&Serde::raw(), Some(vec![1, 2]));
        round_trip(&Serde::json(), (String::from("a"), 7u64));
        round_trip(&Serde::bincode(), (String::from("a"), 7u64));
    }

    #[test]
    fn bad_input_says_why() {
        assert!(Serde::string()
            .decode(Some(&[0xff, 0xfe]))
            .unwrap_err()
            .starts_with("not UTF-8"));
        assert!(Serde::string().decode(None).unwrap_err().contains("null"));
        assert!(Codec::<u64>::decode(&Serde::json(), Some(b"x"))
            .unwrap_err()
            .starts_with("invalid JSON"));
    }
}
