//! A restore never comes back silently wrong: a checkpoint below the changelog's log start
//! or past its end, a changelog that deletes by retention, tombstones compacted away while
//! the local state was away, and a restore that outlasts the transaction timeout.
//! Every test checks the complete output and the final committed state.

mod common;

use common::counting::Fixture;
use common::*;
use exactly::framework::{Collector, Context, KeyedState, Operator, Record, StateDescriptor};
use exactly::prelude::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// For each partition of a changelog, the earliest offset from which every key's last
/// record is still there: deleting the records before it keeps the whole state.
fn start_of_complete_tail(records: &[ReadRecord]) -> Vec<(i32, i64)> {
    let mut last: BTreeMap<(i32, Vec<u8>), i64> = BTreeMap::new();
    for r in records {
        last.insert((r.partition, r.key.clone().unwrap_or_default()), r.offset);
    }
    let mut start: BTreeMap<i32, i64> = BTreeMap::new();
    for ((p, _), o) in last {
        let s = start.entry(p).or_insert(o);
        *s = (*s).min(o);
    }
    start.into_iter().collect()
}

#[test]
fn a_checkpoint_below_the_changelog_log_start_replays_from_the_log_start() {
    init_tracing();
    let mut f = Fixture::new("restore-range");
    f.send(1000);
    f.run_until_done("a", f.count_pipeline());
    f.send(1000);
    f.run_until_done("b", f.count_pipeline());
    // Delete every changelog record before the point from which each key's last value is
    // still there: the log keeps the whole state, but "a"'s checkpoint is now below its
    // start. (DeleteRecords needs `delete` in the policy for a moment.)
    let changelog = f.changelog();
    let records = read_to_end(&f.b, &changelog, Isolation::ReadCommitted, READ_DEADLINE).unwrap();
    let before = start_of_complete_tail(&records);
    set_topic_config(&f.b, &changelog, &[("cleanup.policy", "compact,delete")]).unwrap();
    let low = delete_records(&f.b, &changelog, &before).unwrap();
    set_topic_config(&f.b, &changelog, &[("cleanup.policy", "compact")]).unwrap();
    eprintln!("changelog log start moved to {low:?}");
    assert!(low.iter().all(|(_, o)| *o > 0), "{low:?}");

    f.send(1000);
    f.run_until_done("a", f.count_pipeline());
    f.assert_state_exact("a", "count", "counts");
    f.assert_output_exact();
    f.cleanup();
}

#[test]
fn a_changelog_that_ends_before_the_checkpoint_is_restored_from_its_start() {
    init_tracing();
    let mut f = Fixture::new("restore-recreated");
    f.send(1000);
    f.run_until_done("a", f.count_pipeline());
    // The changelog is deleted and created again, empty: the state it held is gone, and the
    // local checkpoint points past its end. The changelog is the truth: counts start over.
    let changelog = f.changelog();
    delete_topic(&f.b, &[&changelog]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = create_topic_with(&f.b, &changelog, 2, &[("cleanup.policy", "compact")]) {
        assert!(Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    f.new_output("restore-recreated-out2");
    f.send(1000);
    f.run_until_done("a", f.count_pipeline());
    f.assert_output_exact();
    f.assert_state_exact("a", "count", "counts");
    f.cleanup();
}

#[test]
fn a_changelog_that_also_deletes_by_retention_is_refused() {
    let mut f = Fixture::new("restore-policy");
    f.send(10);
    let changelog = f.changelog();
    create_topic_with(&f.b, &changelog, 2, &[("cleanup.policy", "compact,delete")]).unwrap();
    let worker = Runtime::new(f.config("a"))
        .spawn(f.count_pipeline())
        .unwrap();
    let err = stops_with_error(worker, Duration::from_secs(30)).to_string();
    assert!(
        err.contains("cleanup.policy=compact,delete") && err.contains("must be exactly `compact`"),
        "{err}"
    );
    f.cleanup();
}

/// Pairs up each key's records: the first waits in state, the second emits
/// `first+second` and deletes the key (a tombstone in the changelog), like a window that
/// closes.
struct Pairs {
    open: Option<KeyedState<String, String>>,
}

impl Operator<String, String> for Pairs {
    type OutKey = String;
    type OutValue = String;
    fn on_assign(&mut self, ctx: &mut Context) -> exactly::Result<()> {
        self.open = Some(ctx.keyed_state(&StateDescriptor::new("open"))?);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        _: &mut Context,
        out: &mut dyn Collector<String, String>,
    ) -> exactly::Result<()> {
        let open = self.open.as_ref().expect("on_assign opens the state");
        let key = r.key.clone().unwrap_or_default();
        match open.get(&key)? {
            Some(first) => {
                open.delete(&key)?;
                let pair = format!("{first}+{}", r.value);
                out.collect(r.with_value(pair))
            }
            None => open.put(&key, &r.value),
        }
    }
}

#[test]
fn stale_local_state_does_not_bring_back_keys_deleted_while_it_was_away() {
    init_tracing();
    let b = brokers();
    let input = new_topic(&b, "resurrect-in", 1);
    let output = new_topic(&b, "resurrect-out", 1);
    let group = unique_name("resurrect");
    let dir = std::env::temp_dir().join(unique_name("exactly-resurrect"));
    let changelog = exactly::framework::state::changelog::topic_name(&group, "pairs", "open");
    // Compaction as aggressive as the broker allows: tombstones go a second after cleaning.
    create_topic_with(
        &b,
        &changelog,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "1000"),
            ("min.compaction.lag.ms", "0"),
        ],
    )
    .unwrap();
    let pipeline = || {
        Pipeline::from_topic_with_key(&input, Serde::string(), Serde::string())
            .apply("pairs", || Pairs { open: None })
            .to_topic(&output, Serde::string(), Serde::string())
    };
    let config = |worker: &str| {
        Config::new(&group, &b)
            .with_state_dir(dir.join(worker))
            .with_session_timeout(Duration::from_secs(6))
    };
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let send = |value: &str, keys: &[String]| {
        produce(
            &b,
            &input,
            keys.iter()
                .map(|k| (Some(0), Some(k.clone()), value.to_string())),
        )
        .unwrap();
    };
    let run = |worker: &str| Runtime::new(config(worker)).spawn(pipeline()).unwrap();
    let wait = |w: &exactly::Worker| {
        common::copy_check::wait_until_committed_by(
            &b,
            &group,
            &input,
            Duration::from_secs(60),
            &[w],
        )
    };
    let mut want: Vec<(String, String)> = Vec::new();

    // 1. Worker "a" sees the first record of each key, and leaves.
    let a = run("a");
    send("x1", &keys);
    wait(&a);
    a.stop();
    a.join().unwrap();

    // 2. Worker "b" pairs them up (tombstones), and goes on with other keys until
    //    compaction has removed every record of k0..k9 from the changelog.
    let w = run("b");
    send("x2", &keys);
    want.extend(keys.iter().map(|k| (k.clone(), "x1+x2".to_string())));
    wait(&w);
    let deadline = Instant::now() + Duration::from_secs(120);
    for n in 0.. {
        let filler = vec![format!("f{n}")];
        send("y", &filler);
        send("y", &filler);
        want.push((filler[0].clone(), "y+y".to_string()));
        wait(&w);
        let log = read_to_end(&b, &changelog, Isolation::ReadUncommitted, READ_DEADLINE).unwrap();
        if !log
            .iter()
            .any(|r| r.key.as_deref().is_some_and(|k| k.get(1) == Some(&b'k')))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not remove the tombstones of k0..k9 in 120 s"
        );
        // Pacing of the filler input (segments roll on the next append after 100 ms).
        std::thread::sleep(Duration::from_millis(150));
    }
    w.stop();
    w.join().unwrap();

    // 3. "a" comes back with its state from before the pairs: k0..k9 must not be open.
    let a = run("a");
    send("x3", &keys);
    wait(&a);
    a.stop();
    a.join().unwrap();

    let mut got: Vec<(String, String)> =
        read_to_end(&b, &output, Isolation::ReadCommitted, READ_DEADLINE)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    String::from_utf8(r.value.unwrap()).unwrap(),
                )
            })
            .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "pairs under read_committed");
    let _ = delete_topic(&b, &[&input, &output, &changelog]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A transaction left open on `partition` of `topic` until the broker aborts it after
/// `timeout`: `read_committed` readers of that partition wait for it.
fn hanging_transaction(
    brokers: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", unique_name("hanging"))
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    p.send(
        BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .key(b"hanging".as_slice())
            .payload(b"never committed".as_slice()),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    p
}

#[test]
fn a_restore_longer_than_the_transaction_timeout_does_not_fence_the_worker() {
    init_tracing();
    let mut f = Fixture::new("restore-slow");
    let changelog = f.changelog();
    create_topic_with(&f.b, &changelog, 2, &[("cleanup.policy", "compact")]).unwrap();
    let config = f
        .config("a")
        .with_commit_interval(Duration::from_secs(1))
        .with_transaction_timeout(Duration::from_secs(2));
    let w = Runtime::new(config).spawn(f.count_pipeline()).unwrap();
    // Partition 0 first: its task has a transaction open, with output in it, when the
    // first record of partition 1 arrives and its state is restored.
    f.send_to(0, 200);
    common::copy_check::wait_until_committed_by(
        &f.b,
        &f.group,
        &f.input,
        Duration::from_secs(60),
        &[&w],
    );
    let mut hanging = None;
    for round in 0..100 {
        f.send_to(0, 20);
        if round == 10 {
            // Restoring partition 1 waits about 8 s for this transaction; the worker's own
            // transactions time out after 2 s.
            hanging = Some(hanging_transaction(
                &f.b,
                &changelog,
                1,
                Duration::from_secs(8),
            ));
            f.send_to(1, 100);
        }
        assert!(!w.is_finished(), "the worker stopped: {:?}", w.stats());
        // Pacing of the input: a steady stream on partition 0.
        std::thread::sleep(Duration::from_millis(50));
    }
    common::copy_check::wait_until_committed_by(
        &f.b,
        &f.group,
        &f.input,
        Duration::from_secs(60),
        &[&w],
    );
    let stats = w.stats();
    w.stop();
    w.join().unwrap();
    assert!(stats.restores >= 2, "{stats:?}");
    f.assert_output_exact();
    f.assert_state_exact("a", "count", "counts");
    drop(hanging);
    f.cleanup();
}
