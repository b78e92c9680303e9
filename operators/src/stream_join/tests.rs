use super::*;
use exactly_framework::testing::Harness;

type J = StreamJoin<String, String, String, String>;

fn join(kind: JoinKind) -> Harness<String, Side<String, String>, J> {
    let joiner: Arc<Joiner<String, String, String>> =
        Arc::new(|l: Option<&String>, r: Option<&String>| {
            format!(
                "{}+{}",
                l.map_or("-", String::as_str),
                r.map_or("-", String::as_str)
            )
        });
    Harness::build(|ctx| {
        StreamJoin::open(
            ctx,
            JoinWindows::of(Duration::from_millis(10)).grace(Duration::from_millis(5)),
            kind,
            joiner,
        )
    })
    .unwrap()
}

fn k(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn push(
    h: &mut Harness<String, Side<String, String>, J>,
    key: &str,
    side: Side<String, String>,
    t: i64,
) {
    h.push_at(k(key), side, t).unwrap();
}

fn values(h: &Harness<String, Side<String, String>, J>) -> Vec<(String, i64)> {
    h.output()
        .iter()
        .map(|r| (r.value.clone(), r.timestamp.unwrap()))
        .collect()
}

#[test]
fn inner_join_matches_within_the_window_either_way_and_per_key() {
    let mut h = join(JoinKind::Inner);
    push(&mut h, "a", Side::Left("l1".into()), 100);
    push(&mut h, "b", Side::Right("rb".into()), 101); // other key: no match
    push(&mut h, "a", Side::Right("r1".into()), 110); // 10 after l1: joins
    push(&mut h, "a", Side::Right("r2".into()), 111); // 11 after: does not
    push(&mut h, "a", Side::Left("l2".into()), 105); // joins r1 and r2 (out of order)
    assert_eq!(
        values(&h),
        vec![
            ("l1+r1".into(), 110),
            ("l2+r1".into(), 110),
            ("l2+r2".into(), 111)
        ]
    );
}

#[test]
fn left_and_outer_joins_emit_the_unmatched_once_window_and_grace_have_passed() {
    for kind in [JoinKind::Left, JoinKind::Outer] {
        let mut h = join(kind);
        push(&mut h, "a", Side::Left("l1".into()), 100);
        push(&mut h, "z", Side::Left("tick".into()), 115); // l1 expires once past 115
        assert!(values(&h).is_empty(), "{kind:?}: {:?}", values(&h));
        push(&mut h, "a", Side::Right("r1".into()), 130); // past it: l1 goes, unmatched
        assert_eq!(values(&h), vec![("l1+-".into(), 100)], "{kind:?}");
        push(&mut h, "z", Side::Left("tick".into()), 146); // past 130 + 15: r1 goes too
        let got = values(&h);
        assert!(got.contains(&("l1+-".into(), 100)), "{kind:?}: {got:?}");
        assert_eq!(
            got.contains(&("-+r1".into(), 130)),
            kind == JoinKind::Outer,
            "{kind:?}: {got:?}"
        );
    }
}

#[test]
fn a_record_already_expired_is_dropped_and_an_aborted_cycle_replays_alike() {
    let mut h = join(JoinKind::Left);
    push(&mut h, "a", Side::Left("l1".into()), 100);
    h.barrier().unwrap();
    push(&mut h, "a", Side::Right("r1".into()), 105);
    assert_eq!(values(&h), vec![("l1+r1".into(), 105)]);
    h.abort();
    h.take_output();
    push(&mut h, "a", Side::Right("r1".into()), 105);
    push(&mut h, "a", Side::Left("late".into()), 50); // 50 + 15 < 105: dropped
    push(&mut h, "z", Side::Left("tick".into()), 200);
    let got = values(&h);
    assert_eq!(
        got.iter().filter(|(v, _)| v == "l1+r1").count(),
        1,
        "{got:?}"
    );
    assert!(!got.iter().any(|(v, _)| v.starts_with("late")), "{got:?}");
    assert!(!got.iter().any(|(v, _)| v == "l1+-"), "l1 matched: {got:?}");
}
