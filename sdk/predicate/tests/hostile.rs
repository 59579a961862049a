//! Hostile filters and analytic files, generated here: nesting past the limit in every
//! recursive production, deep or aliased YAML, long flat chains, and regular expressions
//! that backtrack catastrophically.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::json;
use ward_predicate::analytic::{MAX_ANALYTIC_BYTES, MAX_YAML_DEPTH};
use ward_predicate::{
    BACKTRACK_LIMITS, EVENT_BACKTRACK_BUDGET, FORWARD_STEPS, MAX_NESTING, Predicate, RegexBudget,
    RegexStats, Vars, parse_analytic,
};

/// Runs `f` on a thread with a 256 KiB stack: a parser that recursed once per level of a
/// 5,000-level input would overflow it (and abort the test binary).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Every recursive production at `n` levels: (name, filter, byte offset of the token that
/// opens the level past [`MAX_NESTING`], where a deeper filter is refused).
fn nested(n: usize) -> Vec<(&'static str, String, usize)> {
    let parens = format!("{}$event.a == 1{}", "(".repeat(n), ")".repeat(n));
    let nots = format!("{}$event.a == 1", "NOT ".repeat(n));
    let bangs = format!("{}$event.a == 1", "!".repeat(n));
    // Two levels per `NOT (`.
    let pairs = n.div_ceil(2);
    let not_groups = format!(
        "{}$event.a == 1{}",
        "NOT (".repeat(pairs),
        ")".repeat(pairs)
    );
    let braces = format!("$event.a IN {}1{}", "{".repeat(n), "}".repeat(n));
    let operand = format!("$event.a == {}$event.b{}", "(".repeat(n), ")".repeat(n));
    let mut chains = String::new();
    for i in 0..n {
        chains.push_str(if i % 2 == 0 {
            "($event.a == 1 AND "
        } else {
            "($event.b == 2 OR  "
        });
    }
    chains.push_str("ANY $event.c MATCHES \"x(?=y).*\"");
    chains.push_str(&")".repeat(n));
    // The opener of level MAX_NESTING + 1 is the one at index MAX_NESTING (even).
    let k = MAX_NESTING;
    vec![
        ("parentheses", parens, k),
        ("NOT", nots, 4 * k),
        ("!", bangs, k),
        ("NOT (", not_groups, 5 * (k / 2)),
        ("{…} lists", braces, "$event.a IN ".len() + k),
        ("parenthesised operands", operand, "$event.a == ".len() + k),
        ("AND/OR groups", chains, 19 * k),
    ]
}

#[test]
fn nesting_is_bounded_in_every_recursive_production() {
    // The deepest filters allowed parse, evaluate, clone, print and drop within half of a
    // plugin's 512 KiB wasm stack, here natively (measured: at most 128 KiB in a debug
    // build, 48 KiB in release, the most for AND/OR groups with a look-around to compile).
    on_small_stack(|| {
        let event = json!({"a": 1, "b": 2, "c": ["xy"]});
        for (what, filter, _) in nested(MAX_NESTING) {
            let p = Predicate::parse(&filter).unwrap_or_else(|e| panic!("{what}: {e}"));
            let vars = Vars::new(&event);
            let _ = p.eval(&vars);
            assert!(!format!("{:?}", p.clone().expr).is_empty());
        }
    });
    for (what, filter, at) in nested(MAX_NESTING + 1) {
        let e = Predicate::parse(&filter).unwrap_err();
        assert_eq!(e.offset, at, "{what}: {e}");
        assert_eq!((e.line, e.column), (1, at + 1), "{what}: {e}");
        assert!(
            e.found
                .contains(&format!("nested deeper than {MAX_NESTING} levels")),
            "{what}: {e}"
        );
    }
    // Context expressions nest the same way.
    let deep = format!("{}event.a{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Predicate::parse_operand(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested deeper than")
    );
}

#[test]
fn five_thousand_levels_are_refused_without_deep_recursion() {
    on_small_stack(|| {
        let mut analytics = 0;
        for (what, filter, at) in nested(5000) {
            let e = Predicate::parse(&filter).unwrap_err();
            assert_eq!(e.offset, at, "{what}: {e}");
            let yaml =
                format!("name: Deep\ninputType: GPProcessEvent\nfilter: {filter}\nseverity: Low\n");
            // (A plain YAML scalar cannot start with `!`: that is a tag.)
            if yaml.len() > MAX_ANALYTIC_BYTES || filter.starts_with('!') {
                continue;
            }
            analytics += 1;
            let e = parse_analytic(&yaml).unwrap_err();
            assert_eq!((e.line, e.column), (3, "filter: ".len() + 1 + at), "{what}");
            assert!(
                e.message
                    .contains(&format!("nested deeper than {MAX_NESTING} levels")),
                "{what}: {e}"
            );
        }
        assert!(analytics >= 5);
    });
}

#[test]
fn flat_chains_of_any_length_stay_flat() {
    let chain = vec!["$event.a == 1"; 20_000].join(" AND ");
    let either = vec!["$event.a == 2"; 20_000].join(" OR ");
    let filter = format!("{chain} AND NOT ({either})");
    let p = Predicate::parse(&filter).unwrap();
    on_small_stack(move || {
        let event = json!({"a": 1});
        let held = p.eval(&Vars::new(&event));
        drop(p.clone());
        held
    });
}

#[test]
fn deep_and_aliased_yaml_is_refused_with_its_position() {
    let head = "name: Deep\ninputType: GPProcessEvent\nfilter: $event.type == 1\n";
    on_small_stack(move || {
        // Flow nesting: [[[[… (yaml-rust2's scanner reads ahead and stops at 255 itself).
        let flow = |n: usize| format!("{head}tags: {}x{}\n", "[".repeat(n), "]".repeat(n));
        let e = parse_analytic(&flow(5000)).unwrap_err();
        assert_eq!((e.line, e.column), (4, 7 + 255), "{e}");
        assert!(e.message.contains("recursion limit exceeded"), "{e}");
        let e = parse_analytic(&flow(100)).unwrap_err();
        assert_eq!((e.line, e.column), (4, 7 + MAX_YAML_DEPTH - 1), "{e}");
        assert!(
            e.message
                .contains(&format!("nested deeper than {MAX_YAML_DEPTH}")),
            "{e}"
        );
        // Block nesting: one more indented mapping per line (200 levels in 20 KB).
        let mut block = format!("{head}context:\n");
        for i in 0..200 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i + 1)));
        }
        let e = parse_analytic(&block).unwrap_err();
        assert!(e.message.contains("nested deeper than"), "{e}");
        assert_eq!(e.line, 4 + MAX_YAML_DEPTH, "{e}");
        // Block sequences on one line: - - - - …
        let dashes = format!("{head}tags: \n  {}x\n", "- ".repeat(5000));
        assert!(
            parse_analytic(&dashes)
                .unwrap_err()
                .message
                .contains("nested deeper than")
        );
    });
    // Aliases copy their anchor's value: ten levels of ten would be 10^10 values.
    let mut laughs = format!("{head}a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let e = parse_analytic(&laughs).unwrap_err();
    assert_eq!((e.line, e.column), (5, 10), "{e}");
    assert!(e.message.contains("aliases"), "{e}");
    // Too big.
    let big = format!("{head}description: {}\n", "x".repeat(MAX_ANALYTIC_BYTES));
    let e = parse_analytic(&big).unwrap_err();
    assert!(e.message.contains("over the"), "{e}");
}

#[test]
fn back_references_and_patterns_from_the_event_are_refused() {
    let yaml =
        "name: DoubledName\ninputType: GPFSEvent\nfilter: $event.path MATCHES \"(.+)\\\\1\"\n";
    let e = parse_analytic(yaml).unwrap_err();
    assert_eq!((e.line, e.column), (3, 29), "{e}");
    assert!(e.message.contains("uses a back-reference"), "{e}");
    let e = Predicate::parse("$event.a MATCHES $event.b").unwrap_err();
    assert!(e.expected.contains("quoted regular expression"), "{e}");
    let e = Predicate::parse(r#"$event.a MATCHES {"x"}"#).unwrap_err();
    assert!(e.expected.contains("quoted regular expression"), "{e}");
}

#[test]
fn a_catastrophic_look_around_is_cut_short_by_the_event_budget() {
    // Allowed (look-ahead), but exponential on a run of `a`s with no `c`.
    let p = Predicate::parse(r#"ANY $event.names MATCHES "(a|aa)+(?=b)c""#).unwrap();
    // A batch of 128 events, each naming 300 crafted files (each event costs what the
    // default budget allows, however many names it carries).
    let crafted: Vec<String> = (0..300).map(|i| "a".repeat(30 + i % 7)).collect();
    let events = 128;
    let mut total = RegexStats::default();
    let mut cut = 0;
    for _ in 0..events {
        let event = json!({"names": crafted});
        let budget = RegexBudget::default();
        assert!(!p.eval(&Vars::with_budget(&event, &budget)));
        let stats = budget.stats();
        if stats.cut_short() {
            cut += 1;
        }
        total.add(stats);
    }
    // Every event ran out: a few names tried at every limit (false), the rest not run
    // (false, counted).
    assert_eq!(cut, events);
    assert!(total.over_limit >= events, "{total:?}");
    assert_eq!(total.over_limit + total.skipped, events * 300, "{total:?}");
    // The budget pays for at most this many of the cheapest attempts per event.
    let cheapest = (30 + 1) * (BACKTRACK_LIMITS[0] as u64 + FORWARD_STEPS);
    assert!(
        total.attempts <= events * (EVENT_BACKTRACK_BUDGET / cheapest),
        "{total:?}"
    );

    // The same pattern on an ordinary name matches, cheaply.
    let event = json!({"names": ["aab"]});
    let budget = RegexBudget::default();
    let p = Predicate::parse(r#"ANY $event.names MATCHES "(a|aa)+(?=b)b""#).unwrap();
    assert!(p.eval(&Vars::with_budget(&event, &budget)));
    assert_eq!(
        budget.stats(),
        RegexStats {
            attempts: 1,
            over_limit: 0,
            skipped: 0,
            uncompiled: 0
        }
    );
    // Predicates evaluated with the same budget share it: the first takes all three limits
    // (300 backtracks), which leaves too little for the second, true on its own.
    let event = json!({"names": ["a".repeat(300)]});
    let first = Predicate::parse(r#"ANY $event.names MATCHES "a*(?=b)""#).unwrap();
    let second = Predicate::parse(r#"ANY $event.names MATCHES "a+(?!b)""#).unwrap();
    assert!(second.eval(&Vars::new(&event)));
    let budget = RegexBudget::new(1_000_000);
    let vars = Vars::with_budget(&event, &budget);
    assert!(!first.eval(&vars));
    assert!(!second.eval(&vars));
    assert_eq!(
        budget.stats(),
        RegexStats {
            attempts: 3,
            over_limit: 0,
            skipped: 1,
            uncompiled: 0
        }
    );
}
