//! Evaluating a predicate over JSON values, or over a [`Model`] that answers key paths of
//! `$event` itself. Evaluation never fails: a missing key is `nil`, a comparison between
//! mismatched types is false, and a `MATCHES` the evaluation's [`RegexBudget`] cannot pay
//! for is false (and counted).
//!
//! Evaluation recurses once per level of nesting, which the parser bounds
//! ([`crate::MAX_NESTING`]); `AND`/`OR` chains are flat.

use std::borrow::Cow;
use std::fmt::Debug;

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::parser::{Aggregate, Expr, Key, Op, Operand, Options, Predicate};
use crate::pattern::RegexBudget;

/// What `$event` is to a predicate. A JSON value is one; a detector may answer key paths
/// from its own typed event instead, so that no JSON object is built per event and no
/// string-keyed map is searched per key.
///
/// A model must answer every key path as its JSON form ([`Model::whole`]) would: the
/// evaluator cannot tell them apart, and neither may an analytic.
pub trait Model: Debug {
    /// `$event.first.rest…` as far as the model answers it itself: the value at `first`
    /// and the first `n` keys of `rest`, with `n`. The evaluator walks the remaining keys
    /// over that value as over JSON (so `n = 0` with the value at `first` is always
    /// right); a key the model does not hold is `nil`, as in JSON.
    fn walk(&self, first: &str, rest: &[Key]) -> (Cow<'_, Value>, usize);

    /// `$event` as a whole, as JSON.
    fn whole(&self) -> Cow<'_, Value>;
}

impl Model for Value {
    fn walk(&self, first: &str, _rest: &[Key]) -> (Cow<'_, Value>, usize) {
        (step(Cow::Borrowed(self), first), 0)
    }

    fn whole(&self) -> Cow<'_, Value> {
        Cow::Borrowed(self)
    }
}

/// The variables a predicate sees: `$event`, `$tags`, `$context`, `$file`; and the budget
/// of backtracking regular-expression work every predicate evaluated with them shares.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    /// `$event`.
    pub event: &'a dyn Model,
    /// `$tags` (an array of strings).
    pub tags: Cow<'a, Value>,
    /// `$context` (an object).
    pub context: Cow<'a, Value>,
    /// What `MATCHES` on the backtracking engine may still spend (see [`RegexBudget`]).
    pub regex_budget: Cow<'a, RegexBudget>,
}

impl<'a> Vars<'a> {
    /// Variables for `event`, with no tags and no context yet, and a fresh default budget.
    pub fn new(event: &'a dyn Model) -> Self {
        Self {
            event,
            tags: Cow::Owned(Value::Array(Vec::new())),
            context: Cow::Owned(Value::Object(Map::new())),
            regex_budget: Cow::Owned(RegexBudget::default()),
        }
    }

    /// Variables for `event` spending from `budget` (shared with other evaluations).
    pub fn with_budget(event: &'a dyn Model, budget: &'a RegexBudget) -> Self {
        Self {
            regex_budget: Cow::Borrowed(budget),
            ..Self::new(event)
        }
    }

    /// `$name.keys…` for a variable other than `$event`, before its keys.
    fn var(&self, name: &str) -> Cow<'_, Value> {
        match name {
            "tags" => Cow::Borrowed(self.tags.as_ref()),
            "context" => Cow::Borrowed(self.context.as_ref()),
            _ => Cow::Owned(Value::Null),
        }
    }
}

/// `$event.keys…`.
fn event_path<'v>(model: &'v dyn Model, keys: &[Key]) -> Cow<'v, Value> {
    match keys.split_first() {
        Some((Key::Name(first), rest)) => from(model.walk(first, rest), rest),
        _ => walk_keys(model.whole(), keys),
    }
}

/// What [`Model::walk`] answered, walked on along the `rest` it did not take.
fn from<'v>((value, taken): (Cow<'v, Value>, usize), rest: &[Key]) -> Cow<'v, Value> {
    walk_keys(value, rest.get(taken..).unwrap_or_default())
}

fn walk_keys<'v>(mut current: Cow<'v, Value>, keys: &[Key]) -> Cow<'v, Value> {
    for key in keys {
        current = step_key(current, key);
    }
    current
}

/// The value of key `name` of `value`, as a key path step: the object's member, an
/// NSString key path (`lastPathComponent`, `length`, …) or `valueForKey:` over an array;
/// `nil` otherwise. For models answering such keys themselves.
pub fn key_of(value: &Value, name: &str) -> Value {
    named(value, name)
        .cloned()
        .unwrap_or_else(|| derived(value, name))
}

impl Predicate {
    /// True if the predicate holds for `vars`.
    pub fn eval(&self, vars: &Vars<'_>) -> bool {
        eval(&self.expr, vars)
    }

    /// Resolves a context expression.
    pub fn resolve(operand: &Operand, vars: &Vars<'_>) -> Value {
        value(operand, vars).into_owned()
    }

    /// Resolves `operand`, borrowing from `vars` where it can.
    pub fn resolve_ref<'v>(operand: &'v Operand, vars: &'v Vars<'_>) -> Cow<'v, Value> {
        value(operand, vars)
    }

    /// The key an [`IndexKey`](crate::IndexKey) constant is filed under: `[c]` folds as
    /// `==` does.
    pub fn index_fold(value: &str, case_insensitive: bool) -> Cow<'_, str> {
        fold(
            value,
            Options {
                case_insensitive,
                diacritic_insensitive: false,
            },
        )
    }
}

fn eval(expr: &Expr, vars: &Vars<'_>) -> bool {
    match expr {
        Expr::And(all) => all.iter().all(|e| eval(e, vars)),
        Expr::Or(any) => any.iter().any(|e| eval(e, vars)),
        Expr::Not(e) => !eval(e, vars),
        Expr::Const(b) => *b,
        Expr::Compare {
            aggregate,
            lhs,
            op,
            options,
            rhs,
        } => {
            let left = value(lhs, vars);
            let right = value(rhs, vars);
            let budget = vars.regex_budget.as_ref();
            match aggregate {
                None => compare(&left, op, *options, &right, budget),
                Some(agg) => {
                    let items: Vec<&Value> = match left.as_ref() {
                        Value::Array(a) => a.iter().collect(),
                        Value::Null => Vec::new(),
                        other => vec![other],
                    };
                    let mut hits = items
                        .iter()
                        .map(|item| compare(item, op, *options, &right, budget));
                    match agg {
                        Aggregate::Any => hits.any(|h| h),
                        Aggregate::All => hits.all(|h| h),
                        Aggregate::None => !hits.any(|h| h),
                    }
                }
            }
        }
    }
}

fn value<'v>(operand: &'v Operand, vars: &'v Vars<'_>) -> Cow<'v, Value> {
    match operand {
        Operand::Literal(v) => Cow::Borrowed(v),
        Operand::List(items) => Cow::Owned(Value::Array(
            items.iter().map(|i| value(i, vars).into_owned()).collect(),
        )),
        Operand::Path { var, keys } => match var.as_deref() {
            Some("event") => event_path(vars.event, keys),
            // `$file` is the event's file in the one analytic that uses it.
            Some("file") => from(vars.event.walk("file", keys), keys),
            Some(name) => walk_keys(vars.var(name), keys),
            None => bare_root(keys, vars),
        },
    }
}

/// A bare key path is looked up in the evaluated object `{event, tags, context}`: its first
/// key is resolved without building that object (a copy of the event per comparison).
fn bare_root<'v>(keys: &[Key], vars: &'v Vars<'_>) -> Cow<'v, Value> {
    let Some((first, rest)) = keys.split_first() else {
        let mut root = Map::new();
        root.insert("event".into(), vars.event.whole().into_owned());
        root.insert("tags".into(), vars.tags.as_ref().clone());
        root.insert("context".into(), vars.context.as_ref().clone());
        return Cow::Owned(Value::Object(root));
    };
    match first {
        Key::Name(n) if n == "event" => event_path(vars.event, rest),
        Key::Name(n) if n == "tags" || n == "context" => walk_keys(vars.var(n), rest),
        // What `@count` and `[SIZE]` say of a three-key object; anything else is nil.
        Key::Count | Key::Size => walk_keys(Cow::Owned(Value::from(3)), rest),
        _ => walk_keys(Cow::Owned(Value::Null), rest),
    }
}

/// One step along a named key.
fn step<'v>(current: Cow<'v, Value>, name: &str) -> Cow<'v, Value> {
    match current {
        Cow::Borrowed(v) => {
            named(v, name).map_or_else(|| Cow::Owned(derived(v, name)), Cow::Borrowed)
        }
        Cow::Owned(v) => Cow::Owned(key_of(&v, name)),
    }
}

fn step_key<'v>(current: Cow<'v, Value>, key: &Key) -> Cow<'v, Value> {
    match key {
        Key::Name(name) => step(current, name),
        Key::Count | Key::Size => Cow::Owned(Value::from(match current.as_ref() {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.chars().count(),
            Value::Null => 0,
            _ => 1,
        })),
        Key::First | Key::Last | Key::Index(_) => {
            let pick = |a: &'v Vec<Value>| match key {
                Key::First => a.first(),
                Key::Last => a.last(),
                Key::Index(i) => a.get(*i),
                _ => None,
            };
            match current {
                Cow::Borrowed(Value::Array(a)) => {
                    pick(a).map_or(Cow::Owned(Value::Null), Cow::Borrowed)
                }
                Cow::Owned(Value::Array(a)) => Cow::Owned(
                    match key {
                        Key::First => a.first(),
                        Key::Last => a.last(),
                        Key::Index(i) => a.get(*i),
                        _ => None,
                    }
                    .cloned()
                    .unwrap_or(Value::Null),
                ),
                _ => Cow::Owned(Value::Null),
            }
        }
    }
}

/// The value of `name` in an object (or in each element of an array, as `valueForKey:`).
fn named<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => o.get(name),
        _ => None,
    }
}

/// NSString key paths and `valueForKey:` over arrays.
fn derived(v: &Value, name: &str) -> Value {
    match (v, name) {
        (Value::String(s), "lastPathComponent") => {
            let trimmed = s.trim_end_matches('/');
            Value::String(trimmed.rsplit('/').next().unwrap_or("").to_owned())
        }
        (Value::String(s), "pathExtension") => {
            let last = s.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            Value::String(
                last.rsplit_once('.')
                    .filter(|(stem, _)| !stem.is_empty())
                    .map_or("", |(_, ext)| ext)
                    .to_owned(),
            )
        }
        (Value::String(s), "stringByDeletingLastPathComponent") => {
            let trimmed = s.trim_end_matches('/');
            Value::String(match trimmed.rfind('/') {
                Some(0) => "/".to_owned(),
                Some(i) => trimmed.get(..i).unwrap_or("").to_owned(),
                None => String::new(),
            })
        }
        (Value::String(s), "lowercaseString") => Value::String(s.to_lowercase()),
        (Value::String(s), "uppercaseString") => Value::String(s.to_uppercase()),
        (Value::String(s), "length") => Value::from(s.chars().count()),
        (Value::Array(items), _) => Value::Array(
            items
                .iter()
                .map(|i| named(i, name).cloned().unwrap_or_else(|| derived(i, name)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn fold(s: &str, options: Options) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    if options.diacritic_insensitive && !s.is_ascii() {
        out = Cow::Owned(
            s.nfd()
                .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
                .collect(),
        );
    }
    if options.case_insensitive {
        out = Cow::Owned(out.to_lowercase());
    }
    out
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// `x == y` as the folded strings compare. When both are ASCII, folding changes case
/// only, so they are compared without building folded copies (an allocation per side on
/// every `[c]` comparison otherwise).
fn str_equal(x: &str, y: &str, options: Options) -> bool {
    if x.is_ascii() && y.is_ascii() {
        return if options.case_insensitive {
            x.eq_ignore_ascii_case(y)
        } else {
            x == y
        };
    }
    fold(x, options) == fold(y, options)
}

/// `l` begins (or, with `end`, ends) with `r` as the folded strings would, when both are
/// ASCII; `None` otherwise (fold them).
fn ascii_affix(l: &str, r: &str, options: Options, end: bool) -> Option<bool> {
    if !(l.is_ascii() && r.is_ascii()) {
        return None;
    }
    let (l, r) = (l.as_bytes(), r.as_bytes());
    let part = if end {
        l.len().checked_sub(r.len()).and_then(|at| l.get(at..))
    } else {
        l.get(..r.len())
    };
    Some(part.is_some_and(|p| {
        if options.case_insensitive {
            p.eq_ignore_ascii_case(r)
        } else {
            p == r
        }
    }))
}

fn equal(a: &Value, b: &Value, options: Options) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => str_equal(x, y, options),
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    let (mut ti, mut pi, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some(s) => {
                    pi = s + 1;
                    mark += 1;
                    ti = mark;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

fn compare(left: &Value, op: &Op, options: Options, right: &Value, budget: &RegexBudget) -> bool {
    let strings = || match (left, right) {
        (Value::String(l), Value::String(r)) => Some((fold(l, options), fold(r, options))),
        _ => None,
    };
    match op {
        Op::Eq => equal(left, right, options),
        Op::Ne => !equal(left, right, options),
        Op::Lt => order(left, right).is_some_and(|o| o.is_lt()),
        Op::Le => order(left, right).is_some_and(|o| o.is_le()),
        Op::Gt => order(left, right).is_some_and(|o| o.is_gt()),
        Op::Ge => order(left, right).is_some_and(|o| o.is_ge()),
        Op::In => match right {
            Value::Array(items) => items.iter().any(|i| equal(left, i, options)),
            Value::Object(o) => left.as_str().is_some_and(|k| o.contains_key(k)),
            Value::String(r) => left
                .as_str()
                .is_some_and(|l| fold(r, options).contains(fold(l, options).as_ref())),
            _ => false,
        },
        Op::BeginsWith => match (left, right) {
            (Value::String(l), Value::String(r)) => ascii_affix(l, r, options, false)
                .unwrap_or_else(|| fold(l, options).starts_with(fold(r, options).as_ref())),
            _ => false,
        },
        Op::EndsWith => match (left, right) {
            (Value::String(l), Value::String(r)) => ascii_affix(l, r, options, true)
                .unwrap_or_else(|| fold(l, options).ends_with(fold(r, options).as_ref())),
            _ => false,
        },
        Op::Contains => match left {
            Value::Array(items) => items.iter().any(|i| equal(i, right, options)),
            _ => strings().is_some_and(|(l, r)| l.contains(r.as_ref())),
        },
        Op::Like => strings().is_some_and(|(l, r)| like(&l, &r)),
        Op::Matches(pattern) => {
            let Value::String(text) = left else {
                return false;
            };
            let text = fold(
                text,
                Options {
                    case_insensitive: false,
                    ..options
                },
            );
            pattern.is_match(text.as_ref(), budget)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(filter: &str, event: &Value) -> bool {
        Predicate::parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .eval(&Vars::new(event))
    }

    #[test]
    fn required_values_come_from_top_level_conjuncts_only() {
        let type_of = |f: &str| {
            Predicate::parse(f)
                .unwrap()
                .required_value("event", &["type"])
                .and_then(Value::as_f64)
        };
        assert_eq!(
            type_of("$event.type == 1 AND $event.process.name == \"curl\""),
            Some(1.0)
        );
        assert_eq!(
            type_of("$event.path CONTAINS \"x\" && 4 == $event.type"),
            Some(4.0)
        );
        assert_eq!(
            type_of("($event.type == 1 AND $event.a == 2) AND $event.b == 3"),
            Some(1.0)
        );
        // Not pinned: under OR or NOT, another operator, a modifier, another path.
        assert_eq!(type_of("$event.type == 1 OR $event.type == 2"), None);
        assert_eq!(type_of("NOT $event.type == 1"), None);
        assert_eq!(type_of("$event.type != 1"), None);
        assert_eq!(type_of("$event.type ==[c] 1"), None);
        assert_eq!(type_of("$event.process.type == 1"), None);
        assert_eq!(type_of("$tags.type == 1"), None);
    }

    /// The comparisons that skip folding for ASCII strings answer as folding both sides
    /// does, for every option, ASCII or not.
    #[test]
    fn ascii_comparisons_answer_as_folded_ones() {
        let texts = [
            "",
            "a",
            "A",
            "/Private/etc/hosts",
            "/private/ETC/hosts",
            "/private/etc",
            "hosts",
            "ETC/HOSTS",
            "café",
            "CAFÉ",
            "cafe",
            "Kelvin",
            "\u{212a}elvin",
            "ſ",
            "s",
        ];
        for case_insensitive in [false, true] {
            for diacritic_insensitive in [false, true] {
                let options = Options {
                    case_insensitive,
                    diacritic_insensitive,
                };
                for x in texts {
                    for y in texts {
                        let (fx, fy) = (fold(x, options), fold(y, options));
                        let case = format!("{x:?} {y:?} {options:?}");
                        assert_eq!(str_equal(x, y, options), fx == fy, "{case}");
                        let begins = ascii_affix(x, y, options, false);
                        let ends = ascii_affix(x, y, options, true);
                        assert_eq!(
                            begins.unwrap_or(fx.starts_with(fy.as_ref())),
                            fx.starts_with(fy.as_ref()),
                            "{case}"
                        );
                        assert_eq!(
                            ends.unwrap_or(fx.ends_with(fy.as_ref())),
                            fx.ends_with(fy.as_ref()),
                            "{case}"
                        );
                        assert_eq!(begins.is_some(), x.is_ascii() && y.is_ascii());
                    }
                }
            }
        }
    }

    #[test]
    fn index_keys_come_from_string_constants_of_top_level_conjuncts() {
        let key = |f: &str| {
            let p = Predicate::parse(f).unwrap();
            p.index_key("event").map(|k| {
                let values: Vec<String> = k.values.iter().map(|v| (*v).to_owned()).collect();
                (values, k.case_insensitive)
            })
        };
        let one = |v: &str, c: bool| Some((vec![v.to_owned()], c));
        assert_eq!(
            key("$event.type == 1 AND $event.process.name == \"curl\""),
            one("curl", false)
        );
        assert_eq!(
            key("$event.type == 1 AND \"curl\" ==[c] $event.process.name"),
            one("curl", true)
        );
        assert_eq!(
            key("$event.process.signingInfo.appid IN {'a', \"b\"} AND $event.x != nil"),
            Some((vec!["a".to_owned(), "b".to_owned()], false))
        );
        // Not an index: under OR or NOT, other operators, [d], non-strings, other
        // variables, aggregates, an IN of a string.
        for f in [
            "$event.a == \"x\" OR $event.b == \"y\"",
            "NOT $event.a == \"x\"",
            "$event.a != \"x\"",
            "$event.a BEGINSWITH \"x\"",
            "$event.a ==[cd] \"x\"",
            "$event.a ==[d] \"x\"",
            "$event.type == 1",
            "$event.a IN {'x', 2}",
            "$tags.a == \"x\"",
            "ANY $event.args == \"x\"",
            "$event.a IN \"xyz\"",
        ] {
            assert_eq!(key(f), None, "{f}");
        }
    }

    /// What the index promises: wherever a filter with an index key holds, the value at
    /// its path, folded as `==` folds, is one of its constants.
    #[test]
    fn a_filter_holds_only_where_its_index_key_matches() {
        let filters = [
            "$event.type == 1 AND $event.name == \"curl\" AND $event.n > 1",
            "$event.name ==[c] \"CURL\" AND $event.n > 1",
            "$event.name IN {'curl', 'wget'} AND $event.n > 1",
            "$event.name IN[c] {'CURL', 'Wget'}",
            "$event.path.lastPathComponent ==[c] \"Bash\" AND $event.n > 1",
        ];
        let names = [
            "curl", "CURL", "Curl", "wget", "WGET", "bash", "ls", "", "cürl",
        ];
        for f in filters {
            let p = Predicate::parse(f).unwrap();
            let key = p.index_key("event").unwrap();
            let constants: Vec<String> = key
                .values
                .iter()
                .map(|v| Predicate::index_fold(v, key.case_insensitive).into_owned())
                .collect();
            for name in names {
                for value in [json!(name), json!(5), json!([name]), Value::Null] {
                    let event =
                        json!({"type": 1, "n": 2, "name": value, "path": format!("/bin/{name}")});
                    let vars = Vars::new(&event);
                    let at = Predicate::resolve_ref(key.path, &vars);
                    let selected = at.as_str().is_some_and(|s| {
                        constants
                            .contains(&Predicate::index_fold(s, key.case_insensitive).into_owned())
                    });
                    assert!(selected || !p.eval(&vars), "{f} on {event}");
                }
            }
        }
    }

    #[test]
    fn operators_and_modifiers() {
        let e = json!({"type": 1, "path": "/Users/Bob/Library/LaunchAgents/Évil.PLIST", "flag": true, "tty": null,
                       "args": ["xattr", "-d", "com.apple.quarantine"], "n": 3});
        assert!(holds("$event.type == 1", &e));
        assert!(holds(
            "$event.type = 1 && $event.n >= 3 && $event.n < 4",
            &e
        ));
        assert!(holds(
            "$event.flag == 1 AND $event.flag == TRUE AND $event.flag == YES",
            &e
        ));
        assert!(holds(
            "$event.tty == nil AND $event.missing == NULL AND $event.path != nil",
            &e
        ));
        assert!(holds(r#"$event.path ENDSWITH[c] ".plist""#, &e));
        assert!(!holds(r#"$event.path ENDSWITH ".plist""#, &e));
        assert!(holds(r#"$event.path CONTAINS[cd] "evil""#, &e));
        assert!(
            !holds(r#"$event.path CONTAINS[c] "evil""#, &e),
            "[c] alone keeps diacritics"
        );
        assert!(holds(r#"$event.path BEGINSWITH "/Users/""#, &e));
        assert!(holds(
            r#"$event.path LIKE[c] "/users/*/library/launchagents/*.plist""#,
            &e
        ));
        assert!(holds(
            r#"$event.path MATCHES[cd] "/users/[^/]+/library/launchagents/.*\\.plist""#,
            &e
        ));
        assert!(
            !holds(r#"$event.path MATCHES "LaunchAgents""#, &e),
            "MATCHES is a whole-string match"
        );
        assert!(holds(r#"$event.type IN {0, 1, 3}"#, &e));
        assert!(holds(
            r#"NOT $event.type IN {0, 3} AND !($event.n > 5)"#,
            &e
        ));
        assert!(holds(
            r#"ANY $event.args IN {"-d", "-c"} AND ALL $event.args BEGINSWITH[c] "" AND NONE $event.args == "-r""#,
            &e
        ));
        assert!(holds(
            r#"$event.args CONTAINS "-d" AND $event.args.@count == 3 AND $event.args.@count > 0"#,
            &e
        ));
        assert!(
            holds(
                r#"$event.type == 2 OR $event.type == 1 AND $event.n == 3"#,
                &e
            ),
            "AND binds tighter than OR"
        );
    }

    #[test]
    fn key_path_functions_and_indexing() {
        let e = json!({"path": "/Users/a/.Trash/Old.app", "args": ["scp", "f", "me@host:/x"], "file": {"contentsAsDict": {"Window Settings": {"Basic": {"CommandString": "curl x | sh"}}}}});
        assert!(holds(r#"$event.path.lastPathComponent == "Old.app""#, &e));
        assert!(holds(r#"$event.path.pathExtension == "app""#, &e));
        assert!(holds(
            r#"$event.path.stringByDeletingLastPathComponent.lastPathComponent == ".Trash""#,
            &e
        ));
        assert!(holds(
            r#"$event.file.contentsAsDict."Window Settings".Basic.CommandString != nil"#,
            &e
        ));
        assert!(holds(r#"ANY $event.args MATCHES ".*@.*""#, &e));
        let last = Predicate::parse_operand("(event.args)[LAST]").unwrap();
        assert_eq!(
            Predicate::resolve(&last, &Vars::new(&e)),
            json!("me@host:/x")
        );
        assert!(holds(
            r#"$file.contentsAsDict."Window Settings".Basic.CommandString CONTAINS "curl""#,
            &e
        ));
    }

    #[test]
    fn tags_context_and_bare_paths() {
        let e = json!({"path": "/Library/LaunchDaemons/org.jmttrading.plist", "process": {"signingInfo": {"appid": "x"}}});
        let mut vars = Vars::new(&e);
        vars.tags = Cow::Owned(json!(["LaunchDaemon"]));
        vars.context = Cow::Owned(json!({"Name": {"value": "org.jmttrading.plist"}}));
        let p = Predicate::parse(r#"("LaunchDaemon" IN $tags OR "LaunchAgent" IN $tags) AND $context.Name.value IN {"org.jmttrading.plist"}"#).unwrap();
        assert!(p.eval(&vars));
        assert!(!p.eval(&Vars::new(&e)));
        assert!(
            Predicate::parse(r#"event.process.signingInfo.appid == "x""#)
                .unwrap()
                .eval(&vars)
        );
    }

    /// A model answering `process.name` itself, and nothing else.
    #[derive(Debug)]
    struct Typed(Value);

    impl Model for Typed {
        fn walk(&self, first: &str, rest: &[Key]) -> (Cow<'_, Value>, usize) {
            match (first, rest.first()) {
                ("process", Some(Key::Name(n))) if n == "name" => {
                    (Cow::Owned(Value::String("typed".into())), 1)
                }
                _ => self.0.walk(first, rest),
            }
        }

        fn whole(&self) -> Cow<'_, Value> {
            Cow::Borrowed(&self.0)
        }
    }

    #[test]
    fn a_model_answers_what_it_holds_and_the_evaluator_walks_on() {
        let json = json!({"process": {"name": "json", "args": ["a", "b"]}, "type": 1});
        let typed = Typed(json.clone());
        let holds = |filter: &str, model: &dyn Model| {
            Predicate::parse(filter).unwrap().eval(&Vars::new(model))
        };
        // Answered by the model, then walked on by the evaluator.
        assert!(holds(r#"$event.process.name == "typed""#, &typed));
        assert!(holds("$event.process.name.length == 5", &typed));
        assert!(holds(
            r#"$file == nil AND event.process.name == "typed""#,
            &typed
        ));
        // Everything else as JSON.
        for filter in [
            "$event.process.args.@count == 2 AND $event.type == 1",
            r#"ANY $event.process.args == "b" AND $event.@count == 2"#,
            "event.process.args[LAST] == 'b'",
        ] {
            assert_eq!(holds(filter, &typed), holds(filter, &json), "{filter}");
        }
        assert!(!holds(r#"$event.process.name == "json""#, &typed));
    }

    #[test]
    fn mismatched_types_are_false_not_errors() {
        let e = json!({"s": "1", "n": 1, "a": [1]});
        assert!(!holds(r#"$event.s == 1"#, &e));
        assert!(!holds(r#"$event.n BEGINSWITH "1""#, &e));
        assert!(!holds(r#"$event.a > 0"#, &e));
        assert!(!holds(r#"ANY $event.missing == 1"#, &e));
        assert!(holds(r#"NONE $event.missing == 1"#, &e));
    }

    #[test]
    fn look_around_regexes_work() {
        let re = r#"$event.p MATCHES ".*log4j-core-(?!2\\.17\\.[0-9])(\\d+(\\.|-)?){1,3}\.jar""#;
        assert!(holds(re, &json!({"p": "/x/log4j-core-2.14.1.jar"})));
        assert!(!holds(re, &json!({"p": "/x/log4j-core-2.17.1.jar"})));
    }
}
