//! `testkit::chaos::check` on two pipelines: the word count (a repartition and keyed
//! counts) and a user-written stateful operator — each run by worker processes that are
//! SIGKILLed and joined by others while the input arrives, its read_committed output
//! compared with the test driver's for the same input: nothing lost, nothing duplicated,
//! each key's values in order.

mod common;

use exactly::framework::state::{KeyedState, StateDescriptor};
use exactly::prelude::*;
use exactly_testkit::chaos::{self, Chaos};

/// A user's operator: the running total of each key's integer values.
struct RunningTotal {
    totals: KeyedState<Option<String>, i64>,
}

impl Operator<String, String> for RunningTotal {
    type OutKey = String;
    type OutValue = String;
    fn process(
        &mut self,
        r: Record<String, String>,
        _: &mut Context,
        out: &mut dyn Collector<String, String>,
    ) -> exactly::Result<()> {
        let total = self.totals.get(&r.key)?.unwrap_or(0) + r.value.parse::<i64>().unwrap_or(0);
        self.totals.put(&r.key, &total)?;
        out.collect(r.with_value(total.to_string()))
    }
}

fn running_totals(input: &str, output: &str) -> Pipeline {
    Pipeline::from_topic_with_key(input, Serde::string(), Serde::string())
        .apply_with("totals", |ctx: &mut Context| {
            Ok(RunningTotal {
                totals: ctx.keyed_state(&StateDescriptor::new("totals"))?,
            })
        })
        .to_topic(output, Serde::string(), Serde::string())
}

#[test]
fn the_word_count_under_chaos_matches_the_driver() {
    common::init_tracing();
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/kjv.txt")).unwrap();
    let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(6_000)
        .map(|l| (None, l.as_bytes().to_vec()))
        .collect();
    let report = chaos::check(
        "the_word_count_under_chaos_matches_the_driver",
        exactly_testkit::wordcount::pipeline_every_update,
        &input,
        Chaos::default(),
    )
    .unwrap();
    eprintln!("word count: {report}");
    assert!(report.kills >= 3, "{report}");
    assert!(report.is_exact(), "{report}");
}

#[test]
fn a_user_written_operator_under_chaos_matches_the_driver() {
    common::init_tracing();
    let input: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..20_000)
        .map(|i| {
            (
                Some(format!("account-{}", i % 97).into_bytes()),
                format!("{}", i % 13 - 6).into_bytes(),
            )
        })
        .collect();
    let report = chaos::check(
        "a_user_written_operator_under_chaos_matches_the_driver",
        running_totals,
        &input,
        Chaos::default(),
    )
    .unwrap();
    eprintln!("running totals: {report}");
    assert!(report.is_exact(), "{report}");
}
