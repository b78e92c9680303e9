use super::*;
use crate::record::Origin;
use std::sync::Arc;

/// Emits "due:{key}@{time}" for each timer; schedules one 10 ms after each record.
struct Remind;

impl Operator<String, String> for Remind {
    type OutKey = String;
    type OutValue = String;
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut Context,
        _: &mut dyn Collector<String, String>,
    ) -> Result<()> {
        if r.value == "cancel" {
            return ctx.cancel_event_time(&r.key, r.timestamp.unwrap_or(0) + 10);
        }
        ctx.schedule_event_time(&r.key, r.timestamp.unwrap_or(0) + 10)
    }
    fn on_timer(
        &mut self,
        timer: &Timer,
        _: &mut Context,
        out: &mut dyn Collector<String, String>,
    ) -> Result<()> {
        let key = timer.key::<Option<String>>()?.flatten();
        let label = format!(
            "{:?}:{}@{}",
            timer.kind,
            key.clone().unwrap_or_default(),
            timer.time
        );
        out.collect(timer.record(key, label))
    }
}

struct Out(Vec<String>);

impl Collector<String, String> for Out {
    fn collect(&mut self, r: Record<String, String>) -> Result<()> {
        self.0.push(r.value);
        Ok(())
    }
}

fn context() -> Context {
    let mut ctx = Context::new(
        TaskId {
            topic: Arc::from("t"),
            partition: 0,
        },
        "remind",
    );
    ctx.enable_timers().unwrap();
    ctx
}

/// As the operator node pushes a record.
fn push(ctx: &mut Context, out: &mut Out, key: &str, value: &str, t: i64) {
    let r = Record {
        key: Some(key.to_string()),
        value: value.to_string(),
        timestamp: Some(t),
        headers: Vec::new(),
        origin: Origin {
            topic: Arc::from("t"),
            partition: 0,
            offset: 0,
        },
    };
    ctx.advance_stream_time(r.timestamp).unwrap();
    fire_event_time(&mut Remind, ctx, out).unwrap();
    Remind.process(r, ctx, out).unwrap();
    fire_event_time(&mut Remind, ctx, out).unwrap();
}

#[test]
fn event_timers_fire_in_time_order_once_stream_time_reaches_them() {
    let (mut ctx, mut out) = (context(), Out(Vec::new()));
    push(&mut ctx, &mut out, "b", "x", 100);
    push(&mut ctx, &mut out, "a", "x", 95);
    assert!(out.0.is_empty(), "nothing is due before stream time 105");
    push(&mut ctx, &mut out, "c", "x", 108);
    assert_eq!(out.0, ["EventTime:a@105"]);
    push(&mut ctx, &mut out, "d", "x", 130);
    assert_eq!(
        out.0,
        ["EventTime:a@105", "EventTime:b@110", "EventTime:c@118"],
        "fired earliest first, before the record at 130"
    );
    assert_eq!(ctx.stream_time(), Some(130));
}

#[test]
fn a_cancelled_timer_does_not_fire_and_an_aborted_cycle_brings_timers_back() {
    let (mut ctx, mut out) = (context(), Out(Vec::new()));
    push(&mut ctx, &mut out, "a", "x", 100);
    push(&mut ctx, &mut out, "a", "cancel", 100);
    ctx.state_barrier().unwrap();
    ctx.state_commit(2).unwrap();
    push(&mut ctx, &mut out, "b", "x", 100);
    push(&mut ctx, &mut out, "z", "x", 200);
    assert_eq!(out.0, ["EventTime:b@110"]);
    // The cycle that fired b's timer aborts: the timer and stream time come back.
    ctx.state_abort();
    out.0.clear();
    assert_eq!(ctx.stream_time(), Some(100));
    push(&mut ctx, &mut out, "z", "x", 200);
    assert!(
        out.0.is_empty(),
        "b's timer was scheduled in the aborted cycle too"
    );
    push(&mut ctx, &mut out, "b", "x", 100);
    assert_eq!(
        out.0,
        ["EventTime:b@110"],
        "scheduled at 110 <= stream time: fires at once"
    );
}

#[test]
fn scheduling_without_enable_timers_is_a_clear_error() {
    let mut ctx = Context::new(
        TaskId {
            topic: Arc::from("t"),
            partition: 0,
        },
        "remind",
    );
    let err = ctx.schedule_event_time(&"k", 1).unwrap_err().to_string();
    assert!(err.contains("enable_timers"), "{err}");
}

#[test]
fn the_wall_clock_timer_fires_when_due_and_every_interval_after() {
    let (mut ctx, mut out) = (context(), Out(Vec::new()));
    let start = Instant::now();
    ctx.schedule_wall_clock(Duration::from_secs(5));
    assert!(!ctx.wall_clock_due(start));
    fire_wall_clock(&mut Remind, &mut ctx, &mut out, Some(start)).unwrap();
    assert!(out.0.is_empty());
    let later = start + Duration::from_secs(6);
    assert!(ctx.wall_clock_due(later));
    fire_wall_clock(&mut Remind, &mut ctx, &mut out, Some(later)).unwrap();
    assert_eq!(out.0.len(), 1);
    assert!(out.0[0].starts_with("WallClock:@"), "{:?}", out.0);
    assert!(!ctx.wall_clock_due(later + Duration::from_secs(4)));
    assert!(ctx.wall_clock_due(later + Duration::from_secs(5)));
}
