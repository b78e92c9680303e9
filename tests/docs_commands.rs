//! Every `cargo` command written in the README and in `docs/` names something that exists
//! and that CI runs: an example (run by `tests/examples.rs` or `tests/state.rs`) with flags
//! it accepts, a test target (and test name) of this workspace, a benchmark with flags it
//! accepts. The commands themselves then run as written from a clean clone: CI runs the
//! same examples and tests. No broker needed.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README and every chapter of the guide.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

/// The `cargo` commands in a document's code blocks (continuation lines joined, comments
/// and leading environment assignments dropped), with the line they start on.
fn cargo_commands(text: &str) -> Vec<(usize, String)> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.split(" #").next().unwrap().trim();
        let (continued, line) = match line.strip_suffix('\\') {
            Some(l) => (true, l.trim()),
            None => (false, line),
        };
        let (start, mut command) = pending.take().unwrap_or((i + 1, String::new()));
        if !command.is_empty() {
            command.push(' ');
        }
        command.push_str(line);
        if continued {
            pending = Some((start, command));
            continue;
        }
        // A line may hold several commands (`a && b`).
        for part in command.split("&&") {
            let words: Vec<&str> = part
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect();
            if words.first() == Some(&"cargo") {
                commands.push((start, words.join(" ")));
            }
        }
    }
    commands
}

/// The value of `flag` in `words` (`--example x`).
fn value_of<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == flag)
        .and_then(|i| words.get(i + 1).copied())
}

/// The `--flags` given to the program, after `--`.
fn program_flags<'a>(words: &[&'a str]) -> Vec<&'a str> {
    match words.iter().position(|w| *w == "--") {
        Some(i) => words[i + 1..]
            .iter()
            .filter(|w| w.starts_with("--") && **w != "--help" && **w != "--ignored")
            .map(|w| w.split('=').next().unwrap())
            .collect(),
        None => Vec::new(),
    }
}

/// Every `.rs` file under `path` (a file or a directory), concatenated.
fn sources(path: &Path) -> String {
    if path.is_file() {
        return read(path);
    }
    let mut all = String::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            all.push_str(&sources(&entry.unwrap().path()));
        }
    }
    all
}

/// Whether a program's source accepts `--flag` (clap derives `--kjv-copies` from a field
/// `kjv_copies`; hand-written parsers match the string).
fn accepts(source: &str, flag: &str) -> bool {
    let name = flag.trim_start_matches('-');
    source.contains(&format!("\"{flag}\""))
        || source.contains(&format!("{}:", name.replace('-', "_")))
        || source.contains(&format!("long = \"{name}\""))
}

/// What is wrong with one command, if anything.
fn check(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let root = root();
    if let Some(example) = value_of(&words, "--example") {
        let source = sources(&root.join("examples").join(format!("{example}.rs")));
        if source.is_empty() {
            return Some(format!("no example `{example}`"));
        }
        let runs = read(&root.join("tests/examples.rs")) + &read(&root.join("tests/state.rs"));
        if !runs.contains(&format!("\"{example}\"")) && !runs.contains(&format!("{example}_binary"))
        {
            return Some(format!(
                "example `{example}` is not run by tests/examples.rs"
            ));
        }
        let source = source + &sources(&root.join("examples/support"));
        if let Some(flag) = program_flags(&words)
            .into_iter()
            .find(|f| !accepts(&source, f))
        {
            return Some(format!("example `{example}` has no flag `{flag}`"));
        }
    }
    if let Some(test) = value_of(&words, "--test") {
        let file = ["tests", "framework/tests"]
            .iter()
            .map(|dir| root.join(dir).join(format!("{test}.rs")))
            .find(|p| p.is_file());
        let Some(file) = file else {
            return Some(format!("no test target `{test}`"));
        };
        // `cargo test --test t [name] [-- flags]`: a name filter must match a test.
        let after = words.iter().position(|w| *w == test).unwrap() + 1;
        if let Some(name) = words.get(after).filter(|w| !w.starts_with('-')) {
            if !read(&file).contains(&format!("fn {name}")) {
                return Some(format!("test target `{test}` has no test `{name}`"));
            }
        }
    }
    if let Some(bench) = value_of(&words, "--bench") {
        let benches = root.join("bench/benches");
        let source = sources(&benches.join(format!("{bench}.rs"))) + &sources(&benches.join(bench));
        if source.is_empty() {
            return Some(format!("no benchmark `{bench}`"));
        }
        if let Some(flag) = program_flags(&words)
            .into_iter()
            .find(|f| !accepts(&source, f))
        {
            return Some(format!("benchmark `{bench}` has no flag `{flag}`"));
        }
    }
    None
}

#[test]
fn every_cargo_command_in_the_docs_names_what_exists_and_ci_runs() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        for (line, command) in cargo_commands(&read(&doc)) {
            checked += 1;
            if let Some(problem) = check(&command) {
                let name = doc.strip_prefix(root()).unwrap().display().to_string();
                wrong.push(format!("{name}:{line}: `{command}`: {problem}"));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} commands found: is the parser broken?"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_catches_a_wrong_command() {
    assert!(check("cargo run --release --example no_such_example").is_some());
    assert!(check("cargo run --release --example wordcount -- --no-such-flag").is_some());
    assert!(check("cargo test --test no_such_target").is_some());
    assert!(check("cargo test --test panics no_such_test").is_some());
    assert!(check("cargo bench -p exactly-bench --bench compare -- --no-such-flag").is_some());
    assert!(check("cargo run --release --example wordcount -- --member --group G").is_none());
}

#[test]
fn the_readme_links_every_chapter() {
    let readme = read(&root().join("README.md"));
    let index = read(&root().join("docs/README.md"));
    for doc in documents().into_iter().skip(1) {
        let name = doc.file_name().unwrap().to_str().unwrap();
        if name == "README.md" {
            assert!(
                readme.contains("docs/README.md"),
                "README.md does not link the guide"
            );
            continue;
        }
        assert!(
            readme.contains(&format!("docs/{name}")),
            "README.md does not link docs/{name}"
        );
        assert!(
            index.contains(&format!("({name}")),
            "docs/README.md does not link {name}"
        );
    }
}
