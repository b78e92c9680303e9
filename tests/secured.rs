//! Secured clusters, on a real secured broker (`scripts/kafka --secure`, started here if it
//! is not running): TLS with a client certificate, SASL_SSL with each SASL mechanism, and
//! ACLs under the KRaft `StandardAuthorizer` with `allow.everyone.if.no.acl.found=false`.
//!
//! - a copy over mutual TLS is exact, and a broker certificate from another CA is a clear
//!   error;
//! - the word count (a repartition hop and a changelog, then a worker with empty state that
//!   restores it through the restore consumer) under SCRAM-SHA-512, its user
//!   granted only the ACLs docs/security.md lists, is exact; its password appears in no log
//!   line and no `Debug` output;
//! - a global-table join (its reader: READ on the table topic, DESCRIBE on its group) meets
//!   the whole table;
//! - one of those ACLs missing is a clear error naming the operation and the resource, and
//!   nothing is committed;
//! - PLAIN, SCRAM-SHA-256 and OAUTHBEARER connect too.
//!
//! Setup and checks go through the broker's PLAINTEXT listener. The tests need the local
//! secured broker (whatever `KAFKA_BROKERS` says: they create users' ACLs), so `cargo test` skips them; CI runs them in their own step:
//!
//! ```text
//! cargo test --test secured -- --ignored
//! ```

mod common;

use common::copy_check::*;
use common::*;
use exactly::operators::{StreamExt, Table};
use exactly::{Config, Error, Pipeline, Runtime, Sasl, Secret, Security, Serde, Tls, Worker};
use exactly_testkit::secure::{self, Acl, SecureBroker};
use exactly_testkit::wordcount::{self, CountCheck, KJV};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Every log line of this test binary, at debug level and above.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Captured;

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The secured broker, started once; logs captured from then on.
fn broker() -> &'static SecureBroker {
    static BROKER: OnceLock<SecureBroker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(|| Captured)
            .with_ansi(false)
            .try_init();
        secure::start().expect("the local secured broker (scripts/kafka --secure start)")
    })
}

fn tls(b: &SecureBroker) -> Tls {
    Tls::with_ca_file(&b.ca_file)
}

fn app_scram(b: &SecureBroker) -> Security {
    Security::sasl_ssl(
        Sasl::scram_sha512("app", Secret::file(&b.app_password_file)),
        tls(b),
    )
}

/// The ACLs docs/security.md lists for an application: `User:app` runs `app_id` reading
/// `input` and writing `output`.
fn documented_acls(app_id: &str, input: &str, output: &str) -> Vec<Acl> {
    let p = "User:app";
    let internal = format!("{app_id}-");
    vec![
        Acl::literal(p, "GROUP", app_id, "READ"),
        Acl::prefixed(p, "GROUP", &internal, "DESCRIBE"),
        Acl::prefixed(p, "TRANSACTIONAL_ID", &internal, "WRITE"),
        Acl::literal(p, "TOPIC", input, "READ"),
        Acl::literal(p, "TOPIC", output, "WRITE"),
        Acl::prefixed(p, "TOPIC", &internal, "CREATE"),
        Acl::prefixed(p, "TOPIC", &internal, "READ"),
        Acl::prefixed(p, "TOPIC", &internal, "WRITE"),
        Acl::prefixed(p, "TOPIC", &internal, "DELETE"),
        Acl::prefixed(p, "TOPIC", &internal, "DESCRIBE_CONFIGS"),
    ]
}

/// Copies `n` records from a new 2-partition topic with `security` on `bootstrap`, and
/// checks the read_committed copy (read through the PLAINTEXT listener).
fn copy_exactly(what: &str, bootstrap: &str, security: Security, n: u64) {
    let b = broker();
    let input = new_topic(&b.plaintext, &format!("sec-{what}-in"), 2);
    let output = new_topic(&b.plaintext, &format!("sec-{what}-out"), 2);
    produce(
        &b.plaintext,
        &input,
        (0..n).map(|i| {
            (
                Some((i % 2) as i32),
                Some(format!("k{i}")),
                format!("{what} record {i}"),
            )
        }),
    )
    .unwrap();
    let group = unique_name(&format!("sec-{what}"));
    let state = std::env::temp_dir().join(unique_name("sec-state"));
    let config = Config::new(&group, bootstrap)
        .with_security(security)
        .with_state_dir(&state)
        .with_startup_timeout(Duration::from_secs(30));
    let worker = Runtime::new(config)
        .spawn(Pipeline::copy(&input, &output))
        .unwrap();
    wait_until_committed_by(
        &b.plaintext,
        &group,
        &input,
        Duration::from_secs(60),
        &[&worker],
    );
    worker.stop();
    worker.join().expect("the copier stopped with an error");
    let report = compare_copy(&b.plaintext, &input, &output);
    assert_eq!(report.input as u64, n);
    assert!(report.is_exact(), "{what}: {report:?}");
    delete_topic(&b.plaintext, &[&input, &output]).unwrap();
    let _ = std::fs::remove_dir_all(state);
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn a_copy_over_mutual_tls_is_exact() {
    let b = broker();
    let security = Security::tls(tls(b).with_client_cert(&b.client_cert_file, &b.client_key_file));
    copy_exactly("tls", &b.ssl, security, 3_000);
}

/// Starts a copy that cannot connect to `bootstrap` with `security`; returns the error it
/// stops with (after its 5 s start-up timeout) and that error's message.
fn refused_connection(what: &str, bootstrap: &str, security: Security) -> (Error, String) {
    let b = broker();
    let input = new_topic(&b.plaintext, &format!("sec-{what}-in"), 1);
    let config = Config::new(unique_name(&format!("sec-{what}")), bootstrap)
        .with_security(security)
        .with_state_dir(std::env::temp_dir().join(unique_name("sec-state")))
        .with_startup_timeout(Duration::from_secs(5));
    let worker = Runtime::new(config)
        .spawn(Pipeline::copy(&input, &input))
        .unwrap();
    let e = stops_with_error(worker, Duration::from_secs(60));
    let msg = e.to_string();
    eprintln!("{what}: {msg}");
    delete_topic(&b.plaintext, &[&input]).unwrap();
    (e, msg)
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn a_broker_certificate_from_another_ca_is_a_clear_error() {
    let b = broker();
    let other_ca = Tls::with_ca_file(&b.other_ca_file)
        .with_client_cert(&b.client_cert_file, &b.client_key_file);
    let (e, msg) = refused_connection("ca", &b.ssl, Security::tls(other_ca));
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(msg.contains("certificate verify failed"), "{msg}");
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn a_wrong_password_is_a_clear_error_that_shows_no_password() {
    let b = broker();
    let wrong = "not-the-password-0123";
    let scram = Sasl::scram_sha512("app", Secret::value(wrong));
    let (_, msg) = refused_connection("pw", &b.sasl_ssl, Security::sasl_ssl(scram, tls(b)));
    assert!(msg.contains("Authentication failed"), "{msg}");
    assert!(!msg.contains(wrong), "{msg}");
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn the_word_count_with_only_the_documented_acls_is_exact_and_logs_no_password() {
    let b = broker();
    let password = SecureBroker::password(&b.app_password_file).unwrap();
    let lines_in = new_topic(&b.plaintext, "sec-lines", 2);
    let counts_out = new_topic(&b.plaintext, "sec-counts", 2);
    let lines: Vec<&str> = KJV.lines().take(4_000).collect();
    let expected = wordcount::expected_counts(lines.iter().copied());
    let feed = |range: std::ops::Range<usize>| {
        produce(
            &b.plaintext,
            &lines_in,
            range.map(|i| {
                (
                    Some((i % 2) as i32),
                    Some(i.to_string()),
                    lines[i].to_string(),
                )
            }),
        )
        .unwrap()
    };
    feed(0..3_000);
    let app = unique_name("sec-wc");
    secure::grant(&documented_acls(&app, &lines_in, &counts_out)).unwrap();

    let state = std::env::temp_dir().join(unique_name("sec-state"));
    let config = Config::new(&app, &b.sasl_ssl)
        .with_security(app_scram(b))
        .with_state_dir(&state);
    tracing::info!(?config, "the secured word count's configuration");
    let debug = format!("{config:?}");
    let runtime = Runtime::new(config);
    let workers: Vec<Worker> = (0..2)
        .map(|_| {
            runtime
                .spawn(wordcount::pipeline(&lines_in, &counts_out))
                .unwrap()
        })
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();
    wait_until_committed_by(
        &b.plaintext,
        &app,
        &lines_in,
        Duration::from_secs(120),
        &all,
    );
    let repartition = format!("{app}-words-repartition");
    wait_until_committed_by(
        &b.plaintext,
        &app,
        &repartition,
        Duration::from_secs(120),
        &all,
    );
    for w in workers {
        w.stop();
        w.join().expect("a worker stopped with an error");
    }
    // A worker with an empty state directory takes every partition: it restores the counts
    // through the restore consumer (SASL_SSL, the same ACLs), then counts 1,000 more lines.
    feed(3_000..4_000);
    let fresh = std::env::temp_dir().join(unique_name("sec-state"));
    let worker = Runtime::new(
        Config::new(&app, &b.sasl_ssl)
            .with_security(app_scram(b))
            .with_state_dir(&fresh),
    )
    .spawn(wordcount::pipeline(&lines_in, &counts_out))
    .unwrap();
    for topic in [&lines_in, &repartition] {
        wait_until_committed_by(
            &b.plaintext,
            &app,
            topic,
            Duration::from_secs(120),
            &[&worker],
        );
    }
    let restored = worker.stats().restored_records;
    worker.stop();
    worker
        .join()
        .expect("the restored worker stopped with an error");
    assert!(restored > 0, "the fresh worker restored nothing");
    let _ = std::fs::remove_dir_all(fresh);
    let counts = read_to_end(
        &b.plaintext,
        &counts_out,
        Isolation::ReadCommitted,
        READ_DEADLINE,
    )
    .unwrap();
    let check = CountCheck::of(&counts, &expected);
    eprintln!("word count over SASL_SSL/SCRAM-SHA-512 with ACLs, {restored} changelog records restored: {check}");
    assert!(check.is_exact(), "{check}");

    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(
        log.contains("the secured word count's configuration"),
        "the log capture saw nothing: the check below would prove nothing"
    );
    assert!(!debug.contains(&password), "Debug shows the password");
    assert!(!log.contains(&password), "a log line contains the password");
    let changelog = exactly::framework::state::changelog::topic_name(&app, "count", "counts");
    delete_topic(
        &b.plaintext,
        &[&lines_in, &counts_out, &repartition, &changelog],
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(state);
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn a_global_table_join_with_the_documented_acls_meets_the_whole_table() {
    let b = broker();
    let table = new_topic(&b.plaintext, "sec-tiers", 1);
    let input = new_topic(&b.plaintext, "sec-orders", 2);
    let output = new_topic(&b.plaintext, "sec-enriched", 2);
    let tier = |c: usize| ["gold", "silver", "bronze"][c % 3];
    produce(
        &b.plaintext,
        &table,
        (0..50).map(|c| (None, Some(format!("c{c}")), tier(c).to_string())),
    )
    .unwrap();
    // Customers 0..60: the last 10 are not in the table (a left join: `-`).
    let orders: Vec<(String, String)> = (0..600)
        .map(|i| (format!("c{}", i % 60), format!("o{i}")))
        .collect();
    produce(
        &b.plaintext,
        &input,
        orders
            .iter()
            .map(|(k, o)| (None, Some(k.clone()), o.clone())),
    )
    .unwrap();
    let app = unique_name("sec-join");
    let mut acls = documented_acls(&app, &input, &output);
    acls.push(Acl::literal("User:app", "TOPIC", &table, "READ"));
    secure::grant(&acls).unwrap();
    let state = std::env::temp_dir().join(unique_name("sec-state"));
    let pipeline = Pipeline::from_topic_with_key(&input, Serde::string(), Serde::string())
        .join_table(
            "tiers",
            Table::topic(&table, Serde::string(), Serde::string()),
            |order: String, tier: Option<&String>| {
                Some(format!("{order}|{}", tier.map_or("-", String::as_str)))
            },
        )
        .to_topic(&output, Serde::string(), Serde::string());
    let worker = Runtime::new(
        Config::new(&app, &b.sasl_ssl)
            .with_security(app_scram(b))
            .with_state_dir(&state),
    )
    .spawn(pipeline)
    .unwrap();
    wait_until_committed_by(
        &b.plaintext,
        &app,
        &input,
        Duration::from_secs(60),
        &[&worker],
    );
    worker.stop();
    worker.join().expect("the join stopped with an error");
    let text = |v: &Option<Vec<u8>>| String::from_utf8(v.clone().unwrap_or_default()).unwrap();
    let mut got: Vec<(String, String)> = read_to_end(
        &b.plaintext,
        &output,
        Isolation::ReadCommitted,
        READ_DEADLINE,
    )
    .unwrap()
    .iter()
    .map(|m| (text(&m.key), text(&m.value)))
    .collect();
    let mut expected: Vec<(String, String)> = orders
        .iter()
        .map(|(k, o)| {
            let c: usize = k[1..].parse().unwrap();
            let t = if c < 50 { tier(c) } else { "-" };
            (k.clone(), format!("{o}|{t}"))
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the join's output differs from the expected multiset"
    );
    delete_topic(&b.plaintext, &[&table, &input, &output]).unwrap();
    let _ = std::fs::remove_dir_all(state);
}

/// Runs a copy as `User:app` with the documented ACLs but WRITE on the output, plus
/// `instead` (e.g. DESCRIBE on the output, so that the start-up checks pass and the refusal
/// comes from the transactional producer): the worker stops at once with
/// [`Error::NotAuthorized`] naming WRITE and the output topic, and commits nothing.
fn without_output_write(what: &str, instead: Option<&str>) {
    let b = broker();
    let input = new_topic(&b.plaintext, &format!("sec-{what}-in"), 1);
    let output = new_topic(&b.plaintext, &format!("sec-{what}-out"), 1);
    produce(
        &b.plaintext,
        &input,
        (0..100).map(|i| (Some(0), Some(i.to_string()), format!("record {i}"))),
    )
    .unwrap();
    let app = unique_name(&format!("sec-{what}"));
    let mut acls = documented_acls(&app, &input, &output);
    let missing = Acl::literal("User:app", "TOPIC", &output, "WRITE");
    acls.retain(|a| *a != missing);
    if let Some(op) = instead {
        acls.push(Acl::literal("User:app", "TOPIC", &output, op));
    }
    secure::grant(&acls).unwrap();
    let state = std::env::temp_dir().join(unique_name("sec-state"));
    let config = Config::new(&app, &b.sasl_ssl)
        .with_security(app_scram(b))
        .with_state_dir(&state);
    let worker = Runtime::new(config)
        .spawn(Pipeline::copy(&input, &output))
        .unwrap();
    let e = stops_with_error(worker, Duration::from_secs(60));
    let msg = e.to_string();
    eprintln!("{what}: {msg}");
    assert!(matches!(e, Error::NotAuthorized { .. }), "{e:?}");
    assert!(
        msg.contains(&format!("needs WRITE on TOPIC `{output}`")),
        "{msg}"
    );
    assert!(!msg.contains("fenced"), "{msg}");
    let committed = committed_offsets(&b.plaintext, &app, &input).unwrap();
    assert!(committed.iter().all(|(_, o)| o.is_none()), "{committed:?}");
    let out = read_to_end(
        &b.plaintext,
        &output,
        Isolation::ReadCommitted,
        READ_DEADLINE,
    )
    .unwrap();
    assert!(out.is_empty(), "{} records visible", out.len());
    delete_topic(&b.plaintext, &[&input, &output]).unwrap();
    let _ = std::fs::remove_dir_all(state);
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn a_missing_acl_is_a_clear_error_naming_it_and_commits_nothing() {
    // No ACL at all on the output: the worker's start-up check of the output is refused.
    without_output_write("noacl", None);
    // DESCRIBE but not WRITE: the start-up checks pass, the transaction is refused.
    without_output_write("nowrite", Some("DESCRIBE"));
}

#[test]
#[ignore = "needs the local secured broker; run: cargo test --test secured -- --ignored"]
fn plain_scram_sha256_and_oauthbearer_connect_too() {
    let b = broker();
    let admin = || Secret::file(&b.admin_password_file);
    for (what, sasl) in [
        ("plain", Sasl::plain("admin", admin())),
        ("scram256", Sasl::scram_sha256("admin", admin())),
        (
            "oauthbearer",
            Sasl::OAuthBearerUnsecured {
                principal: "admin".into(),
            },
        ),
    ] {
        copy_exactly(what, &b.sasl_ssl, Security::sasl_ssl(sasl, tls(b)), 500);
    }
}
