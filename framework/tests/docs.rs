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
