//! Several inputs on the broker: `Pipeline::from_topics` (partition `p` of every input in one
//! task, through a forced rebalance; unequal partition counts refused at start) and
//! stream–stream joins (inner and left, the sides keyed differently and partitioned
//! differently), each output compared in full, read_committed.

mod common;

use common::copy_check::wait_until_committed_by;
use common::*;
use exactly::operators::stream_join::JoinWindows;
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn read(b: &str, topic: &str) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for r in read_to_end(b, topic, Isolation::ReadCommitted, READ_DEADLINE).unwrap() {
        let s = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap_or_default()).unwrap();
        *m.entry((s(r.key), s(r.value))).or_default() += 1;
    }
    m
}

#[test]
fn from_topics_counts_each_key_over_both_inputs_in_one_task_through_a_rebalance() {
    init_tracing();
    let b = brokers();
    let (web, app) = (
        new_topic(&b, "inputs-web", 4),
        new_topic(&b, "inputs-app", 4),
    );
    let output = new_topic(&b, "inputs-counts", 4);
    let group = unique_name("inputs");
    let dir = std::env::temp_dir().join(unique_name("exactly-inputs"));
    let pipeline = || {
        Pipeline::from_topics([web.clone(), app.clone()], Serde::string(), Serde::string())
            .count("per-user")
            .emit_every_update()
            .map(|n: u64| n.to_string())
            .to_topic(&output, Serde::string(), Serde::string())
    };
    // Users' clicks on both topics, keyed by user (so co-partitioned by Kafka's partitioner).
    let send = |from: usize, to: usize| {
        for (topic, parity) in [(&web, 0), (&app, 1)] {
            produce(
                &b,
                topic,
                (from..to)
                    .filter(|i| i % 2 == parity)
                    .map(|i| (None, Some(format!("user-{}", i % 31)), format!("click {i}"))),
            )
            .unwrap();
        }
    };
    let config = |w: &str| {
        Config::new(&group, &b)
            .with_state_dir(dir.join(w))
            .with_commit_max_records(200)
    };
    send(0, 2_000);
    let w1 = Runtime::new(config("w1")).spawn(pipeline()).unwrap();
    let w2 = Runtime::new(config("w2")).spawn(pipeline()).unwrap();
    send(2_000, 4_000);
    std::thread::sleep(Duration::from_secs(2));
    w2.stop();
    w2.join().unwrap();
    send(4_000, 6_000);
    let hop = format!("{group}-{web}-{app}-merge");
    for t in [&web, &app, &hop] {
        wait_until_committed_by(&b, &group, t, Duration::from_secs(120), &[&w1]);
    }
    w1.stop();
    w1.join().unwrap();
    let mut want = BTreeMap::new();
    let mut n: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..6_000 {
        let user = format!("user-{}", i % 31);
        let c = n.entry(user.clone()).or_default();
        *c += 1;
        want.insert((user, c.to_string()), 1);
    }
    let got = read(&b, &output);
    assert_eq!(got.values().sum::<usize>(), 6_000, "one count per click");
    assert_eq!(
        got, want,
        "each user's clicks of both topics counted in one task, once"
    );
    let changelog = exactly::framework::state::changelog::topic_name(&group, "per-user", "counts");
    let _ = delete_topic(&b, &[&web, &app, &output, &hop, &changelog]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inputs_merged_partition_by_partition_need_equal_partition_counts() {
    init_tracing();
    let b = brokers();
    let (four, two) = (
        new_topic(&b, "inputs-four", 4),
        new_topic(&b, "inputs-two", 2),
    );
    let output = new_topic(&b, "inputs-out", 1);
    let pipeline = Pipeline::from_topics(
        [four.clone(), two.clone()],
        Serde::string(),
        Serde::string(),
    )
    .to_topic(&output, Serde::string(), Serde::string());
    let w = Runtime::new(Config::new(unique_name("inputs-bad"), &b))
        .spawn(pipeline)
        .unwrap();
    let err = w.join().expect_err("refused at start").to_string();
    assert!(
        err.contains("equal partition counts") && err.contains(&two),
        "{err}"
    );
    let _ = delete_topic(&b, &[&four, &two, &output]);
}

#[test]
fn stream_joins_inner_left_and_outer_over_differently_keyed_sides() {
    init_tracing();
    let b = brokers();
    let impressions = new_topic(&b, "inputs-impressions", 4);
    let clicks = new_topic(&b, "inputs-clicks", 2);
    let (inner_out, left_out, outer_out) = (
        new_topic(&b, "inputs-inner", 4),
        new_topic(&b, "inputs-left", 4),
        new_topic(&b, "inputs-outer", 4),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 3 * 3_600_000;
    // Impression i of ad-i at base + i s, keyed by ad; 2 in 3 clicked 1.5 s later (within
    // the 2 s window), 1 in 6 of those 2.5 s later (outside it). Clicks are keyed by user.
    let n = 600i64;
    let mut imps = Vec::new();
    let mut cls = Vec::new();
    for i in 0..n {
        let t = base + i * 1_000;
        imps.push((format!("ad-{i}"), format!("imp-{i}"), t));
        if i % 3 != 0 {
            let late = i % 6 == 1;
            cls.push((
                format!("user-{}", i % 7),
                format!("ad-{i}|click-{i}"),
                t + if late { 2_500 } else { 1_500 },
            ));
        }
    }
    // Once all is processed, later records move stream time past every window and grace
    // (on every partition of the join's hop), so unmatched impressions come out of the left
    // join. (The grace covers the whole input: the worker may read either topic first.)
    let later: Vec<(String, String, i64)> = (0..16)
        .map(|j| (format!("later-{j}"), format!("later-{j}"), base + 7_200_000))
        .collect();
    let send = |topic: &str, rs: &[(String, String, i64)]| {
        Loader::new(&b)
            .unwrap()
            .send_at(
                topic,
                rs.iter()
                    .map(|(k, v, t)| (None, Some(k.as_str()), v.as_str(), Some(*t))),
            )
            .unwrap();
    };
    send(&clicks, &cls);
    send(&impressions, &imps);
    let group = unique_name("joins");
    let windows = JoinWindows::of(Duration::from_secs(2)).grace(Duration::from_secs(3_600));
    let by_ad = |r: &Record<String, String>| r.value.split_once('|').map(|(ad, _)| ad.to_string());
    let pipeline = Pipeline::from_topic_with_key(&impressions, Serde::string(), Serde::string())
        .tee(|imps| {
            let clicks = Pipeline::from_topic_with_key(&clicks, Serde::string(), Serde::string())
                .apply("clicks-by-ad", move || {
                    exactly::operators::MapKey(std::sync::Arc::new(by_ad))
                });
            imps.left_join_stream("left", clicks, windows, |i: &String, c: Option<&String>| {
                format!(
                    "{i}+{}",
                    c.map_or("-", |c| c.split_once('|').map_or("", |x| x.1))
                )
            })
            .to_topic(&left_out, Serde::string(), Serde::string())
        })
        .tee(|imps| {
            let clicks = Pipeline::from_topic_with_key(&clicks, Serde::string(), Serde::string())
                .apply("clicks-by-ad-3", move || {
                    exactly::operators::MapKey(std::sync::Arc::new(by_ad))
                });
            imps.outer_join_stream(
                "outer",
                clicks,
                windows,
                |i: Option<&String>, c: Option<&String>| {
                    let c = c.map_or("-", |c| c.split_once('|').map_or("", |x| x.1));
                    format!("{}+{c}", i.map_or("-", String::as_str))
                },
            )
            .to_topic(&outer_out, Serde::string(), Serde::string())
        })
        .join_stream(
            "inner",
            Pipeline::from_topic_with_key(&clicks, Serde::string(), Serde::string())
                .apply("clicks-by-ad-2", move || {
                    exactly::operators::MapKey(std::sync::Arc::new(by_ad))
                }),
            windows,
            |i: &String, c: &String| format!("{i}+{}", c.split_once('|').map_or("", |x| x.1)),
        )
        .to_topic(&inner_out, Serde::string(), Serde::string());
    let w = Runtime::new(Config::new(&group, &b).with_commit_max_records(100))
        .spawn(pipeline)
        .unwrap();
    let hops = [
        format!("{group}-left-merge"),
        format!("{group}-inner-merge"),
        format!("{group}-outer-merge"),
    ];
    for round in 0..2 {
        if round == 1 {
            send(&impressions, &later);
        }
        for t in [&impressions, &clicks, &hops[0], &hops[1], &hops[2]] {
            wait_until_committed_by(&b, &group, t, Duration::from_secs(120), &[&w]);
        }
    }
    w.stop();
    w.join().unwrap();
    let matched: Vec<i64> = (0..n).filter(|i| i % 3 != 0 && i % 6 != 1).collect();
    let inner: BTreeMap<(String, String), usize> = matched
        .iter()
        .map(|i| ((format!("ad-{i}"), format!("imp-{i}+click-{i}")), 1))
        .collect();
    assert_eq!(
        read(&b, &inner_out),
        inner,
        "inner join: the clicks within 2 s, once"
    );
    let mut left = inner.clone();
    for i in (0..n).filter(|i| !matched.contains(i)) {
        left.insert((format!("ad-{i}"), format!("imp-{i}+-")), 1);
    }
    assert_eq!(
        read(&b, &left_out),
        left,
        "left join: and every unmatched impression, once"
    );
    let mut outer = left.clone();
    for i in (0..n).filter(|i| i % 6 == 1) {
        outer.insert((format!("ad-{i}"), format!("-+click-{i}")), 1);
    }
    assert_eq!(
        read(&b, &outer_out),
        outer,
        "outer join: and every unmatched click, once"
    );
    let _ = delete_topic(
        &b,
        &[
            &impressions,
            &clicks,
            &inner_out,
            &left_out,
            &outer_out,
            &hops[0],
            &hops[1],
            &hops[2],
        ],
    );
}

#[test]
fn a_co_partitioned_table_join_meets_each_key_s_latest_row() {
    init_tracing();
    let b = brokers();
    let customers = new_topic(&b, "inputs-customers", 4);
    let orders = new_topic(&b, "inputs-orders", 2);
    let output = new_topic(&b, "inputs-enriched", 4);
    let group = unique_name("ktable");
    // The table: 20 customers; c7 renamed; c5 deleted (a tombstone).
    let mut rows: Vec<(String, Option<String>)> = (0..20)
        .map(|i| (format!("c{i}"), Some(format!("Name-{i}"))))
        .collect();
    rows.push(("c7".into(), Some("Renamed-7".into())));
    rows.push(("c5".into(), None));
    Loader::new(&b)
        .unwrap()
        .send_nullable(
            &customers,
            rows.iter()
                .map(|(k, v)| (None, Some(k.as_str()), v.as_deref())),
        )
        .unwrap();
    let by_customer =
        |r: &Record<String, String>| r.value.split_once('|').map(|(c, _)| c.to_string());
    let pipeline = Pipeline::from_topic_with_key(&orders, Serde::string(), Serde::string())
        .apply("by-customer", move || {
            exactly::operators::MapKey(std::sync::Arc::new(by_customer))
        })
        .join_table_by_key(
            "customers",
            &customers,
            Serde::string(),
            Serde::string(),
            |order: String, name: Option<&String>| {
                name.map(|n| format!("{}@{n}", order.split_once('|').map_or("", |x| x.1)))
            },
        )
        .to_topic(&output, Serde::string(), Serde::string());
    let w = Runtime::new(Config::new(&group, &b))
        .spawn(pipeline)
        .unwrap();
    let hop = format!("{group}-customers-merge");
    // The table first, then the orders: each order meets its customer's latest row.
    wait_until_committed_by(&b, &group, &customers, Duration::from_secs(120), &[&w]);
    wait_until_committed_by(&b, &group, &hop, Duration::from_secs(120), &[&w]);
    produce(
        &b,
        &orders,
        (0..500).map(|i| {
            (
                None,
                Some(format!("o{i}")),
                format!("c{}|order-{i}", i % 20),
            )
        }),
    )
    .unwrap();
    for t in [&orders, &hop] {
        wait_until_committed_by(&b, &group, t, Duration::from_secs(120), &[&w]);
    }
    w.stop();
    w.join().unwrap();
    let want: BTreeMap<(String, String), usize> = (0..500)
        .filter(|i| i % 20 != 5)
        .map(|i| {
            let c = i % 20;
            let name = if c == 7 {
                "Renamed-7".to_string()
            } else {
                format!("Name-{c}")
            };
            ((format!("c{c}"), format!("order-{i}@{name}")), 1)
        })
        .collect();
    assert_eq!(
        read(&b, &output),
        want,
        "every order with its customer's latest row, once"
    );
    let changelog =
        exactly::framework::state::changelog::topic_name(&group, "customers-join", "table");
    let _ = delete_topic(&b, &[&customers, &orders, &output, &hop, &changelog]);
}
