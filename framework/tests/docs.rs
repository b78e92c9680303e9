//! The references in `docs/` are generated from the code: a test fails when they drift.

use std::path::Path;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_metrics_reference_lists_every_metric() {
    let table = exactly_framework::observability::metric::markdown_table();
    let text = doc("metrics.md");
    assert!(
        text.contains(&table),
        "docs/metrics.md is out of date; its table must be exactly:\n\n{table}"
    );
}

#[test]
fn the_security_page_lists_every_environment_variable() {
    let text = doc("security.md");
    for var in exactly_framework::security::ENV_VARS {
        let name = format!("EXACTLY_{var}");
        assert!(
            text.contains(&format!("`{name}`"))
                || text.contains(&format!("`{name}_FILE` or `{name}`")),
            "docs/security.md does not list `{name}`"
        );
    }
}

/// The configuration reference, generated from `src/config.rs`: each `Config` field with
/// its doc comment, its builder method and its environment variable (from `with_env`).
fn configuration_table() -> String {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
        .unwrap();
    let body = src
        .split("pub struct Config {")
        .nth(1)
        .and_then(|s| s.split("\n}\n").next())
        .expect("the Config struct");
    let mut rows = vec![
        "| field | builder | environment | what it is |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    let mut doc: Vec<String> = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        let Some(field) = line
            .strip_prefix("pub ")
            .and_then(|l| l.split(':').next())
            .map(str::trim)
        else {
            continue;
        };
        let text = doc
            .join(" ")
            .replace('|', "\\|")
            .replace("[`", "`")
            .replace("`]", "`");
        // Intra-doc link targets `(crate::...)` are not links on a docs page.
        let text = strip_link_targets(&text);
        let upper = field.to_ascii_uppercase();
        let env = if src.contains(&format!("\"{upper}\" =>")) {
            format!("`EXACTLY_{upper}`")
        } else if field == "kafka" {
            "`EXACTLY_LIBRDKAFKA_<PROPERTY>`".to_string()
        } else if field == "security" {
            "`EXACTLY_TLS*`, `EXACTLY_SASL*` (docs/security.md)".to_string()
        } else {
            "—".to_string()
        };
        let builder = match field {
            "application_id" | "brokers" => "`Config::new`".to_string(),
            "kafka" => "`with_kafka_property`".to_string(),
            "kafka_consumer" => "`with_consumer_property`".to_string(),
            "kafka_producer" => "`with_producer_property`".to_string(),
            _ => [field, field.trim_end_matches("_ms")]
                .iter()
                .find(|f| src.contains(&format!("pub fn with_{f}(")))
                .map_or("—".to_string(), |f| format!("`with_{f}`")),
        };
        rows.push(format!("| `{field}` | {builder} | {env} | {text} |"));
        doc.clear();
    }
    rows.join("\n")
}

fn strip_link_targets(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("`(crate::") {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        match rest.find(')') {
            Some(j) => rest = &rest[j + 1..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_configuration_reference_lists_every_field() {
    let table = configuration_table();
    assert!(table.lines().count() > 20, "{table}");
    let text = doc("configuration.md");
    assert!(
        text.contains(&table),
        "docs/configuration.md is out of date; its table must be exactly:\n\n{table}"
    );
}

/// The variants of `exactly::Error`, from `src/error.rs`.
fn error_variants() -> Vec<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/error.rs"))
        .unwrap();
    let body = src
        .split("pub enum Error {")
        .nth(1)
        .expect("pub enum Error")
        .split("\n}\n")
        .next()
        .unwrap();
    body.lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_errors_page_covers_every_error() {
    let variants = error_variants();
    assert!(variants.len() > 15, "{variants:?}");
    let text = doc("errors.md");
    for v in &variants {
        assert!(
            text.contains(&format!("### `Error::{v}`")),
            "docs/errors.md has no section `### `Error::{v}``"
        );
    }
    for heading in text.lines().filter_map(|l| l.strip_prefix("### `Error::")) {
        let name = heading.trim_end_matches('`');
        assert!(
            variants.iter().any(|v| v == name),
            "docs/errors.md documents `Error::{name}`, which no longer exists"
        );
    }
}
