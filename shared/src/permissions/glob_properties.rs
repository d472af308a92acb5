//! Property tests of the permission glob and of [`covers`], against references that follow the
//! definitions rather than the automata: a backtracking matcher, and inclusion searched by
//! enumerating short names. The enumeration tests beside them (`tests::…_brute_force_…`) cover
//! every pattern of up to three segments exactly; these reach four segments and unions of three.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;

/// A literal that no generated pattern mentions: it stands for every segment the patterns do
/// not name.
const FRESH: &str = "z";

/// A pattern split into segments, read by the definition.
struct Glob<'a> {
    /// `*` alone matches everything, like `**` (the seed's table says so).
    everything: bool,
    segments: Vec<&'a str>,
}

impl<'a> Glob<'a> {
    fn new(pattern: &'a str) -> Self {
        Self { everything: pattern == "*", segments: pattern.split('.').collect() }
    }

    fn matches(&self, name: &[&str]) -> bool {
        self.everything || glob(&self.segments, name)
    }
}

/// The glob by its definition, backtracking over what `**` swallows: slow, plainly right.
fn glob(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((&segment, rest)) => name
            .split_first()
            .is_some_and(|(&first, tail)| (segment == "*" || segment == first) && glob(rest, tail)),
    }
}

/// Whether `pattern` matches the name with segments `name`, by the definition.
pub(super) fn reference_matches(pattern: &str, name: &[&str]) -> bool {
    Glob::new(pattern).matches(name)
}

fn p(text: &str) -> Permission {
    Permission::parse(text).unwrap()
}

fn parse_all(patterns: &[String]) -> Vec<Permission> {
    patterns.iter().map(|q| p(q)).collect()
}

/// A pattern of 1..=`max` segments over the literals `a`, `b`, `c` and the wildcards.
fn pattern(max: usize) -> impl Strategy<Value = String> {
    vec(select(vec!["a", "b", "c", "*", "**"]), 1..=max).prop_map(|segments| segments.join("."))
}

/// A name of 1-7 segments: the patterns' literals, a fresh one, `*` and `**` as plain text (the
/// api checks `api.*.create_api`), and now and then an empty segment.
fn name() -> impl Strategy<Value = Vec<&'static str>> {
    let segment = prop_oneof![
        12 => select(vec!["a", "b", "c", FRESH, "*", "**"]),
        1 => Just(""),
    ];
    vec(segment, 1..=7)
}

/// A name that `wanted` matches and no pattern of `held` does, among all names of one segment
/// up to one more than the longest pattern, over the patterns' literals and [`FRESH`].
///
/// Finding one proves `held` does not cover `wanted`; finding none proves nothing, see
/// [`a_shortest_counterexample_can_be_longer_than_the_enumeration`].
fn short_counterexample(held: &[String], wanted: &str) -> Option<String> {
    let all = || held.iter().map(String::as_str).chain([wanted]);
    let longest = all().map(|q| q.split('.').count()).max().unwrap_or(1);
    let mut alphabet: Vec<&str> = all()
        .flat_map(|q| q.split('.'))
        .filter(|s| !matches!(*s, "*" | "**"))
        .chain([FRESH])
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    let wanted = Glob::new(wanted);
    let held: Vec<Glob<'_>> = held.iter().map(|h| Glob::new(h)).collect();
    let mut layer: Vec<Vec<&str>> = vec![Vec::new()];
    for _ in 0..=longest {
        layer = layer
            .iter()
            .flat_map(|name| {
                alphabet.iter().map(move |&segment| {
                    let mut longer = name.clone();
                    longer.push(segment);
                    longer
                })
            })
            .collect();
        let refuting =
            layer.iter().find(|name| wanted.matches(name) && !held.iter().any(|h| h.matches(name)));
        if let Some(name) = refuting {
            return Some(name.join("."));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `matches` is the glob's definition, on patterns of up to five segments and names of up
    /// to seven.
    #[test]
    fn matches_agrees_with_the_definition(pattern in pattern(5), name in name()) {
        let text = name.join(".");
        let matched = p(&pattern).matches(&text);
        prop_assert_eq!(matched, reference_matches(&pattern, &name), "{} on {:?}", pattern, text);
    }

    /// Whenever a short name shows that `held` misses part of `wanted`, `covers` refuses.
    ///
    /// Only this direction is asserted: see
    /// [`a_shortest_counterexample_can_be_longer_than_the_enumeration`].
    #[test]
    fn covers_never_grants_what_a_short_name_refutes(
        held in vec(pattern(4), 0..=3),
        wanted in pattern(4),
    ) {
        let verdict = covers(&parse_all(&held), &p(&wanted));
        if let Some(name) = short_counterexample(&held, &wanted) {
            prop_assert!(
                matches!(verdict, Ok(false) | Err(TooComplex)),
                "{:?} covering {} gave {:?}, but {} is wanted and not held",
                held, wanted, verdict, name
            );
        }
    }

    /// Holding the wanted pattern itself, or one that matches everything, covers it, wherever
    /// it sits among the others.
    #[test]
    fn what_is_held_or_everything_is_covered(
        mut held in vec(pattern(4), 0..=3),
        wanted in pattern(4),
        extra in select(vec![None, Some("**"), Some("*"), Some("**.**")]),
        at in any::<Index>(),
    ) {
        let extra = extra.map_or_else(|| wanted.clone(), str::to_owned);
        held.insert(at.index(held.len() + 1), extra);
        prop_assert_eq!(covers(&parse_all(&held), &p(&wanted)), Ok(true), "{:?} {}", held, wanted);
    }

    /// A name without wildcards is covered exactly when a held pattern matches it.
    #[test]
    fn a_plain_name_is_covered_exactly_when_matched(
        held in vec(pattern(4), 0..=3),
        name in vec(select(vec!["a", "b", "c", FRESH]), 1..=5),
    ) {
        let expected = held.iter().any(|h| reference_matches(h, &name));
        let verdict = covers(&parse_all(&held), &p(&name.join(".")));
        prop_assert_eq!(verdict, Ok(expected), "{:?} covering {:?}", held, name);
    }

    /// Holding more never covers less.
    #[test]
    fn holding_more_never_covers_less(
        held in vec(pattern(4), 0..=3),
        more in pattern(4),
        wanted in pattern(4),
    ) {
        let mut bigger = parse_all(&held);
        let wanted = p(&wanted);
        if covers(&bigger, &wanted) == Ok(true) {
            bigger.push(p(&more));
            let verdict = covers(&bigger, &wanted);
            prop_assert!(matches!(verdict, Ok(true) | Err(TooComplex)), "{:?}", verdict);
        }
    }
}

/// Why `covers_never_grants_what_a_short_name_refutes` asserts one direction only.
///
/// The enumeration stops at one segment more than the longest pattern, and that does not decide
/// inclusion: the shortest name that `wanted` matches and no held pattern does can be longer.
/// `*.*.a.**` holds every name whose third segment is `a`; `**.a.a.a` wants every name ending
/// `a.a.a`. In a name of three, four or five segments that tail covers the third segment, so the
/// enumeration (up to five) finds nothing, yet `a.a.z.a.a.a` is wanted and not held. Patterns of
/// at most three segments do the same at five: `a.**`, `*.a.**`, `**.a.*` and `**.a` see only
/// the first two and last two segments, so against `**.a.**` they miss `z.z.a.z.z` and nothing
/// shorter. A search that finds nothing therefore proves nothing, and `covers` answering
/// `Ok(false)` then is not a failure; `tests::covers_agrees_with_brute_force_inclusion` checks
/// both directions, with a bound proved sufficient for patterns of up to three segments.
#[test]
fn a_shortest_counterexample_can_be_longer_than_the_enumeration() {
    let held = ["*.*.a.**".to_owned()];
    assert_eq!(short_counterexample(&held, "**.a.a.a"), None);
    assert_eq!(covers(&parse_all(&held), &p("**.a.a.a")), Ok(false));
    assert!(p("**.a.a.a").matches("a.a.z.a.a.a"));
    assert!(!p("*.*.a.**").matches("a.a.z.a.a.a"));

    let held = ["a.**", "*.a.**", "**.a.*", "**.a"].map(str::to_owned);
    assert_eq!(short_counterexample(&held, "**.a.**"), None);
    assert_eq!(covers(&parse_all(&held), &p("**.a.**")), Ok(false));
    assert!(p("**.a.**").matches("z.z.a.z.z"));
    assert!(parse_all(&held).iter().all(|h| !h.matches("z.z.a.z.z")));
}
