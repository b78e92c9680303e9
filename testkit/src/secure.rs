//! The secured local broker of `scripts/kafka --secure`: TLS, SASL and ACLs on a real
//! broker, for the tests of [`Security`](exactly_framework::Security).
//!
//! One node with four listeners: PLAINTEXT for setup (its principal is a super user), SSL
//! with client certificates, SASL_SSL with SCRAM-SHA-256/512, PLAIN and unsecured-token
//! OAUTHBEARER; the KRaft `StandardAuthorizer` denies what no ACL allows. Its CA, the
//! certificates and the SCRAM users' passwords are generated locally on first start.

use super::broker::{run_script, run_script_with_input};
use super::{err, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The endpoints and files of the running secured broker.
#[derive(Debug, Clone)]
pub struct SecureBroker {
    /// The PLAINTEXT listener, for setup and for reading what a test wrote.
    pub plaintext: String,
    /// The SSL listener (mutual TLS: present [`client_cert_file`](Self::client_cert_file)).
    pub ssl: String,
    /// The SASL_SSL listener.
    pub sasl_ssl: String,
    /// The CA that signed the broker's certificate (localhost, 127.0.0.1).
    pub ca_file: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca_file: PathBuf,
    /// A client certificate (CN=tls-client, a super user) signed by the CA.
    pub client_cert_file: PathBuf,
    /// Its private key.
    pub client_key_file: PathBuf,
    /// The SCRAM and PLAIN password of the super user `admin`.
    pub admin_password_file: PathBuf,
    /// The SCRAM and PLAIN password of `app`, who may do only what ACLs grant.
    pub app_password_file: PathBuf,
}

impl SecureBroker {
    /// The password in `file` (for checks that it appears nowhere).
    pub fn password(file: &std::path::Path) -> Result<String> {
        std::fs::read_to_string(file)
            .map(|s| s.trim_end().to_string())
            .map_err(|e| err(format!("cannot read {}: {e}", file.display())))
    }
}

/// Starts the secured broker (or reuses it) and waits until it is usable.
///
/// # Errors
/// The script's message (Java, Maven or openssl missing, a port taken, the broker died).
pub fn start() -> Result<SecureBroker> {
    run_script(&["--secure", "start"]).map_err(err)?;
    let env = run_script_with_input(&["--secure", "env"], None).map_err(err)?;
    let vars: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.to_string())
            .ok_or_else(|| err(format!("`scripts/kafka --secure env` printed no {k}")))
    };
    Ok(SecureBroker {
        plaintext: get("PLAINTEXT")?,
        ssl: get("SSL")?,
        sasl_ssl: get("SASL_SSL")?,
        ca_file: get("CA_FILE")?.into(),
        other_ca_file: get("OTHER_CA_FILE")?.into(),
        client_cert_file: get("CLIENT_CERT_FILE")?.into(),
        client_key_file: get("CLIENT_KEY_FILE")?.into(),
        admin_password_file: get("ADMIN_PASSWORD_FILE")?.into(),
        app_password_file: get("APP_PASSWORD_FILE")?.into(),
    })
}

/// One ALLOW ACL: `principal` (`User:app`) may do `operation` (`READ`, `WRITE`, `CREATE`,
/// `DESCRIBE`, `DELETE`, `DESCRIBE_CONFIGS`, `ALL`, ...) on the `resource_type` (`TOPIC`,
/// `GROUP`, `TRANSACTIONAL_ID`, `CLUSTER`) named `name`, literally or as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// The principal, `User:NAME`.
    pub principal: String,
    /// `TOPIC`, `GROUP`, `TRANSACTIONAL_ID` or `CLUSTER`.
    pub resource_type: String,
    /// Whether `name` is a prefix of the resource names.
    pub prefixed: bool,
    /// The resource name (`kafka-cluster` for the cluster).
    pub name: String,
    /// The operation.
    pub operation: String,
}

impl Acl {
    /// An ACL on the resource named `name` exactly.
    pub fn literal(principal: &str, resource_type: &str, name: &str, operation: &str) -> Acl {
        Acl {
            principal: principal.into(),
            resource_type: resource_type.into(),
            prefixed: false,
            name: name.into(),
            operation: operation.into(),
        }
    }

    /// An ACL on every resource whose name starts with `prefix`.
    pub fn prefixed(principal: &str, resource_type: &str, prefix: &str, operation: &str) -> Acl {
        Acl {
            prefixed: true,
            ..Acl::literal(principal, resource_type, prefix, operation)
        }
    }

    fn line(&self, verb: &str) -> String {
        let pattern = if self.prefixed { "PREFIXED" } else { "LITERAL" };
        format!(
            "{verb} {} {} {pattern} {} {}\n",
            self.principal, self.resource_type, self.name, self.operation
        )
    }
}

/// Grants `acls` (one admin request).
///
/// # Errors
/// When the script or the broker refuses.
pub fn grant(acls: &[Acl]) -> Result<()> {
    let input: String = acls.iter().map(|a| a.line("add")).collect();
    run_script_with_input(&["--secure", "acl"], Some(&input))
        .map(drop)
        .map_err(err)
}

/// Takes `acls` back (one admin request).
///
/// # Errors
/// When the script or the broker refuses.
pub fn revoke(acls: &[Acl]) -> Result<()> {
    let input: String = acls.iter().map(|a| a.line("remove")).collect();
    run_script_with_input(&["--secure", "acl"], Some(&input))
        .map(drop)
        .map_err(err)
}

/// Stops the secured broker (SIGTERM), keeping its data.
///
/// # Errors
/// When the script fails.
pub fn stop() -> Result<()> {
    run_script(&["--secure", "stop"]).map(drop).map_err(err)
}
