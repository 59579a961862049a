//! ward-predicate: the predicate language of Jamf Protect custom analytics (NSPredicate
//! syntax) — parsed once with precise errors, evaluated many times over JSON values or over
//! a detector's own typed event ([`Model`]).
//!
//! ```
//! use ward_predicate::{Predicate, Vars};
//! let p = Predicate::parse(r#"$event.type == 1 AND ANY $event.process.args IN {"-d", "-c"}"#).unwrap();
//! let event = serde_json::json!({"type": 1, "process": {"args": ["xattr", "-d", "x"]}});
//! assert!(p.eval(&Vars::new(&event)));
//! ```
//!
//! Supported: `==` `=` `!=` `<>` `<` `<=` `>` `>=`, `IN {…}`, `BEGINSWITH`, `ENDSWITH`,
//! `CONTAINS`, `LIKE` (`*`, `?`), `MATCHES` (a quoted whole-string regular expression, with
//! look-around; no back-references), the `[c]` `[d]` `[cd]` modifiers, `AND`/`OR`/`NOT` and `&&`/`||`/`!`,
//! `ANY`/`SOME`/`ALL`/`NONE`, `nil`/`NULL`, `TRUE`/`FALSE`/`YES`/`NO`, numbers,
//! single- or double-quoted strings, key paths with `@count`, `lastPathComponent`,
//! `pathExtension`, `stringByDeletingLastPathComponent`, `lowercaseString`,
//! `uppercaseString`, quoted keys (`."Window Settings"`) and `[FIRST]`/`[LAST]`/`[SIZE]`/`[n]`
//! indexing, and the variables `$event`, `$tags`, `$context` and `$file`. A key path without
//! a `$` variable is looked up in the evaluated object `{event, tags, context}`.
//!
//! Bounds, since the event is the attacker's and the filter may be careless: nesting is
//! limited to [`MAX_NESTING`] levels (parsing, evaluating and dropping recurse once per
//! level; `AND`/`OR` chains are flat), analytic files are checked before yaml-rust2 loads
//! them ([`analytic`]), and `MATCHES` patterns that need the backtracking engine spend from a
//! per-evaluation [`RegexBudget`] (see [`Pattern`]).
#![deny(missing_docs)]

pub mod analytic;
mod eval;
mod lexer;
mod parser;
mod pattern;

pub use analytic::{Analytic, AnalyticError, parse_analytic, parse_analytic_with};
pub use eval::{Model, Vars, key_of};
pub use parser::{Expr, IndexKey, Key, MAX_NESTING, Operand, ParseError, Predicate};
pub use pattern::{
    BACKTRACK_LIMITS, EVENT_BACKTRACK_BUDGET, FORWARD_STEPS, MAX_BACKTRACKS, MAX_DFA_CACHE_BYTES,
    MAX_PATTERN_BYTES, Pattern, RegexBudget, RegexStats, Regexes,
};
