//! # custom_operator — a user-written stateful operator, exactly once
//!
//! `KeyedSum` adds up the integer values of each key and emits the running sum. It is
//! written only against the public `Operator` trait and a typed keyed state; the runtime
//! keeps that state in its local store, changelogs it in the same Kafka transaction as the output and
//! the consumed offsets, and restores it wherever the partition goes.
//!
//! Input: key = UTF-8 name, value = decimal integer. Output: key = name, value = the sum so
//! far (decimal). Guarantee: `exactly_once` (`--guarantee` to compare). Runs until SIGTERM /
//! SIGINT, then prints its counters.
//!
//! ```text
//! cargo run --release --example custom_operator -- --brokers B --group G --input IN --output OUT
//! cargo run --release --example custom_operator -- --group G --inspect   # local state, worker stopped
//! ```

use clap::Parser;
use exactly::framework::state::{self, KeyedState, StateDescriptor};
use exactly::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

/// The user's operator: one required method, one hook to open its state.
struct KeyedSum {
    sums: Option<KeyedState<String, i64>>,
}

impl Operator<String, String> for KeyedSum {
    type OutKey = String;
    type OutValue = String;

    fn on_assign(&mut self, ctx: &mut Context) -> exactly::Result<()> {
        self.sums = Some(ctx.keyed_state(&StateDescriptor::new("sums"))?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<String, String>,
        _: &mut Context,
        out: &mut dyn Collector<String, String>,
    ) -> exactly::Result<()> {
        let n: i64 = r
            .value
            .trim()
            .parse()
            .map_err(|e| exactly::Error::Operator {
                operator: "keyed-sum".into(),
                message: format!(
                    "value `{}` at {}/{}@{} is not an integer: {e}",
                    r.value, r.origin.topic, r.origin.partition, r.origin.offset
                ),
            })?;
        let key = r.key.clone().unwrap_or_default();
        let sums = self.sums.as_ref().expect("on_assign opens the state");
        let total = sums.get(&key)?.unwrap_or(0) + n;
        sums.put(&key, &total)?;
        out.collect(r.with_value(total.to_string()))
    }
}

#[derive(Parser, Debug)]
#[command(about = "Sum integer values per key with a user-written stateful operator.")]
struct Args {
    /// Bootstrap servers (default: $KAFKA_BROKERS, else the local broker of scripts/kafka).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group / application id.
    #[arg(long, default_value = "keyed-sum")]
    group: String,
    /// Input topic.
    #[arg(long, required_unless_present = "inspect")]
    input: Option<String>,
    /// Output topic.
    #[arg(long, required_unless_present = "inspect")]
    output: Option<String>,
    /// Local state directory.
    #[arg(long, default_value = "./exactly-state")]
    state_dir: PathBuf,
    /// Static membership id (also a stable transactional id).
    #[arg(long)]
    instance_id: Option<String>,
    /// exactly_once, at_least_once or auto_commit.
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// Most input records per transaction.
    #[arg(long, default_value_t = 50_000)]
    commit_max_records: u64,
    /// Print the local state's checkpoints and key counts, then exit.
    #[arg(long)]
    inspect: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    if args.inspect {
        for s in state::inspect(&args.state_dir, &args.group)? {
            println!("{}: {} keys, checkpoint {:?}", s.name, s.keys, s.checkpoint);
        }
        return Ok(());
    }
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => exactly_testkit::bootstrap_servers()?,
    };
    // Installed before the worker starts: an early SIGTERM still stops it cleanly.
    let shutdown = exactly::framework::runtime::shutdown_signal();
    let pipeline = Pipeline::from_topic_with_key(
        args.input.clone().unwrap_or_default(),
        Serde::string(),
        Serde::string(),
    )
    .apply("keyed-sum", || KeyedSum { sums: None })
    .to_topic(
        args.output.clone().unwrap_or_default(),
        Serde::string(),
        Serde::string(),
    );
    let mut config = Config::new(&args.group, &brokers)
        .with_guarantee(args.guarantee)
        .with_state_dir(&args.state_dir)
        .with_commit_max_records(args.commit_max_records)
        .with_session_timeout(Duration::from_secs(6))
        .with_env()?;
    if let Some(id) = &args.instance_id {
        config = config.with_group_instance_id(id);
    }
    let worker = Runtime::new(config).spawn(pipeline)?;
    let s = worker.wait_until(shutdown).await?;
    println!(
        "processed {} records, {} commits, {} aborts, {} state restores replaying {} changelog records",
        s.records_in, s.commits, s.aborts, s.restores, s.restored_records
    );
    Ok(())
}
