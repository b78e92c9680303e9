//! A keyed count over a 2-partition input: the fixture of the state and restore tests.
//! Every check compares the complete output — each key's running counts 1, 2, ..., n in
//! order, once — and the final committed state.

use super::*;
use exactly::framework::state::read_committed_state;
use exactly::framework::StatsSnapshot;
use exactly::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub const KEYS: usize = 20;

pub struct Fixture {
    pub b: String,
    pub input: String,
    pub output: String,
    pub group: String,
    pub sent: BTreeMap<String, u64>,
    pub dir: PathBuf,
    loader: Loader,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let b = brokers();
        let dir = std::env::temp_dir().join(unique_name(&format!("exactly-state-{name}")));
        Fixture {
            input: new_topic(&b, &format!("{name}-in"), 2),
            output: new_topic(&b, &format!("{name}-out"), 2),
            group: unique_name(name),
            sent: BTreeMap::new(),
            dir,
            loader: Loader::new(&b).expect("loader"),
            b,
        }
    }

    /// Sends `n` records with keys k0..k19, value "1", partitioned by key.
    pub fn send(&mut self, n: usize) {
        let records: Vec<(Option<i32>, Option<String>, String)> = (0..n)
            .map(|i| {
                let k = format!("k{}", (i * 7 + self.total() as usize) % KEYS);
                *self.sent.entry(k.clone()).or_default() += 1;
                (None, Some(k), "1".to_string())
            })
            .collect();
        self.loader.send(&self.input, records).unwrap();
    }

    /// Sends `n` records to `partition` with keys `p{partition}-k0` .. `p{partition}-k9`.
    pub fn send_to(&mut self, partition: i32, n: usize) {
        self.send_batches(&[(partition, n)]);
    }

    /// Like [`send_to`](Self::send_to) for each `(partition, n)`, in one produce batch.
    pub fn send_batches(&mut self, batches: &[(i32, usize)]) {
        let mut records: Vec<(Option<i32>, Option<String>, String)> = Vec::new();
        for &(partition, n) in batches {
            for i in 0..n {
                let k = format!("p{partition}-k{}", (i + self.total() as usize) % 10);
                *self.sent.entry(k.clone()).or_default() += 1;
                records.push((Some(partition), Some(k), "1".to_string()));
            }
        }
        self.loader.send(&self.input, records).unwrap();
    }

    /// Writes from now on to a new output topic, and forgets what was sent: the checks
    /// compare what is sent from now on with the new output.
    pub fn new_output(&mut self, name: &str) {
        self.output = new_topic(&self.b, name, 2);
        self.sent.clear();
    }

    /// The changelog topic of the count pipeline's state.
    pub fn changelog(&self) -> String {
        exactly::framework::state::changelog::topic_name(&self.group, "count", "counts")
    }

    pub fn total(&self) -> u64 {
        self.sent.values().sum()
    }

    pub fn state_dir(&self, worker: &str) -> PathBuf {
        self.dir.join(worker)
    }

    pub fn config(&self, worker: &str) -> Config {
        Config::new(&self.group, &self.b)
            .with_state_dir(self.state_dir(worker))
            .with_commit_max_records(100)
            .with_session_timeout(Duration::from_secs(6))
    }

    pub fn count_pipeline(&self) -> Pipeline {
        Pipeline::from_topic_with_key(&self.input, Serde::string(), Serde::string())
            .count("count")
            // One output per record: the checks below see every count 1, 2, ..., n.
            .emit_every_update()
            .to_topic(&self.output, Serde::string(), Serde::json::<u64>())
    }

    /// Runs one in-process worker until everything sent is committed; returns its stats.
    pub fn run_until_done(&self, worker: &str, pipeline: Pipeline) -> StatsSnapshot {
        let w = Runtime::new(self.config(worker)).spawn(pipeline).unwrap();
        super::copy_check::wait_until_committed(
            &self.b,
            &self.group,
            &self.input,
            Duration::from_secs(120),
        );
        let stats = w.stats();
        w.stop();
        w.join().unwrap();
        stats
    }

    /// Every key's output is exactly 1, 2, ..., n (as JSON numbers), in order.
    pub fn assert_output_exact(&self) {
        let out = read_to_end(
            &self.b,
            &self.output,
            Isolation::ReadCommitted,
            READ_DEADLINE,
        )
        .unwrap();
        let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for r in &out {
            let k = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let v: u64 = String::from_utf8(r.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            per_key.entry(k).or_default().push(v);
        }
        assert_eq!(per_key.len(), self.sent.len(), "keys in the output");
        for (k, n) in &self.sent {
            let want: Vec<u64> = (1..=*n).collect();
            assert_eq!(per_key.get(k), Some(&want), "output of key {k}");
        }
        assert_eq!(out.len() as u64, self.total());
    }

    pub fn assert_state_exact(&self, worker: &str, operator: &str, state: &str) {
        let got: BTreeMap<Option<String>, u64> =
            read_committed_state(&self.state_dir(worker), &self.group, operator, state).unwrap();
        let want: BTreeMap<Option<String>, u64> = self
            .sent
            .iter()
            .map(|(k, n)| (Some(k.clone()), *n))
            .collect();
        assert_eq!(got, want, "committed state of {worker}");
    }

    pub fn cleanup(&self) {
        let changelog =
            exactly::framework::state::changelog::topic_name(&self.group, "count", "counts");
        let _ = delete_topic(&self.b, &[&self.input, &self.output, &changelog]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
