//! A client of the Confluent schema-registry REST API, with caches both ways.

use crate::security::Secret;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kind of a schema, as the registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// Apache Avro (JSON schema text).
    Avro,
    /// Protocol Buffers (`.proto` text).
    Protobuf,
}

impl SchemaKind {
    fn name(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Protobuf => "PROTOBUF",
        }
    }
}

/// A schema registry: where serdes register their schema and find writers' schemas by id.
/// Share one per process (`Arc`): its caches then serve every serde.
pub struct SchemaRegistry {
    /// `None`: fixed ids only.
    url: Option<String>,
    auth: Option<(String, Secret)>,
    agent: ureq::Agent,
    /// (subject, schema) → id.
    ids: Mutex<HashMap<(String, String), u32>>,
    /// id → schema text.
    schemas: Mutex<HashMap<u32, Arc<str>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl SchemaRegistry {
    /// The registry at `url` (for example `http://127.0.0.1:8081`, or an `https://` one).
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_url(Some(url.into().trim_end_matches('/').to_string()))
    }

    /// No registry: only the schemas given with [`with_schema`](Self::with_schema) are
    /// known (for tests, or schemas a deployment step registered). The wire format is the
    /// same; an unknown id or subject is an error.
    pub fn fixed() -> Self {
        Self::with_url(None)
    }

    fn with_url(url: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        SchemaRegistry {
            url,
            auth: None,
            agent,
            ids: Mutex::new(HashMap::new()),
            schemas: Mutex::new(HashMap::new()),
        }
    }

    /// HTTP basic authentication (Confluent Cloud: the API key and secret).
    pub fn with_basic_auth(mut self, user: impl Into<String>, secret: Secret) -> Self {
        self.auth = Some((user.into(), secret));
        self
    }

    /// Knows `schema` as id `id` under `subject`, without asking a registry.
    pub fn with_schema(self, id: u32, subject: &str, schema: &str) -> Self {
        lock(&self.ids).insert((subject.to_string(), schema.to_string()), id);
        lock(&self.schemas).insert(id, Arc::from(schema));
        self
    }

    /// The id of `schema` under `subject`: registered (or found, if the registry has it
    /// already) on the first call, cached after.
    ///
    /// # Errors
    /// A message naming the registry and its answer, when it cannot be reached or refuses.
    pub fn register(&self, subject: &str, kind: SchemaKind, schema: &str) -> Result<u32, String> {
        let key = (subject.to_string(), schema.to_string());
        if let Some(id) = lock(&self.ids).get(&key) {
            return Ok(*id);
        }
        let Some(url) = &self.url else {
            return Err(format!(
                "subject `{subject}`: this schema has no id (a fixed registry knows only the \
                 schemas given to SchemaRegistry::with_schema)"
            ));
        };
        let body = serde_json::json!({ "schema": schema, "schemaType": kind.name() });
        let mut request = self
            .agent
            .post(format!("{url}/subjects/{}/versions", encode_path(subject)))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json");
        if let Some(auth) = self.authorization()? {
            request = request.header("Authorization", auth);
        }
        let answer = answer(url, request.send_json(body))?;
        let id = answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| format!("registry {url}: no schema id in its answer {answer}"))?;
        lock(&self.ids).insert(key, id);
        lock(&self.schemas).insert(id, Arc::from(schema));
        Ok(id)
    }

    /// The schema with id `id`: fetched on the first call, cached after.
    ///
    /// # Errors
    /// A message naming the registry and its answer, when it cannot be reached or has no
    /// such id.
    pub fn schema(&self, id: u32) -> Result<Arc<str>, String> {
        if let Some(s) = lock(&self.schemas).get(&id) {
            return Ok(s.clone());
        }
        let Some(url) = &self.url else {
            return Err(format!(
                "schema id {id} is unknown (a fixed registry knows only the schemas given to \
                 SchemaRegistry::with_schema)"
            ));
        };
        let mut request = self.agent.get(format!("{url}/schemas/ids/{id}"));
        if let Some(auth) = self.authorization()? {
            request = request.header("Authorization", auth);
        }
        let answer = answer(url, request.call())?;
        let schema: Arc<str> = answer["schema"]
            .as_str()
            .ok_or_else(|| format!("registry {url}: no schema in its answer for id {id}"))?
            .into();
        lock(&self.schemas).insert(id, schema.clone());
        Ok(schema)
    }

    /// The `Authorization` header's value, with basic authentication.
    fn authorization(&self) -> Result<Option<String>, String> {
        let Some((user, secret)) = &self.auth else {
            return Ok(None);
        };
        let password = secret
            .reveal("schema registry password")
            .map_err(|e| e.to_string())?;
        Ok(Some(format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes())
        )))
    }
}

/// Reads a registry's JSON answer; anything else is an error naming `url`.
fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<serde_json::Value, String> {
    let response = response.map_err(|e| format!("schema registry {url} unreachable: {e}"))?;
    let status = response.status();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(|e| format!("schema registry {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("schema registry {url} answered {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("schema registry {url}: {e}: {text}"))
}

/// A serde's own schema under its subject: registered on first use, its id kept.
pub(crate) struct WriterSchema {
    pub(crate) registry: Arc<SchemaRegistry>,
    pub(crate) subject: String,
    kind: SchemaKind,
    text: String,
    id: std::sync::OnceLock<u32>,
}

impl WriterSchema {
    pub(crate) fn new(
        registry: &Arc<SchemaRegistry>,
        subject: String,
        kind: SchemaKind,
        text: &str,
    ) -> Self {
        WriterSchema {
            registry: registry.clone(),
            subject,
            kind,
            text: text.to_string(),
            id: std::sync::OnceLock::new(),
        }
    }

    /// The schema's id (registered, or found, on the first call).
    pub(crate) fn id(&self) -> Result<u32, String> {
        if let Some(id) = self.id.get() {
            return Ok(*id);
        }
        let id = self
            .registry
            .register(&self.subject, self.kind, &self.text)?;
        Ok(*self.id.get_or_init(|| id))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Percent-encodes a subject for a URL path.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Standard base64 with padding (for basic authentication).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_path_encoding() {
        assert_eq!(super::base64(b"key:secret"), "a2V5OnNlY3JldA==");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::encode_path("orders-value"), "orders-value");
        assert_eq!(super::encode_path("a b/c"), "a%20b%2Fc");
    }
}
