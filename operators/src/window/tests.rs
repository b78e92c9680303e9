use super::*;
use exactly_framework::testing::Harness;
use exactly_framework::Serde;

type Init = fn() -> u64;
type Fold = fn(u64, u32) -> u64;
type Counter = WindowAggregate<String, u32, u64, Init, Fold>;

fn zero() -> u64 {
    0
}

fn plus_one(n: u64, _: u32) -> u64 {
    n + 1
}

fn count(w: Windows<String, u32, Time>) -> Harness<String, u32, Counter> {
    let (init, fold): (Init, Fold) = (zero, plus_one);
    Harness::build(|ctx| WindowAggregate::open(ctx, w, Arc::new(init), Arc::new(fold))).unwrap()
}

fn sessions(w: Windows<String, u32, Session>) -> Harness<String, u32, Counter> {
    let (init, fold): (Init, Fold) = (zero, plus_one);
    Harness::build(|ctx| {
        WindowAggregate::open_sessions(ctx, w, Arc::new(init), Arc::new(fold), |a, b| a + b)
    })
    .unwrap()
}

/// (key, start, end, value) of every result emitted so far.
fn results<O>(h: &Harness<String, u32, O>) -> Vec<(String, i64, i64, u64)>
where
    O: Operator<String, u32, OutKey = Windowed<String>, OutValue = u64>,
{
    h.output()
        .iter()
        .map(|r| {
            let w = r.key.clone().unwrap();
            (w.key.unwrap(), w.start, w.end, r.value)
        })
        .collect()
}

fn a() -> Option<String> {
    Some("a".to_string())
}

#[test]
fn tumbling_windows_close_at_the_watermark_and_count_late_records() {
    let w = Windows::tumbling(Duration::from_millis(10))
        .out_of_orderness(Duration::from_millis(5))
        .late_records_to(Sink::topic("late", Serde::string(), Serde::bincode()));
    let mut h = count(w);
    for ts in [1, 3, 12, 8] {
        h.push_at(a(), 0, ts).unwrap(); // 8 is out of order but its window is open (wm 7)
    }
    assert!(
        results(&h).is_empty(),
        "nothing closes before the watermark reaches 10"
    );
    h.push_at(a(), 0, 16).unwrap(); // watermark 11: [0, 10) closes with 1, 3, 8
    assert_eq!(results(&h), vec![("a".into(), 0, 10, 3)]);
    h.push_at(a(), 7, 2).unwrap(); // [0, 10) is closed: late
    assert_eq!(h.operator().late_records(), 1);
    assert_eq!(h.side_records().len(), 1);
    assert_eq!(h.side_records()[0].topic, "late");
    h.push_at(a(), 0, 25).unwrap(); // watermark 20: [10, 20) closes with 12, 16
    assert_eq!(
        results(&h),
        vec![("a".into(), 0, 10, 3), ("a".into(), 10, 20, 2)]
    );
}

#[test]
fn allowed_lateness_keeps_a_window_open_for_late_updates() {
    let w =
        Windows::tumbling(Duration::from_millis(10)).allowed_lateness(Duration::from_millis(10));
    let mut h = count(w);
    h.push_at(a(), 0, 5).unwrap();
    h.push_at(a(), 0, 15).unwrap(); // watermark 15 < 10 + 10: [0, 10) still open
    h.push_at(a(), 0, 6).unwrap(); // accepted
    h.push_at(a(), 0, 20).unwrap(); // watermark 20: [0, 10) closes with 2
    assert_eq!(results(&h), vec![("a".into(), 0, 10, 2)]);
    h.push_at(a(), 0, 7).unwrap(); // now late
    assert_eq!(h.operator().late_records(), 1);
}

#[test]
fn hopping_windows_count_a_record_in_each_window_it_falls_in() {
    let w = Windows::hopping(Duration::from_millis(10), Duration::from_millis(5));
    let mut h = count(w);
    h.push_at(a(), 0, 7).unwrap(); // [0, 10) and [5, 15)
    h.push_at(a(), 0, 11).unwrap(); // watermark 11 closes [0, 10); 11 joins [5, 15), [10, 20)
    h.push_at(a(), 0, 40).unwrap();
    assert_eq!(
        results(&h),
        vec![
            ("a".into(), 0, 10, 1),
            ("a".into(), 5, 15, 2),
            ("a".into(), 10, 20, 1),
        ]
    );
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    let w = Windows::session(Duration::from_millis(10)).out_of_orderness(Duration::from_millis(50));
    let mut h = sessions(w);
    h.push_at(a(), 0, 100).unwrap();
    h.push_at(a(), 0, 115).unwrap(); // 15 ms after: a second session
    h.push_at(a(), 0, 108).unwrap(); // within 10 ms of both: one session [100, 115]
    h.push_at(Some("b".into()), 0, 104).unwrap();
    h.push_at(a(), 0, 300).unwrap(); // watermark 250 closes everything before
    let mut got = results(&h);
    got.sort();
    assert_eq!(
        got,
        vec![("a".into(), 100, 115, 3), ("b".into(), 104, 104, 1)]
    );
}

#[test]
fn emit_updates_sends_every_intermediate_value_then_the_final_one() {
    let w = Windows::tumbling(Duration::from_millis(10)).emit_updates();
    let mut h = count(w);
    for ts in [1, 2, 3, 10] {
        h.push_at(a(), 0, ts).unwrap();
    }
    assert_eq!(
        results(&h),
        vec![
            ("a".into(), 0, 10, 1),
            ("a".into(), 0, 10, 2),
            ("a".into(), 0, 10, 3),
            ("a".into(), 0, 10, 3), // final, at watermark 10
            ("a".into(), 10, 20, 1),
        ]
    );
}

#[test]
fn an_aborted_cycle_is_replayed_to_the_same_results() {
    let run = |abort: bool| {
        let mut h = count(Windows::tumbling(Duration::from_millis(10)));
        h.push_at(a(), 0, 1).unwrap();
        h.push_at(a(), 0, 12).unwrap(); // closes [0, 10)
        h.barrier().unwrap();
        let replay = [(14, 0), (31, 0), (33, 0)];
        if abort {
            for (ts, v) in replay {
                h.push_at(a(), v, ts).unwrap();
            }
            h.abort();
            h.take_output();
        } else {
            h.take_output();
        }
        for (ts, v) in replay {
            h.push_at(a(), v, ts).unwrap();
        }
        h.push_at(a(), 0, 50).unwrap();
        results(&h)
    };
    let clean = run(false);
    assert_eq!(
        clean,
        vec![("a".into(), 10, 20, 2), ("a".into(), 30, 40, 2)]
    );
    assert_eq!(run(true), clean, "the abort changed the results");
}

#[test]
fn idle_input_closes_the_last_sessions_without_a_later_record() {
    let w =
        Windows::session(Duration::from_millis(1_000)).close_when_idle(Duration::from_millis(600));
    let mut h = sessions(w);
    h.push_at(a(), 0, 10_000).unwrap();
    h.push_at(Some("b".into()), 0, 10_500).unwrap();
    h.fire_wall_clock().unwrap(); // records arrived since the last tick: time stays
    assert!(results(&h).is_empty());
    h.fire_wall_clock().unwrap(); // idle: stream time 10 500 -> 11 100, closes a (gap ends 11 000)
    assert_eq!(results(&h), vec![("a".into(), 10_000, 10_000, 1)]);
    h.fire_wall_clock().unwrap(); // 11 700: closes b (11 500)
    assert_eq!(
        results(&h),
        vec![
            ("a".into(), 10_000, 10_000, 1),
            ("b".into(), 10_500, 10_500, 1)
        ]
    );
    h.fire_wall_clock().unwrap(); // nothing open: stream time stays
    assert_eq!(results(&h).len(), 2);
    // A record older than the advanced stream time is late for a closed session.
    h.push_at(a(), 0, 10_100).unwrap();
    assert_eq!(h.operator().late_records(), 1);
}

#[test]
fn without_close_when_idle_the_wall_clock_closes_nothing() {
    let mut h = sessions(Windows::session(Duration::from_millis(1_000)));
    h.push_at(a(), 0, 10_000).unwrap();
    for _ in 0..5 {
        h.fire_wall_clock().unwrap();
    }
    assert!(results(&h).is_empty());
}
