//! The framework is a one-way stack: no top-level module imports a module of a layer above
//! its own, and the modules' imports have no cycle. Read from the `crate::` paths of the
//! sources (imports and fully qualified uses alike; doc comments are skipped), so the
//! structure documented in `src/lib.rs` stays the structure of the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first; a module may use modules of its own layer or of lower ones.
const LAYERS: &[&[&str]] = &[
    &[
        "error",
        "security",
        "config",
        "record",
        "codec",
        "schema",
        "observability",
        "poison",
        "instance",
    ],
    &["topics", "group"],
    &["producer"],
    &["state", "table"],
    &["operator"],
    &["pipeline", "testing"],
    &["commit", "query"],
    &["runtime"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Top-level module of every source file, and the `crate::X` modules it refers to.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let used = out.entry(module.clone()).or_default();
            for line in text.lines() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for (i, _) in line.match_indices("crate::") {
                    // `exactly_framework::...` or `$crate::` are not this crate's paths.
                    let before = &line[..i];
                    if before.ends_with('_')
                        || before.ends_with('$')
                        || before.ends_with(char::is_alphanumeric)
                    {
                        continue;
                    }
                    let rest = &line[i + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty()
                        && name != module
                        && name.chars().next().unwrap().is_lowercase()
                    {
                        used.insert(name);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_module_has_a_layer() {
    for module in imports().keys() {
        assert!(
            layer_of(module).is_some(),
            "module `{module}` is in no layer of tests/layers.rs (and of the map in src/lib.rs)"
        );
    }
}

#[test]
fn modules_import_downward_only() {
    let mut upward = Vec::new();
    for (module, used) in imports() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for u in used {
            match layer_of(&u) {
                Some(l) if l <= own => {}
                Some(l) => upward.push(format!("{module} (layer {own}) -> {u} (layer {l})")),
                None => upward.push(format!("{module} -> {u} (no layer)")),
            }
        }
    }
    assert!(upward.is_empty(), "imports upward: {upward:#?}");
}

#[test]
fn module_imports_have_no_cycle() {
    let graph = imports();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
