//! `MATCHES` patterns: compiled once (at parse time, or when first needed), refused when a
//! feature has no bound on its cost, and run on the backtracking engine only within a
//! per-evaluation budget.
//!
//! fancy-regex hands a pattern without look-around or other "fancy" features to the
//! linear-time `regex` engine: those cost no budget. A pattern that needs its backtracking
//! VM is compiled once per limit in [`BACKTRACK_LIMITS`] (the first with the pattern, the
//! others when a match first needs them); a match is tried with the smallest limit and
//! retried with the next when it needs more backtracking. fancy-regex does not say how
//! many steps a match took, so each attempt is charged what its limit allows:
//! `(text bytes + 1) × (limit + FORWARD_STEPS)` against the evaluation's [`RegexBudget`]
//! (a backtrack may rescan the text, e.g. a look-ahead, and the VM's forward work is linear
//! in the text). An attempt the budget cannot pay for is not run: the comparison is false,
//! the skip is counted, and the budget is spent (later backtracking matches of the same
//! evaluation are skipped too). The caller decides what an evaluation is; jamf-analytics gives
//! every event one budget, shared by all its analytics.
//!
//! When patterns are compiled is the caller's choice ([`Regexes`]): at parse time, so a
//! pattern that does not compile refuses its filter there; or on first use, for filters
//! whose patterns are known to compile (a bundled corpus, held by a test), so that a
//! pattern whose automaton is costly to build — a bounded repetition of a Unicode class,
//! `[\w.-]{1,83}`, takes 20–25 ms — costs nothing until an event needs it. Either way the
//! pattern is parsed, and refused features refused, at parse time.

use std::cell::Cell;
use std::sync::OnceLock;

use fancy_regex::{Expr as Re, Regex, RegexBuilder};

/// Backtracks allowed to one match attempt of a backtracking pattern, tried in turn (each
/// limit 8x the previous, so the work of failed attempts is at most 1/7 of the last).
/// Measured on the bundled Jamf look-ahead (`.*…log4j-core-(?!2\.17…)…\.jar`): a match
/// takes 95 backtracks whatever the path's length; ruling one out takes about two per byte
/// (its leading `.*`), so past ~1,000 bytes the limit rules it out (false either way).
pub const BACKTRACK_LIMITS: [usize; 3] = [32, 256, MAX_BACKTRACKS];

/// The largest of [`BACKTRACK_LIMITS`].
pub const MAX_BACKTRACKS: usize = 2_048;

/// The VM's forward work per byte of text, in backtrack equivalents (measured: ~130 ns per
/// byte for a loop that pushes a branch per character, ~0.5 ns per backtrack and byte for a
/// look-ahead rescanning the text).
pub const FORWARD_STEPS: u64 = 256;

/// Steps ((bytes + 1) × (limit + [`FORWARD_STEPS`]), see the module) one evaluation may
/// spend on backtracking patterns by default. Measured natively at ≤ 0.5 ns per step on the
/// worst patterns tried, this is about 1 ms, so 64 hostile events stay well inside a 250 ms
/// call deadline; an ordinary 100-byte path costs ~80,000 steps (25 matches per event).
/// A pattern compiled on first use ([`Regexes::OnFirstUse`]) is built inside the call of
/// the first event that needs it, outside this budget: once per instance, ~25 ms natively
/// for the costliest bundled one.
pub const EVENT_BACKTRACK_BUDGET: u64 = 1 << 21;

/// Longest `MATCHES` pattern accepted, in bytes (compile time and memory).
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Capacity of the lazy DFA cache of each pattern's linear-time engine. The cache grows
/// with the variety of text matched, which is the stream's; regex-automata's default is
/// 2 MiB per pattern, so a plugin with a few dozen patterns could be driven out of its
/// 64 MiB. When full the cache is cleared (or the engine falls back to a slower one); the
/// bundled patterns match as before.
pub const MAX_DFA_CACHE_BYTES: usize = 256 << 10;

/// A compiled `MATCHES` pattern (whole-string match).
#[derive(Debug, Clone)]
pub struct Pattern {
    engine: Engine,
    /// Literal text every match contains, looked for before the engine runs.
    required: Option<Required>,
}

/// Shortest literal worth looking for first: shorter ones rarely rule a text out.
const MIN_REQUIRED_BYTES: usize = 3;

/// Nesting of the pattern's tree the literal search descends (fancy-regex's parser stops at
/// 64 nested groups; deeper parts are simply not searched for literals).
const MAX_REQUIRED_DEPTH: usize = 64;

/// A run of literal text that every match of a pattern contains. Most texts an analytic
/// sees (paths, command lines) lack it, and a substring search costs a fraction of a call
/// into the regular-expression engine, so a text without it is refused before the call.
#[derive(Debug, Clone)]
struct Required {
    /// The text; ASCII-lowercased when `case_insensitive`.
    text: String,
    case_insensitive: bool,
}

impl Required {
    /// False only when no match can be in `text`. Case-insensitive runs are ASCII (see
    /// [`required_literal`]); a text with anything else in it is left to the engine,
    /// whose Unicode case folding also matches `K` (Kelvin) to `k` and `ſ` to `s`.
    fn may_match(&self, text: &str) -> bool {
        if !self.case_insensitive {
            text.contains(self.text.as_str())
        } else if text.is_ascii() {
            text.to_ascii_lowercase().contains(self.text.as_str())
        } else {
            true
        }
    }
}

/// The longest run of literal text every match of `tree` contains, if one is at least
/// [`MIN_REQUIRED_BYTES`] long: literals concatenated with nothing between them, at the top
/// level or inside groups and repetitions that must occur at least once (alternatives,
/// optional parts and look-arounds are not looked into). A case-insensitive run must be
/// ASCII.
fn required_literal(tree: &Re) -> Option<Required> {
    fn runs(e: &Re, depth: usize, out: &mut Vec<(String, bool)>) {
        if depth > MAX_REQUIRED_DEPTH {
            return;
        }
        match e {
            Re::Literal { val, casei } => out.push((val.clone(), *casei)),
            Re::Concat(items) => {
                let mut run = (String::new(), false);
                for item in items {
                    if let Re::Literal { val, casei } = item {
                        run.0.push_str(val);
                        run.1 |= *casei;
                        continue;
                    }
                    if !run.0.is_empty() {
                        out.push(std::mem::take(&mut run));
                    }
                    runs(item, depth + 1, out);
                }
                if !run.0.is_empty() {
                    out.push(run);
                }
            }
            Re::Group(inner) => runs(inner, depth + 1, out),
            Re::Repeat { child, lo, .. } if *lo >= 1 => runs(child, depth + 1, out),
            _ => {}
        }
    }
    let mut found = Vec::new();
    runs(tree, 0, &mut found);
    found
        .into_iter()
        .filter(|(text, casei)| text.len() >= MIN_REQUIRED_BYTES && (!casei || text.is_ascii()))
        .max_by_key(|(text, _)| text.len())
        .map(|(text, case_insensitive)| Required {
            text: if case_insensitive {
                text.to_ascii_lowercase()
            } else {
                text
            },
            case_insensitive,
        })
}

/// When a `MATCHES` pattern is compiled (see the module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Regexes {
    /// While the filter is parsed: a pattern that does not compile refuses the filter.
    #[default]
    AtParse,
    /// When a match first needs it. A pattern that then does not compile matches nothing,
    /// counted as [`RegexStats::uncompiled`]; [`crate::Predicate::compile_regexes`] compiles
    /// them all now and says which would not.
    OnFirstUse,
}

#[derive(Debug, Clone)]
enum Engine {
    /// Delegated to the linear-time engine: no budget. The pattern as compiled, and its
    /// compiled form (`None` if it would not compile).
    Linear {
        whole: String,
        compiled: OnceLock<Option<Regex>>,
    },
    /// Needs the backtracking VM: the pattern as compiled, and one compiled copy per
    /// [`BACKTRACK_LIMITS`] entry (`None` if it would not compile).
    Backtracking {
        whole: String,
        tiers: Box<[OnceLock<Option<Regex>>; BACKTRACK_LIMITS.len()]>,
    },
}

fn build(whole: &str, limit: usize) -> Result<Regex, String> {
    RegexBuilder::new(whole)
        .backtrack_limit(limit)
        .delegate_dfa_size_limit(MAX_DFA_CACHE_BYTES)
        .build()
        .map_err(|e| format!("does not compile: {e}"))
}

/// What the budget saw, summed over an evaluation (or whatever the caller adds up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegexStats {
    /// Match attempts run on the backtracking engine.
    pub attempts: u64,
    /// Matches that needed more backtracking than the largest limit (evaluated false).
    pub over_limit: u64,
    /// Matches not run (or not finished) because the budget was spent (evaluated false).
    pub skipped: u64,
    /// Matches not run because a pattern compiled on first use ([`Regexes::OnFirstUse`])
    /// did not compile (evaluated false).
    pub uncompiled: u64,
}

impl RegexStats {
    /// True when some match was cut short (over the limit, out of budget, or its pattern
    /// did not compile).
    pub fn cut_short(&self) -> bool {
        self.cut_short_since(RegexStats::default())
    }

    /// True when more matches were cut short than `before` counted (the same budget's
    /// stats taken earlier).
    pub fn cut_short_since(&self, before: RegexStats) -> bool {
        self.over_limit > before.over_limit
            || self.skipped > before.skipped
            || self.uncompiled > before.uncompiled
    }

    /// Adds `other` in.
    pub fn add(&mut self, other: RegexStats) {
        self.attempts += other.attempts;
        self.over_limit += other.over_limit;
        self.skipped += other.skipped;
        self.uncompiled += other.uncompiled;
    }
}

/// The backtracking work one evaluation may still do, in steps (see the module), and what
/// it did. Shared through [`crate::Vars`] by every predicate evaluated with them.
#[derive(Debug, Clone)]
pub struct RegexBudget {
    left: Cell<u64>,
    stats: Cell<RegexStats>,
}

impl Default for RegexBudget {
    fn default() -> Self {
        Self::new(EVENT_BACKTRACK_BUDGET)
    }
}

impl RegexBudget {
    /// A budget of `steps`.
    pub fn new(steps: u64) -> Self {
        Self {
            left: Cell::new(steps),
            stats: Cell::new(RegexStats::default()),
        }
    }

    /// Steps left.
    pub fn left(&self) -> u64 {
        self.left.get()
    }

    /// What was spent so far.
    pub fn stats(&self) -> RegexStats {
        self.stats.get()
    }

    fn note(&self, f: impl FnOnce(&mut RegexStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Takes `steps` if there are that many left; otherwise the budget is spent: every
    /// later backtracking match of the evaluation is skipped too.
    fn take(&self, steps: u64) -> bool {
        match self.left.get().checked_sub(steps) {
            Some(left) => {
                self.left.set(left);
                true
            }
            None => {
                self.left.set(0);
                false
            }
        }
    }
}

/// The feature of `tree` whose cost has no bound, if any.
fn refused_feature(tree: &Re) -> Option<&'static str> {
    use fancy_regex::AstNode;
    let mut stack = vec![tree];
    while let Some(e) = stack.pop() {
        let why = match e {
            Re::Backref { .. }
            | Re::BackrefWithRelativeRecursionLevel { .. }
            | Re::BackrefExistsCondition { .. }
            | Re::AstNode(AstNode::Backref { .. }, _)
            | Re::AstNode(AstNode::BackrefExistsCondition { .. }, _) => {
                Some("a back-reference: its matching cost has no bound")
            }
            Re::Conditional { .. } => Some("a conditional: its matching cost has no bound"),
            Re::SubroutineCall(_)
            | Re::AstNode(AstNode::SubroutineCall(_), _)
            | Re::DefineGroup { .. } => Some("a subroutine call: its recursion has no bound"),
            Re::Absent(_) => Some("an absent operator: its matching cost has no bound"),
            _ => None,
        };
        if why.is_some() {
            return why;
        }
        stack.extend(e.children_iter());
    }
    None
}

/// True if matching `tree` needs fancy-regex's backtracking VM (look-around, atomic
/// groups, `\K`, `\G`, backtracking verbs); otherwise it is delegated to the linear engine.
fn needs_backtracking(tree: &Re) -> bool {
    let mut stack = vec![tree];
    while let Some(e) = stack.pop() {
        if matches!(
            e,
            Re::LookAround(..)
                | Re::AtomicGroup(_)
                | Re::KeepOut
                | Re::ContinueFromPreviousMatchEnd
                | Re::BacktrackingControlVerb(_)
        ) {
            return true;
        }
        stack.extend(e.children_iter());
    }
    false
}

impl Pattern {
    /// Compiles `pattern` as a whole-string match, case-insensitive if asked, now or on
    /// first use as `regexes` says. The error says why not, as "the pattern …" would
    /// continue ("uses a back-reference: …").
    pub(crate) fn new(
        pattern: &str,
        case_insensitive: bool,
        regexes: Regexes,
    ) -> Result<Self, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "is {} bytes, over the {MAX_PATTERN_BYTES}-byte limit",
                pattern.len()
            ));
        }
        let flags = if case_insensitive { "(?i)" } else { "" };
        let whole = format!("{flags}^(?:{pattern})$");
        // fancy-regex bounds its parser's recursion itself (64 nested groups).
        let tree = Re::parse_tree(&whole).map_err(|e| format!("does not parse: {e}"))?;
        if let Some(why) = refused_feature(&tree.expr) {
            return Err(format!("uses {why}"));
        }
        let [first, ..] = BACKTRACK_LIMITS;
        let backtracking = needs_backtracking(&tree.expr);
        // Should fancy-regex still use its VM for a linear pattern, the largest limit bounds
        // the match.
        let limit = if backtracking { first } else { MAX_BACKTRACKS };
        let compiled = match regexes {
            Regexes::AtParse => OnceLock::from(Some(build(&whole, limit)?)),
            Regexes::OnFirstUse => OnceLock::new(),
        };
        let engine = if backtracking {
            let tiers = Box::new([compiled, OnceLock::new(), OnceLock::new()]);
            Engine::Backtracking { whole, tiers }
        } else {
            Engine::Linear { whole, compiled }
        };
        Ok(Self {
            engine,
            required: required_literal(&tree.expr),
        })
    }

    /// True if the pattern needs the backtracking engine (and so the budget).
    pub fn is_backtracking(&self) -> bool {
        matches!(self.engine, Engine::Backtracking { .. })
    }

    /// The pattern as compiled, the compiled form it is first matched with (the first
    /// backtracking tier, or the linear one), and the backtrack limit that form has.
    fn first_tier(&self) -> (&str, &OnceLock<Option<Regex>>, usize) {
        match &self.engine {
            Engine::Linear { whole, compiled } => (whole, compiled, MAX_BACKTRACKS),
            Engine::Backtracking { whole, tiers } => {
                let [first, ..] = tiers.as_ref();
                let [limit, ..] = BACKTRACK_LIMITS;
                (whole, first, limit)
            }
        }
    }

    /// Compiles the pattern now if it waits for its first use; the error says why it does
    /// not compile.
    pub(crate) fn compile_now(&self) -> Result<(), String> {
        let (whole, cell, limit) = self.first_tier();
        match cell.get() {
            Some(Some(_)) => Ok(()),
            // A first use found it would not compile: compiled again for the reason.
            Some(None) => build(whole, limit).map(drop),
            None => {
                let _ = cell.set(Some(build(whole, limit)?));
                Ok(())
            }
        }
    }

    /// True if `text` matches; false when it does not, when the budget cannot pay for
    /// finding out, or when a pattern compiled on first use did not compile (each counted
    /// in `budget`; the last charges nothing).
    pub(crate) fn is_match(&self, text: &str, budget: &RegexBudget) -> bool {
        if let Some(required) = &self.required
            && !required.may_match(text)
        {
            return false;
        }
        // Compiled with the pattern unless it waits for its first use; one that does not
        // compile cannot run, and is not charged for.
        let (whole, first, limit) = self.first_tier();
        let Some(compiled) = first.get_or_init(|| build(whole, limit).ok()) else {
            budget.note(|s| s.uncompiled += 1);
            return false;
        };
        let Engine::Backtracking { whole, tiers } = &self.engine else {
            return compiled.is_match(text).unwrap_or(false);
        };
        let bytes = text.len() as u64 + 1;
        for (limit, tier) in BACKTRACK_LIMITS.iter().zip(tiers.iter()) {
            let cost = bytes.saturating_mul(*limit as u64 + FORWARD_STEPS);
            if !budget.take(cost) {
                budget.note(|s| s.skipped += 1);
                return false;
            }
            let Some(re) = tier.get_or_init(|| build(whole, *limit).ok()) else {
                break;
            };
            budget.note(|s| s.attempts += 1);
            if let Ok(found) = re.is_match(text) {
                return found;
            }
            // Over this limit (the only runtime error): try the next.
        }
        budget.note(|s| s.over_limit += 1);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiled on first use, a pattern answers as compiled at parse; one that would not
    /// compile parses, matches nothing, is counted, and `compile_now` says why.
    #[test]
    fn patterns_compiled_on_first_use_answer_as_those_compiled_at_parse() {
        let cases = [
            (
                r"(:?/System|/Users/[\w_\.\-]{1,83})?/Library/LaunchDaemons/.*\.plist",
                true,
            ),
            (r".*log4j-core-(?!2\.17).*\.jar", false),
            (r"/tmp/[a-z]+", false),
        ];
        let texts = [
            "/Users/alice/Library/LaunchDaemons/x.plist",
            "/library/launchdaemons/evil.PLIST",
            "/Users/Ünïcødé/Library/LaunchDaemons/x.plist",
            "/opt/log4j-core-2.14.jar",
            "/opt/log4j-core-2.17.jar",
            "/tmp/abc",
            "/tmp/ABC",
            "",
        ];
        for (pattern, case_insensitive) in cases {
            let now = Pattern::new(pattern, case_insensitive, Regexes::AtParse).unwrap();
            let later = Pattern::new(pattern, case_insensitive, Regexes::OnFirstUse).unwrap();
            for text in texts {
                let budget = RegexBudget::default();
                assert_eq!(
                    later.is_match(text, &budget),
                    now.is_match(text, &RegexBudget::default()),
                    "{pattern} on {text}"
                );
                assert_eq!(budget.stats().uncompiled, 0);
            }
            assert!(later.compile_now().is_ok());
        }
        // Parses, but the engine refuses the class: at parse that refuses the filter; on
        // first use it matches nothing and says so.
        let unknown = r"/Users/\p{NoSuchClass}+/x";
        assert!(Pattern::new(unknown, false, Regexes::AtParse).is_err());
        let later = Pattern::new(unknown, false, Regexes::OnFirstUse).unwrap();
        let budget = RegexBudget::default();
        assert!(!later.is_match("/Users/a/x", &budget));
        assert_eq!(budget.stats().uncompiled, 1);
        assert!(budget.stats().cut_short());
        assert!(
            later
                .compile_now()
                .unwrap_err()
                .contains("does not compile")
        );
        // The same for a pattern that needs backtracking, which is not charged for it.
        let unknown = r"/Users/\p{NoSuchClass}+(?=/x)/x";
        assert!(Pattern::new(unknown, false, Regexes::AtParse).is_err());
        let later = Pattern::new(unknown, false, Regexes::OnFirstUse).unwrap();
        assert!(later.is_backtracking());
        let budget = RegexBudget::new(1_000);
        for _ in 0..3 {
            assert!(!later.is_match(&format!("/Users/{}/x", "a".repeat(500)), &budget));
        }
        assert_eq!(budget.stats().uncompiled, 3);
        assert_eq!((budget.stats().attempts, budget.stats().skipped), (0, 0));
        assert_eq!(budget.left(), 1_000);
    }

    fn required(pattern: &str, case_insensitive: bool) -> Option<(String, bool)> {
        let p = Pattern::new(pattern, case_insensitive, Regexes::AtParse).unwrap();
        p.required.map(|r| (r.text, r.case_insensitive))
    }

    #[test]
    fn the_literal_every_match_contains_is_found() {
        let some = |t: &str, c: bool| Some((t.to_owned(), c));
        assert_eq!(
            required(r"/Users/.*/\.zshenv", true),
            some("/.zshenv", true)
        );
        assert_eq!(
            required(
                r"(:?/System|/Users/[\w_\.\-]{1,83})?/Library/LaunchDaemons/.*\.plist",
                true
            ),
            some("/library/launchdaemons/", true)
        );
        assert_eq!(
            required(r"\/Users\/[^\/]+\/\.openclaw", false),
            some("/.openclaw", false)
        );
        assert_eq!(required(r"(abcd)+x", false), some("abcd", false));
        // Optional parts, alternatives and look-arounds may be absent from a match.
        assert_eq!(required(r"(abcd)?x|y", false), None);
        assert_eq!(required(r"(?:abcd)*", false), None);
        assert_eq!(required(r"(?=abcd)a.*", false), None);
        assert_eq!(
            required(r"ab.cd", false),
            None,
            "runs shorter than three bytes"
        );
        // Case-insensitive runs must be ASCII; case-sensitive ones need not be.
        assert_eq!(required("éte.*x", true), None);
        assert_eq!(required("été.*x", false), some("été", false));
    }

    /// Small deterministic generator (xorshift) for the property below.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.next() % items.len()]
        }
    }

    /// The literal check only ever refuses texts the engine refuses too, for random
    /// patterns and texts, case-insensitive ones with non-ASCII case pairs (`ſ`/`s`, the
    /// Kelvin sign/`k`) among them.
    #[test]
    fn the_literal_check_never_refuses_a_match() {
        let pieces = [
            "abc", "ab", "/x/", "s", "k", ".", ".*", "(abc|cd)", "(abc)?", "(abc)+", "[a-c]",
            "\\.", "a{2}", "(?:sk)*", "sks", "(ksk)+", "x",
        ];
        let letters = [
            "a", "b", "c", "d", "k", "s", "x", "/", ".", "A", "B", "K", "S", "ſ", "\u{212a}",
        ];
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut refused = 0;
        for _ in 0..3000 {
            let pattern: String = (0..1 + g.next() % 5).map(|_| g.pick(&pieces)).collect();
            let case_insensitive = g.next().is_multiple_of(2);
            let p = Pattern::new(&pattern, case_insensitive, Regexes::AtParse).unwrap();
            let engine_only = Pattern {
                required: None,
                ..p.clone()
            };
            for _ in 0..40 {
                let text: String = (0..g.next() % 10).map(|_| g.pick(&letters)).collect();
                let budget = RegexBudget::default();
                let with = p.is_match(&text, &budget);
                let without = engine_only.is_match(&text, &budget);
                assert_eq!(
                    with, without,
                    "{pattern:?} (case-insensitive {case_insensitive}) on {text:?}"
                );
                if p.required.as_ref().is_some_and(|r| !r.may_match(&text)) {
                    refused += 1;
                }
            }
        }
        assert!(refused > 1000, "the check refused only {refused} texts");
    }

    #[test]
    fn refused_and_backtracking_features_are_recognised() {
        for (pattern, why) in [
            (r"(a+)\1", "back-reference"),
            (r"(?<x>a)\k<x>", "back-reference"),
            (r"(a)?(?(1)b|c)", "conditional"),
        ] {
            let err = Pattern::new(pattern, false, Regexes::AtParse).unwrap_err();
            assert!(err.contains(why), "{pattern}: {err}");
        }
        // Subroutine calls, refused whether or not fancy-regex parses them by default.
        assert!(Pattern::new(r"(a|\g<1>)", false, Regexes::AtParse).is_err());
        assert!(
            Pattern::new("(?=a)a", false, Regexes::AtParse)
                .unwrap()
                .is_backtracking()
        );
        assert!(
            Pattern::new("(?>a+)b", false, Regexes::AtParse)
                .unwrap()
                .is_backtracking()
        );
        assert!(
            !Pattern::new("/Users/[^/]+/x", true, Regexes::AtParse)
                .unwrap()
                .is_backtracking()
        );
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(
            Pattern::new(&long, false, Regexes::AtParse)
                .unwrap_err()
                .contains("limit")
        );
        assert!(Pattern::new(&"(".repeat(100), false, Regexes::AtParse).is_err());
    }

    #[test]
    fn attempts_escalate_and_are_charged_their_limits() {
        let p = Pattern::new(r".*x(?!y).*", false, Regexes::AtParse).unwrap();
        let budget = RegexBudget::new(u64::MAX);
        assert!(p.is_match("axb", &budget));
        assert_eq!(budget.stats().attempts, 1);
        assert_eq!(u64::MAX - budget.left(), 4 * (32 + FORWARD_STEPS));
        // Catastrophic on this text: every limit is tried, then it is false.
        let p = Pattern::new(r"(a|a)*(?=b)c", false, Regexes::AtParse).unwrap();
        let budget = RegexBudget::new(u64::MAX);
        assert!(!p.is_match(&"a".repeat(40), &budget));
        assert_eq!(
            budget.stats(),
            RegexStats {
                attempts: 3,
                over_limit: 1,
                skipped: 0,
                uncompiled: 0
            }
        );
        // Not enough budget: not run, and the budget is spent.
        let budget = RegexBudget::new(10);
        assert!(!p.is_match("c", &budget));
        assert_eq!(budget.stats().skipped, 1);
        assert_eq!(budget.left(), 0);
        // Linear patterns cost nothing.
        let p = Pattern::new(r"(a|a)*c", false, Regexes::AtParse).unwrap();
        let budget = RegexBudget::new(0);
        assert!(!p.is_match(&"a".repeat(10_000), &budget));
        assert_eq!(budget.stats(), RegexStats::default());
    }
}
