//! Where the broker is: `KAFKA_BROKERS`, or the local one started by `scripts/kafka`.

use super::Result;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Bootstrap servers for tests, examples and benches.
///
/// With `KAFKA_BROKERS` set, returns it and starts nothing. Otherwise runs
/// `scripts/kafka start` (which reuses a running broker, and serialises concurrent starts
/// across processes with a lock file) once per process and returns the address it prints.
///
/// # Errors
/// The script's own message (Java or Maven missing, port taken, broker died).
pub fn bootstrap_servers() -> Result<String> {
    static ADDRESS: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    ADDRESS
        .get_or_init(start_local)
        .clone()
        .map_err(super::TestkitError)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("kafka")
}

fn start_local() -> std::result::Result<String, String> {
    if let Ok(b) = std::env::var("KAFKA_BROKERS") {
        if !b.trim().is_empty() {
            return Ok(b);
        }
    }
    let address = run_script(&["start"])?;
    if address.is_empty() {
        return Err("`scripts/kafka start` printed no address".into());
    }
    Ok(address)
}

/// Runs `scripts/kafka ARGS...` (its progress on stderr) and returns the last line it
/// printed on stdout: for `start`, the bootstrap address list.
pub(crate) fn run_script(args: &[&str]) -> std::result::Result<String, String> {
    run_script_with_input(args, None).map(|out| {
        out.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    })
}

/// Runs `scripts/kafka ARGS...` with `input` on its stdin (or none) and returns all it
/// printed on stdout.
pub(crate) fn run_script_with_input(
    args: &[&str],
    input: Option<&str>,
) -> std::result::Result<String, String> {
    use std::io::Write;
    let script = script();
    if !script.exists() {
        return Err(format!(
            "no KAFKA_BROKERS and no {} to start a local broker: set KAFKA_BROKERS=host:port",
            script.display()
        ));
    }
    let mut child = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to {}: {e}", script.display()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let what = format!("`{} {}`", script.display(), args.join(" "));
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}); see its message above, or set KAFKA_BROKERS=host:port",
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A librdkafka client configuration for `brokers`, with the TLS and SASL settings and raw
/// properties of the `EXACTLY_*` environment variables (as [`Config::with_env`] reads
/// them), so the testkit's own clients reach a secured cluster the way the runtime does.
///
/// # Errors
/// When a variable does not parse or a secret cannot be read.
///
/// [`Config::with_env`]: exactly_framework::Config::with_env
pub fn client_config(brokers: &str) -> Result<rdkafka::ClientConfig> {
    exactly_framework::Config::new("exactly-testkit", brokers)
        .with_env()
        .and_then(|c| c.client_config(true))
        .map_err(|e| super::err(format!("the testkit's client configuration: {e}")))
}

/// Like [`bootstrap_servers`] but panics with the message: for tests and benches.
///
/// # Panics
/// When no broker can be had.
pub fn require_broker() -> String {
    match bootstrap_servers() {
        Ok(b) => b,
        Err(e) => panic!("no Kafka broker: {e}"),
    }
}
