//! How the framework's Kafka clients reach a secured cluster: TLS (the brokers' certificate
//! checked against a CA, hostname verification on, optionally a client certificate for
//! mutual TLS) and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER with OIDC client
//! credentials).
//!
//! One [`Security`] in [`Config`](crate::Config) applies to every client the runtime creates:
//! workers' consumers and producers, restore consumers, table readers, admin clients. It
//! becomes librdkafka's `security.protocol`, `ssl.*` and `sasl.*` properties when a client is
//! created; secrets ([`Secret`]) are read from their file or environment variable at that
//! moment (a rotated password file is picked up by the next client) and never appear in
//! `Debug` output or logs.
//!
//! ```
//! use exactly_framework::{Config, Sasl, Secret, Security, Tls};
//!
//! let config = Config::new("orders-app", "broker-1.example.com:9093").with_security(
//!     Security::sasl_ssl(
//!         Sasl::scram_sha512("orders-app", Secret::file("/run/secrets/kafka-password")),
//!         Tls::with_ca_file("/etc/kafka/ca.pem"),
//!     ),
//! );
//! assert_eq!(config.security.protocol(), "sasl_ssl");
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A password, client secret or key password: given as a value, or read from a file or an
/// environment variable when a client is created. `Debug` and `Serialize` never show a
/// value (`<hidden>`); a file path or variable name is shown.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Secret {
    /// The secret itself.
    Value(String),
    /// A file holding the secret (one trailing newline is ignored), e.g. a mounted
    /// Kubernetes secret.
    File(PathBuf),
    /// The name of an environment variable holding the secret.
    Env(String),
}

impl Secret {
    /// The secret itself.
    pub fn value(value: impl Into<String>) -> Self {
        Secret::Value(value.into())
    }

    /// A secret read from this file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Secret::File(path.into())
    }

    /// A secret read from this environment variable.
    pub fn env(name: impl Into<String>) -> Self {
        Secret::Env(name.into())
    }

    /// Reads the secret; `what` names it in the error (`security.sasl.password`).
    pub(crate) fn reveal(&self, what: &str) -> Result<String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(path) => {
                let mut s = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(
                        what,
                        format!("cannot read the file {}: {e}", path.display()),
                    )
                })?;
                if s.ends_with('\n') {
                    s.pop();
                    if s.ends_with('\r') {
                        s.pop();
                    }
                }
                Ok(s)
            }
            Secret::Env(name) => std::env::var(name).map_err(|_| {
                Error::config(
                    what,
                    format!("the environment variable {name} is not set (or not UTF-8)"),
                )
            }),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("<hidden>"),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
            Secret::Env(name) => f.debug_tuple("Env").field(name).finish(),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Secret::Value(_) => s.serialize_newtype_variant("Secret", 0, "value", "<hidden>"),
            Secret::File(path) => s.serialize_newtype_variant("Secret", 1, "file", path),
            Secret::Env(name) => s.serialize_newtype_variant("Secret", 2, "env", name),
        }
    }
}

/// TLS settings. The brokers' certificate is always verified; the hostname too unless
/// `verify_hostname` is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM file of the CA certificate(s) that signed the brokers' certificates. `None`: the
    /// system's CA certificates (`ssl.ca.location=probe`: what managed services with public
    /// certificates need).
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate, for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of this client's private key, for mutual TLS (with `cert_file`).
    pub key_file: Option<PathBuf>,
    /// The password of an encrypted `key_file`.
    pub key_password: Option<Secret>,
    /// Check that the broker's certificate names the host connected to (default true; turn
    /// it off only for a test cluster whose certificates name no host).
    pub verify_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            verify_hostname: true,
        }
    }
}

impl Tls {
    /// TLS with the system's CA certificates.
    pub fn system_ca() -> Self {
        Tls::default()
    }

    /// TLS with the brokers' certificates signed by the CA in this PEM file.
    pub fn with_ca_file(path: impl Into<PathBuf>) -> Self {
        Tls {
            ca_file: Some(path.into()),
            ..Tls::default()
        }
    }

    /// Adds a client certificate and key (mutual TLS).
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// Sets the password of an encrypted key file.
    pub fn with_key_password(mut self, password: Secret) -> Self {
        self.key_password = Some(password);
        self
    }

    /// Turns hostname verification off or on.
    pub fn with_verify_hostname(mut self, verify: bool) -> Self {
        self.verify_hostname = verify;
        self
    }
}

/// A SASL mechanism with its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sasl {
    /// `PLAIN`: user name and password (use it over TLS only).
    Plain {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `SCRAM-SHA-256`.
    ScramSha256 {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `SCRAM-SHA-512`.
    ScramSha512 {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `OAUTHBEARER` with OIDC client credentials: librdkafka fetches and refreshes the
    /// token from `token_endpoint_url` (the client-credentials grant).
    OAuthBearer {
        /// The identity provider's token endpoint.
        token_endpoint_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
        /// The scope asked for, if the provider needs one.
        scope: Option<String>,
        /// SASL extensions some services require (`logicalCluster=lkc-123,identityPoolId=...`).
        extensions: Option<String>,
    },
    /// `OAUTHBEARER` with an unsigned token naming `principal`: for test brokers that
    /// accept unsecured tokens (Kafka's default OAUTHBEARER validator), never production.
    OAuthBearerUnsecured {
        /// The principal the token names.
        principal: String,
    },
}

impl Sasl {
    /// `SCRAM-SHA-512` with this user and password.
    pub fn scram_sha512(username: impl Into<String>, password: Secret) -> Self {
        Sasl::ScramSha512 {
            username: username.into(),
            password,
        }
    }

    /// `SCRAM-SHA-256` with this user and password.
    pub fn scram_sha256(username: impl Into<String>, password: Secret) -> Self {
        Sasl::ScramSha256 {
            username: username.into(),
            password,
        }
    }

    /// `PLAIN` with this user and password.
    pub fn plain(username: impl Into<String>, password: Secret) -> Self {
        Sasl::Plain {
            username: username.into(),
            password,
        }
    }

    /// librdkafka's `sasl.mechanism`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::ScramSha256 { .. } => "SCRAM-SHA-256",
            Sasl::ScramSha512 { .. } => "SCRAM-SHA-512",
            Sasl::OAuthBearer { .. } | Sasl::OAuthBearerUnsecured { .. } => "OAUTHBEARER",
        }
    }
}

/// How the clients connect: plaintext (the default), TLS, SASL, or SASL over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// TLS, if the listener is `SSL` or `SASL_SSL`.
    pub tls: Option<Tls>,
    /// SASL, if the listener is `SASL_PLAINTEXT` or `SASL_SSL`.
    pub sasl: Option<Sasl>,
}

/// The librdkafka properties [`Security`] sets; a raw property may not set them too.
pub(crate) const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions",
    "sasl.oauthbearer.config",
    "enable.sasl.oauthbearer.unsecure.jwt",
];

impl Security {
    /// Plaintext: no TLS, no SASL.
    pub fn plaintext() -> Self {
        Security::default()
    }

    /// TLS only (`SSL`).
    pub fn tls(tls: Tls) -> Self {
        Security {
            tls: Some(tls),
            sasl: None,
        }
    }

    /// SASL over TLS (`SASL_SSL`), what managed services ask for.
    pub fn sasl_ssl(sasl: Sasl, tls: Tls) -> Self {
        Security {
            tls: Some(tls),
            sasl: Some(sasl),
        }
    }

    /// SASL without TLS (`SASL_PLAINTEXT`): the password crosses the network readable with
    /// `PLAIN`; for private networks only.
    pub fn sasl_plaintext(sasl: Sasl) -> Self {
        Security {
            tls: None,
            sasl: Some(sasl),
        }
    }

    /// Whether anything is set (otherwise the clients use plaintext, or whatever raw
    /// `security.protocol` property is given).
    pub fn is_set(&self) -> bool {
        self.tls.is_some() || self.sasl.is_some()
    }

    /// librdkafka's `security.protocol` for these settings.
    pub fn protocol(&self) -> &'static str {
        match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        }
    }

    /// The librdkafka properties, secrets read from their files and variables. Nothing
    /// when nothing is set.
    ///
    /// # Errors
    /// [`Error::Config`] when a secret cannot be read, or a client certificate comes
    /// without its key.
    pub(crate) fn properties(&self) -> Result<Vec<(&'static str, String)>> {
        let mut p = Vec::new();
        if !self.is_set() {
            return Ok(p);
        }
        p.push(("security.protocol", self.protocol().to_string()));
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.display().to_string();
            // No CA file: the system's CA certificates, found by probing the usual paths
            // (OpenSSL is linked statically, its own default path is not the system's).
            let ca = tls.ca_file.as_ref().map_or("probe".to_string(), path);
            p.push(("ssl.ca.location", ca));
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    p.push(("ssl.certificate.location", path(cert)));
                    p.push(("ssl.key.location", path(key)));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::config(
                        "security.tls",
                        "cert_file and key_file go together (mutual TLS needs both)",
                    ))
                }
            }
            if let Some(pw) = &tls.key_password {
                p.push(("ssl.key.password", pw.reveal("security.tls.key_password")?));
            }
            let verify = if tls.verify_hostname { "https" } else { "none" };
            p.push(("ssl.endpoint.identification.algorithm", verify.to_string()));
        }
        if let Some(sasl) = &self.sasl {
            p.push(("sasl.mechanism", sasl.mechanism().to_string()));
            match sasl {
                Sasl::Plain { username, password }
                | Sasl::ScramSha256 { username, password }
                | Sasl::ScramSha512 { username, password } => {
                    p.push(("sasl.username", username.clone()));
                    p.push(("sasl.password", password.reveal("security.sasl.password")?));
                }
                Sasl::OAuthBearer {
                    token_endpoint_url,
                    client_id,
                    client_secret,
                    scope,
                    extensions,
                } => {
                    p.push(("sasl.oauthbearer.method", "oidc".to_string()));
                    p.push((
                        "sasl.oauthbearer.token.endpoint.url",
                        token_endpoint_url.clone(),
                    ));
                    p.push(("sasl.oauthbearer.client.id", client_id.clone()));
                    p.push((
                        "sasl.oauthbearer.client.secret",
                        client_secret.reveal("security.sasl.client_secret")?,
                    ));
                    if let Some(scope) = scope {
                        p.push(("sasl.oauthbearer.scope", scope.clone()));
                    }
                    if let Some(ext) = extensions {
                        p.push(("sasl.oauthbearer.extensions", ext.clone()));
                    }
                }
                Sasl::OAuthBearerUnsecured { principal } => {
                    p.push(("enable.sasl.oauthbearer.unsecure.jwt", "true".to_string()));
                    p.push(("sasl.oauthbearer.config", format!("principal={principal}")));
                }
            }
        }
        Ok(p)
    }
}

/// The environment variables [`Config::with_env`](crate::Config::with_env) reads into
/// [`Security`], without their `EXACTLY_` prefix (docs/security.md lists each).
pub const ENV_VARS: &[&str] = &[
    "TLS",
    "TLS_CA_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "TLS_KEY_PASSWORD_FILE",
    "TLS_VERIFY_HOSTNAME",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SASL_PASSWORD_FILE",
    "SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
    "SASL_OAUTHBEARER_CLIENT_ID",
    "SASL_OAUTHBEARER_CLIENT_SECRET",
    "SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
    "SASL_OAUTHBEARER_SCOPE",
    "SASL_OAUTHBEARER_EXTENSIONS",
];

/// A boolean setting as an environment variable gives it (`true`/`1`/`yes`,
/// `false`/`0`/`no`); `key` names it in the error.
pub(crate) fn flag(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(Error::config(key, format!("`{v}` is not true or false"))),
    }
}

impl Security {
    /// Overlays the `EXACTLY_TLS*` and `EXACTLY_SASL*` variables in `vars` (keys without the
    /// `EXACTLY_` prefix, values as given). A password or client secret given in a variable
    /// stays there: the configuration names the variable ([`Secret::Env`]), not its value.
    pub(crate) fn overlay(
        mut self,
        vars: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let var = |k: &str| vars.get(k).map(String::as_str);
        let key = |k: &str| format!("EXACTLY_{k}");
        // TLS: any TLS variable turns it on (EXACTLY_TLS=false turns it off).
        if ENV_VARS[..6].iter().any(|k| var(k).is_some()) {
            let on = match var("TLS") {
                Some(v) => flag(&key("TLS"), v)?,
                None => true,
            };
            if on {
                let mut tls = self.tls.take().unwrap_or_default();
                if let Some(v) = var("TLS_CA_FILE") {
                    tls.ca_file = Some(v.into());
                }
                if let Some(v) = var("TLS_CERT_FILE") {
                    tls.cert_file = Some(v.into());
                }
                if let Some(v) = var("TLS_KEY_FILE") {
                    tls.key_file = Some(v.into());
                }
                if let Some(v) = var("TLS_KEY_PASSWORD_FILE") {
                    tls.key_password = Some(Secret::file(v));
                }
                if let Some(v) = var("TLS_VERIFY_HOSTNAME") {
                    tls.verify_hostname = flag(&key("TLS_VERIFY_HOSTNAME"), v)?;
                }
                self.tls = Some(tls);
            } else {
                self.tls = None;
            }
        }
        let Some(mechanism) = var("SASL_MECHANISM") else {
            if let Some(k) = ENV_VARS[7..].iter().find(|k| var(k).is_some()) {
                return Err(Error::config(
                    key(k),
                    "needs EXACTLY_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)",
                ));
            }
            return Ok(self);
        };
        let required = |k: &str| {
            var(k).map(str::to_string).ok_or_else(|| {
                Error::config(
                    key(k),
                    format!("is required with EXACTLY_SASL_MECHANISM={mechanism}"),
                )
            })
        };
        // A secret: from the file variable, else the variable itself (by name).
        let secret = |k: &str| -> Result<Secret> {
            let file = format!("{k}_FILE");
            match (var(&file), var(k)) {
                (Some(path), _) => Ok(Secret::file(path)),
                (None, Some(_)) => Ok(Secret::env(key(k))),
                (None, None) => Err(Error::config(
                    key(k),
                    format!(
                        "(or {}) is required with EXACTLY_SASL_MECHANISM={mechanism}",
                        key(&file)
                    ),
                )),
            }
        };
        self.sasl = Some(
            match mechanism.to_ascii_uppercase().replace('_', "-").as_str() {
                "PLAIN" => Sasl::plain(required("SASL_USERNAME")?, secret("SASL_PASSWORD")?),
                "SCRAM-SHA-256" => {
                    Sasl::scram_sha256(required("SASL_USERNAME")?, secret("SASL_PASSWORD")?)
                }
                "SCRAM-SHA-512" => {
                    Sasl::scram_sha512(required("SASL_USERNAME")?, secret("SASL_PASSWORD")?)
                }
                "OAUTHBEARER" => Sasl::OAuthBearer {
                    token_endpoint_url: required("SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL")?,
                    client_id: required("SASL_OAUTHBEARER_CLIENT_ID")?,
                    client_secret: secret("SASL_OAUTHBEARER_CLIENT_SECRET")?,
                    scope: var("SASL_OAUTHBEARER_SCOPE").map(str::to_string),
                    extensions: var("SASL_OAUTHBEARER_EXTENSIONS").map(str::to_string),
                },
                other => {
                    return Err(Error::config(
                        key("SASL_MECHANISM"),
                        format!(
                        "`{other}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"
                    ),
                    ))
                }
            },
        );
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(p: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        p.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn protocol_follows_what_is_set() {
        let scram = Sasl::scram_sha512("app", Secret::value("pw"));
        assert_eq!(Security::plaintext().protocol(), "plaintext");
        assert!(Security::plaintext().properties().unwrap().is_empty());
        assert_eq!(Security::tls(Tls::system_ca()).protocol(), "ssl");
        assert_eq!(
            Security::sasl_plaintext(scram.clone()).protocol(),
            "sasl_plaintext"
        );
        let p = Security::sasl_ssl(scram, Tls::with_ca_file("/ca.pem"))
            .properties()
            .unwrap();
        assert_eq!(get(&p, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(get(&p, "ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(
            get(&p, "ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert_eq!(get(&p, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get(&p, "sasl.username"), Some("app"));
        assert_eq!(get(&p, "sasl.password"), Some("pw"));
    }

    #[test]
    fn secrets_come_from_files_and_variables_and_errors_name_them() {
        let dir = std::env::temp_dir().join(format!("exactly-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(Secret::file(&file).reveal("x").unwrap(), "from-file");
        std::env::set_var("EXACTLY_TEST_SECRET_VAR", "from-env");
        assert_eq!(
            Secret::env("EXACTLY_TEST_SECRET_VAR").reveal("x").unwrap(),
            "from-env"
        );
        let e = Secret::file(dir.join("missing"))
            .reveal("security.sasl.password")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid configuration `security.sasl.password`: cannot read the file"),
            "{e}"
        );
        let e = Secret::env("EXACTLY_TEST_NO_SUCH_VAR")
            .reveal("security.sasl.password")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("EXACTLY_TEST_NO_SUCH_VAR is not set"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let mut tls = Tls::with_ca_file("/ca.pem");
        tls.cert_file = Some("/client.pem".into());
        let e = Security::tls(tls).properties().unwrap_err();
        assert!(
            e.to_string().contains("cert_file and key_file go together"),
            "{e}"
        );
    }

    /// Every secret-bearing field: no value in `Debug` or in serialized form.
    #[test]
    fn no_secret_value_in_debug_or_serialized_output() {
        let all = [
            Security::sasl_ssl(
                Sasl::plain("u", Secret::value("hunter2-plain")),
                Tls::system_ca().with_key_password(Secret::value("hunter2-key")),
            ),
            Security::sasl_plaintext(Sasl::scram_sha256("u", Secret::value("hunter2-256"))),
            Security::sasl_plaintext(Sasl::scram_sha512("u", Secret::value("hunter2-512"))),
            Security::sasl_plaintext(Sasl::OAuthBearer {
                token_endpoint_url: "https://idp/token".into(),
                client_id: "id".into(),
                client_secret: Secret::value("hunter2-oidc"),
                scope: None,
                extensions: None,
            }),
        ];
        for s in &all {
            let debug = format!("{s:?}");
            let json = serde_json::to_string(s).unwrap();
            for out in [&debug, &json] {
                assert!(!out.contains("hunter2"), "{out}");
                assert!(out.contains("<hidden>"), "{out}");
            }
        }
        let by_file = format!("{:?}", Secret::file("/run/secrets/kafka"));
        assert_eq!(by_file, r#"File("/run/secrets/kafka")"#);
    }

    #[test]
    fn environment_variables_name_files_and_variables_not_values() {
        let vars: std::collections::BTreeMap<String, String> = [
            ("TLS_CA_FILE", "/ca.pem"),
            ("SASL_MECHANISM", "scram-sha-512"),
            ("SASL_USERNAME", "app"),
            ("SASL_PASSWORD", "hunter2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Security::default().overlay(&vars).unwrap();
        assert_eq!(
            s,
            Security::sasl_ssl(
                Sasl::scram_sha512("app", Secret::env("EXACTLY_SASL_PASSWORD")),
                Tls::with_ca_file("/ca.pem")
            )
        );
        let mut only_user = vars.clone();
        only_user.remove("SASL_MECHANISM");
        let e = Security::default().overlay(&only_user).unwrap_err();
        assert!(
            e.to_string().contains("needs EXACTLY_SASL_MECHANISM"),
            "{e}"
        );
        let mut bad = vars;
        bad.insert("SASL_MECHANISM".into(), "GSSAPI".into());
        let e = Security::default().overlay(&bad).unwrap_err();
        assert!(
            e.to_string().contains("`GSSAPI` is not one of PLAIN"),
            "{e}"
        );
    }

    #[test]
    fn deserializes_from_the_documented_shape() {
        let s: Security = serde_json::from_str(
            r#"{"tls":{"ca_file":"/ca.pem"},
                "sasl":{"scram_sha512":{"username":"app","password":{"file":"/run/pw"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            Security::sasl_ssl(
                Sasl::scram_sha512("app", Secret::file("/run/pw")),
                Tls::with_ca_file("/ca.pem")
            )
        );
    }
}
