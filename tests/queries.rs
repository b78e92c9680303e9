//! Interactive queries (`Config::query_server`) against a real broker: two members of the
//! word count serve their counts over HTTP; every word's count read through either one
//! (following redirects) equals the direct count of the corpus once they have caught up,
//! and while a third member joins and leaves, every answer is 200, 307, 404 or 503 and no
//! 200 carries a value that the committed output never held; a member that starts alone
//! once all is processed opens (restores) and serves the states of its partitions.

mod common;

use common::corpus::Corpus;
use common::*;
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One answer of a query server: status, `Location` and body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: serde_json::Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> Answer {
    let mut response = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        location,
        body,
    }
}

/// GET following at most 3 redirects; returns the last answer and how many were followed.
fn get_following(agent: &ureq::Agent, url: &str) -> (Answer, usize) {
    let mut url = url.to_string();
    for hops in 0..=3 {
        let answer = get(agent, &url);
        match (answer.status, &answer.location) {
            (307, Some(next)) => url = next.clone(),
            _ => return (answer, hops),
        }
    }
    panic!("more than 3 redirects from {url}");
}

fn key_url(server: std::net::SocketAddr, word: &str) -> String {
    let encoded: String = word
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("http://{server}/stores/count/keys/{encoded}")
}

/// Asks both servers for every word until all answers equal the direct count (the last
/// committed cycle reaches the local store shortly after its commit), or panics after `deadline`
/// with the differences. Returns how many answers came through a redirect.
fn assert_all_counts(
    servers: &[std::net::SocketAddr],
    expected: &BTreeMap<String, u64>,
    deadline: Duration,
) -> usize {
    let agent = agent();
    let give_up = Instant::now() + deadline;
    loop {
        let mut wrong = Vec::new();
        let mut redirected = 0;
        for server in servers {
            for (word, n) in expected {
                let (answer, hops) = get_following(&agent, &key_url(*server, word));
                redirected += hops;
                let value = answer.body.get("value").and_then(|v| v.as_u64());
                if answer.status != 200 || value != Some(*n) {
                    wrong.push((server.to_string(), word.clone(), *n, answer.status, value));
                }
            }
        }
        if wrong.is_empty() {
            return redirected;
        }
        assert!(
            Instant::now() < give_up,
            "{} answers differ from the direct count, e.g. (server, word, expected, status, value) {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_count_is_served_by_either_member_and_never_an_uncommitted_one() {
    init_tracing();
    let c = Corpus::load("queries", 2_000);
    let expected = c.expected();
    let dir = std::env::temp_dir().join(unique_name("exactly-queries"));
    let config = |w: &str| {
        Config::new(&c.group, &c.b)
            .with_state_dir(dir.join(w))
            .with_commit_max_records(500)
            .with_query_server("127.0.0.1:0")
    };
    let w1 = Runtime::new(config("w1"))
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    let w2 = Runtime::new(config("w2"))
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    let servers = [w1.query_address().unwrap(), w2.query_address().unwrap()];

    // While the members count and a third one joins and leaves, a client keeps asking.
    let stop = Arc::new(AtomicBool::new(false));
    let words: Vec<String> = expected.keys().take(200).cloned().collect();
    let asker = {
        let (stop, words) = (stop.clone(), words.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let mut seen: Vec<(String, u16, Option<u64>)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let word = &words[i % words.len()];
                let answer = get(&agent, &key_url(servers[i % 2], word));
                let value = answer.body.get("value").and_then(|v| v.as_u64());
                seen.push((word.clone(), answer.status, value));
                i += 1;
            }
            seen
        })
    };
    let w3 = Runtime::new(config("w3"))
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while w3.stats().commits < 1 && !w3.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the third member never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    w3.stop();
    w3.join().unwrap();
    c.wait_done();
    stop.store(true, Ordering::Relaxed);
    let seen = asker.join().unwrap();

    // Caught up: every word through either member, redirects followed.
    let redirected = assert_all_counts(&servers, &expected, Duration::from_secs(30));
    assert!(
        redirected > 0,
        "no answer came through a redirect: one member owns every partition?"
    );
    let unknown = get_following(&agent(), &key_url(servers[0], "no-such-word-here")).0;
    assert_eq!(unknown.status, 404, "an unknown word: {:?}", unknown.body);

    // During the run: only the allowed statuses, and every value one the output committed.
    let committed = c.committed_counts();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (word, status, value) in &seen {
        *statuses.entry(*status).or_default() += 1;
        assert!(
            matches!(status, 200 | 307 | 404 | 503),
            "status {status} for `{word}` during the run"
        );
        if *status == 200 {
            let v = value.expect("a 200 without a value");
            assert!(
                committed.get(word).is_some_and(|s| s.contains(&v)),
                "`{word}` was served as {v}, a count the committed output never held ({:?})",
                committed.get(word)
            );
        }
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 0,
        "no query succeeded during the run: {statuses:?}"
    );
    eprintln!(
        "{} queries during the run {statuses:?}; {} words exact through both members, {redirected} via a redirect",
        seen.len(),
        expected.len()
    );

    // A range of one member's keys, and its health.
    let agent = agent();
    let range = get(
        &agent,
        &format!("http://{}/stores/count/keys?limit=5", servers[0]),
    );
    assert_eq!(range.status, 200);
    let entries = range.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5, "{:?}", range.body);
    for e in entries {
        let word = e["key"].as_str().unwrap();
        assert_eq!(e["value"].as_u64(), expected.get(word).copied(), "{e}");
    }
    let health = get(&agent, &format!("http://{}/health", servers[1]));
    assert_eq!(health.status, 200, "{:?}", health.body);
    assert_eq!(health.body["state"], "running");
    let missing = get(&agent, &format!("http://{}/stores/sum/keys/x", servers[1]));
    assert_eq!(missing.status, 404, "{:?}", missing.body);

    // Both stop; a member that starts once everything is processed gets every partition
    // and no new record: it opens (restores, on an empty state dir) the states all the
    // same, and serves every count.
    for w in [w1, w2] {
        w.stop();
        w.join().unwrap();
    }
    let w4 = Runtime::new(config("w4"))
        .spawn(wordcount::pipeline(&c.input, &c.output))
        .unwrap();
    let s4 = w4.query_address().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let local = get(&agent, &format!("http://{s4}/stores/count/keys?limit=1"));
        let open = local.body["partitions"].as_array().map_or(0, Vec::len);
        if open == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late member did not open the states of the 4 partitions it holds: {:?}",
            local.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_all_counts(&[s4], &expected, Duration::from_secs(60));
    w4.stop();
    w4.join().unwrap();
    c.cleanup();
    let _ = std::fs::remove_dir_all(dir);
}
