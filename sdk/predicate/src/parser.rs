//! Parsing a filter into an expression tree, with errors that say where and what was expected.

use std::fmt;
use std::sync::Arc;

use crate::lexer::{Tok, lex};
use crate::pattern::{Pattern, Regexes};

/// Deepest nesting a filter may use: parentheses, `NOT`/`!`, `{…}` lists and parenthesised
/// operands each add a level. Expressions are parsed without recursion, but operands, and
/// evaluating, cloning, printing and dropping the tree, recurse once per level, so this
/// bounds their stack. Measured natively at the limit (x86-64, every production, parse then
/// evaluate, clone, print and drop): at most 128 KiB in a debug build, 48 KiB in release
/// (the most for AND/OR groups around a look-around pattern, whose compilation alone takes
/// most of it); plugins run on a 512 KiB wasm stack. The bundled corpus nests at most 5
/// deep.
pub const MAX_NESTING: usize = 64;

/// Why a filter did not parse: the 1-based line and column in the filter text, what the
/// parser expected there and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the filter.
    pub offset: usize,
    /// 1-based line within the filter.
    pub line: usize,
    /// 1-based column (in characters) within that line.
    pub column: usize,
    /// What would have been valid.
    pub expected: String,
    /// What was there.
    pub found: String,
}

impl ParseError {
    pub(crate) fn at(text: &str, offset: usize, expected: &str, found: &str) -> Self {
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            offset,
            line,
            column,
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: expected {}, found {}",
            self.line, self.column, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

/// A comparison operator.
#[derive(Debug, Clone)]
pub enum Op {
    /// `==`, `=`.
    Eq,
    /// `!=`, `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `IN`.
    In,
    /// `BEGINSWITH`.
    BeginsWith,
    /// `ENDSWITH`.
    EndsWith,
    /// `CONTAINS`.
    Contains,
    /// `LIKE` with `*` and `?`.
    Like,
    /// `MATCHES`, against a literal pattern compiled at parse time (shared by clones: a
    /// clone of the tree neither recompiles nor copies it).
    Matches(Arc<Pattern>),
}

/// `ANY`/`SOME`, `ALL`, `NONE` before a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Some element satisfies the comparison.
    Any,
    /// Every element does.
    All,
    /// No element does.
    None,
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// A named key (or a string function such as `lastPathComponent`).
    Name(String),
    /// `@count`.
    Count,
    /// `[FIRST]`.
    First,
    /// `[LAST]`.
    Last,
    /// `[SIZE]`.
    Size,
    /// `[n]`.
    Index(usize),
}

/// A value in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A key path, from a `$variable` or (without one) from the evaluated object.
    Path {
        /// Variable name without `$`, if any.
        var: Option<String>,
        /// Keys.
        keys: Vec<Key>,
    },
    /// A constant: string, number, `TRUE`/`YES`, `FALSE`/`NO`, `nil`/`NULL`, or a `{…}` list
    /// of constants. Built once at parse time, so evaluation never allocates for it.
    Literal(serde_json::Value),
    /// A `{…}` list with key paths in it, resolved at evaluation.
    List(Vec<Operand>),
}

/// Comparison options from `[c]`, `[d]`, `[cd]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `[c]`: case-insensitive.
    pub case_insensitive: bool,
    /// `[d]`: diacritic-insensitive.
    pub diacritic_insensitive: bool,
}

/// The expression tree.
#[derive(Debug, Clone)]
pub enum Expr {
    /// All of them (`a AND b AND c` is one node, so a long chain is not a deep tree).
    And(Vec<Expr>),
    /// Any of them.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `TRUEPREDICATE` / `FALSEPREDICATE`.
    Const(bool),
    /// A comparison.
    Compare {
        /// Aggregate over the left side.
        aggregate: Option<Aggregate>,
        /// Left side.
        lhs: Operand,
        /// Operator.
        op: Op,
        /// Modifiers.
        options: Options,
        /// Right side.
        rhs: Operand,
    },
}

/// What [`Predicate::index_key`] found: the filter can hold only where the value at
/// `path` is one of `values` (compared without case when `case_insensitive`, as `[c]`
/// does: both sides lowercased).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexKey<'a> {
    /// The key path (a `$variable` path).
    pub path: &'a Operand,
    /// The constants.
    pub values: Vec<&'a str>,
    /// `[c]`.
    pub case_insensitive: bool,
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub struct Predicate {
    /// The tree.
    pub expr: Expr,
    /// The source text.
    pub source: String,
}

impl Predicate {
    /// The constant this filter requires at `$var.<path>` for any match: a comparison
    /// `$var.path == literal` (either way round, no modifiers) that is a conjunct of the
    /// top-level AND chain. `None` when the filter does not pin the value. Callers use it to
    /// skip filters cheaply, e.g. by the event's type code.
    pub fn required_value(&self, var: &str, path: &[&str]) -> Option<&serde_json::Value> {
        fn is_path(op: &Operand, var: &str, path: &[&str]) -> bool {
            matches!(op, Operand::Path { var: Some(v), keys }
                if v == var
                    && keys.len() == path.len()
                    && keys.iter().zip(path).all(|(k, p)| matches!(k, Key::Name(n) if n == p)))
        }
        fn walk<'a>(e: &'a Expr, var: &str, path: &[&str]) -> Option<&'a serde_json::Value> {
            match e {
                Expr::And(all) => all.iter().find_map(|e| walk(e, var, path)),
                Expr::Compare {
                    aggregate: None,
                    lhs,
                    op: Op::Eq,
                    options,
                    rhs,
                } if *options == Options::default() => match (lhs, rhs) {
                    (l, Operand::Literal(v)) if is_path(l, var, path) => Some(v),
                    (Operand::Literal(v), r) if is_path(r, var, path) => Some(v),
                    _ => None,
                },
                _ => None,
            }
        }
        walk(&self.expr, var, path)
    }

    /// A conjunct of the top-level AND chain that holds only when `$var.<path>` equals
    /// one of a few string constants: `path == "a"` (either way round) or `path IN {"a",
    /// "b"}`, without modifiers or with `[c]` alone. Whatever else the filter says, it is
    /// false for an event whose value there (a string, compared as `==` would) is none of
    /// them — so callers can index filters by these constants and evaluate only the
    /// candidates an event's value selects. `None` when no conjunct is of that shape.
    pub fn index_key(&self, var: &str) -> Option<IndexKey<'_>> {
        fn walk<'a>(e: &'a Expr, var: &str) -> Option<IndexKey<'a>> {
            match e {
                Expr::And(all) => all.iter().find_map(|e| walk(e, var)),
                Expr::Compare {
                    aggregate: None,
                    lhs,
                    op,
                    options,
                    rhs,
                } if !options.diacritic_insensitive => {
                    let strings = |v: &'a serde_json::Value| -> Option<Vec<&'a str>> {
                        match v {
                            serde_json::Value::String(s) => Some(vec![s.as_str()]),
                            _ => None,
                        }
                    };
                    let of_var = |o: &Operand| matches!(o, Operand::Path { var: Some(v), keys } if v == var && !keys.is_empty());
                    let (path, values) = match (op, lhs, rhs) {
                        (Op::Eq, l, Operand::Literal(v)) if of_var(l) => (l, strings(v)?),
                        (Op::Eq, Operand::Literal(v), r) if of_var(r) => (r, strings(v)?),
                        (Op::In, l, Operand::Literal(serde_json::Value::Array(items)))
                            if of_var(l) && !items.is_empty() =>
                        {
                            let values: Option<Vec<&str>> =
                                items.iter().map(serde_json::Value::as_str).collect();
                            (l, values?)
                        }
                        _ => return None,
                    };
                    Some(IndexKey {
                        path,
                        values,
                        case_insensitive: options.case_insensitive,
                    })
                }
                _ => None,
            }
        }
        walk(&self.expr, var)
    }

    /// Compiles every `MATCHES` pattern that waits for its first use
    /// ([`Regexes::OnFirstUse`]); the error names the first that does not compile and why.
    pub fn compile_regexes(&self) -> Result<(), String> {
        // Recurses once per level of nesting, which the parser bounds (MAX_NESTING).
        fn walk(expr: &Expr) -> Result<(), String> {
            match expr {
                Expr::And(all) | Expr::Or(all) => all.iter().try_for_each(walk),
                Expr::Not(e) => walk(e),
                Expr::Const(_) => Ok(()),
                Expr::Compare { op, .. } => match op {
                    Op::Matches(pattern) => pattern.compile_now(),
                    _ => Ok(()),
                },
            }
        }
        walk(&self.expr)
    }

    /// Parses `text`, compiling its `MATCHES` patterns now.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Self::parse_with(text, Regexes::AtParse)
    }

    /// Parses `text`, compiling its `MATCHES` patterns when `regexes` says.
    pub fn parse_with(text: &str, regexes: Regexes) -> Result<Self, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
            regexes,
        };
        let expr = p.or()?;
        p.expect_end()?;
        Ok(Self {
            expr,
            source: text.to_owned(),
        })
    }

    /// Parses a context expression (an operand such as `(event.process.args)[LAST]`).
    pub fn parse_operand(text: &str) -> Result<Operand, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
            regexes: Regexes::AtParse,
        };
        let operand = p.operand()?;
        p.expect_end()?;
        Ok(operand)
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    /// Levels of nesting open at `pos` (see [`MAX_NESTING`]).
    depth: usize,
    /// When `MATCHES` patterns are compiled.
    regexes: Regexes,
}

fn keyword(tok: &Tok, word: &str) -> bool {
    matches!(tok, Tok::Ident(i) if i.eq_ignore_ascii_case(word))
}

/// An open parenthesis of the expression: the `OR` chain and the `AND` chain being read in
/// it, and the `NOT`s before it.
#[derive(Default)]
struct Group {
    any: Vec<Expr>,
    all: Vec<Expr>,
    nots: usize,
}

/// `items` as one node: the item itself when alone.
fn chain(mut items: Vec<Expr>, node: fn(Vec<Expr>) -> Expr) -> Expr {
    match items.len() {
        1 => items.pop().unwrap_or(Expr::Const(false)),
        _ => node(items),
    }
}

fn negated(mut expr: Expr, nots: usize) -> Expr {
    for _ in 0..nots {
        expr = Expr::Not(Box::new(expr));
    }
    expr
}

const OPERATORS: &str =
    "a comparison (==, !=, <, >, IN, BEGINSWITH, ENDSWITH, CONTAINS, LIKE, MATCHES)";

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).map_or(&Tok::End, |(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |(_, o)| *o)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError::at(self.text, self.offset(), expected, &self.peek().describe())
    }

    fn expect_end(&self) -> Result<(), ParseError> {
        match self.peek() {
            Tok::End => Ok(()),
            _ => Err(self.error("AND, OR or the end of the filter")),
        }
    }

    /// Opens a level of nesting at the current token: an error past [`MAX_NESTING`], before
    /// anything recurses.
    fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_NESTING {
            return Err(ParseError::at(
                self.text,
                self.offset(),
                &format!("at most {MAX_NESTING} levels of nesting"),
                &format!(
                    "{} nested deeper than {MAX_NESTING} levels",
                    self.peek().describe()
                ),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    /// The filter's expression: `OR`s of `AND`s of optionally negated atoms and
    /// parenthesised groups. Parsed iteratively (an open parenthesis is a [`Group`] on a
    /// stack, not a recursive call), so nesting costs no stack here; [`Parser::enter`] still
    /// bounds it, for whatever walks the tree afterwards.
    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut groups = vec![Group::default()];
        'unary: loop {
            let mut nots = 0;
            while keyword(self.peek(), "NOT") || *self.peek() == Tok::Sym("!") {
                self.enter()?;
                self.bump();
                nots += 1;
            }
            if *self.peek() == Tok::LParen {
                self.enter()?;
                self.bump();
                groups.push(Group {
                    nots,
                    ..Group::default()
                });
                continue;
            }
            let mut expr = negated(self.atom()?, nots);
            self.depth -= nots;
            loop {
                let Some(group) = groups.last_mut() else {
                    return Err(self.error("an expression"));
                };
                group.all.push(expr);
                if keyword(self.peek(), "AND") || *self.peek() == Tok::Sym("&&") {
                    self.bump();
                    continue 'unary;
                }
                let all = std::mem::take(&mut group.all);
                group.any.push(chain(all, Expr::And));
                if keyword(self.peek(), "OR") || *self.peek() == Tok::Sym("||") {
                    self.bump();
                    continue 'unary;
                }
                if groups.len() == 1 {
                    let any = groups.pop().map(|g| g.any).unwrap_or_default();
                    return Ok(chain(any, Expr::Or));
                }
                if *self.peek() != Tok::RParen {
                    return Err(self.error("`)`"));
                }
                self.bump();
                let Some(group) = groups.pop() else {
                    return Err(self.error("an expression"));
                };
                self.depth -= 1 + group.nots;
                expr = negated(chain(group.any, Expr::Or), group.nots);
            }
        }
    }

    /// `TRUEPREDICATE`, `FALSEPREDICATE` or a comparison.
    fn atom(&mut self) -> Result<Expr, ParseError> {
        if keyword(self.peek(), "TRUEPREDICATE") {
            self.bump();
            return Ok(Expr::Const(true));
        }
        if keyword(self.peek(), "FALSEPREDICATE") {
            self.bump();
            return Ok(Expr::Const(false));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let aggregate = if keyword(self.peek(), "ANY") || keyword(self.peek(), "SOME") {
            Some(Aggregate::Any)
        } else if keyword(self.peek(), "ALL") {
            Some(Aggregate::All)
        } else if keyword(self.peek(), "NONE") {
            Some(Aggregate::None)
        } else {
            None
        };
        if aggregate.is_some() {
            self.bump();
        }
        let lhs = self.operand()?;
        let op = self.operator()?;
        let options = self.options()?;
        let rhs_at = self.offset();
        let rhs = self.operand()?;
        let op = match op {
            Some(op) => op,
            None => {
                // A pattern from the event would be the attacker's: only literals are
                // compiled, once, here.
                let Operand::Literal(serde_json::Value::String(pattern)) = &rhs else {
                    return Err(ParseError::at(
                        self.text,
                        rhs_at,
                        "a quoted regular expression after MATCHES",
                        "a key path or list (patterns are compiled once, from the filter)",
                    ));
                };
                let compiled = Pattern::new(pattern, options.case_insensitive, self.regexes)
                    .map_err(|e| {
                        ParseError::at(
                            self.text,
                            rhs_at,
                            "a regular expression ward can match in bounded time",
                            &format!("{pattern:?}, which {e}"),
                        )
                    })?;
                Op::Matches(Arc::new(compiled))
            }
        };
        Ok(Expr::Compare {
            aggregate,
            lhs,
            op,
            options,
            rhs,
        })
    }

    /// The operator; `None` for `MATCHES`, compiled once its pattern is read.
    fn operator(&mut self) -> Result<Option<Op>, ParseError> {
        let op = match self.peek() {
            Tok::Sym("==" | "=") => Op::Eq,
            Tok::Sym("!=" | "<>") => Op::Ne,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym("<=" | "=<") => Op::Le,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym(">=" | "=>") => Op::Ge,
            t if keyword(t, "IN") => Op::In,
            t if keyword(t, "BEGINSWITH") => Op::BeginsWith,
            t if keyword(t, "ENDSWITH") => Op::EndsWith,
            t if keyword(t, "CONTAINS") => Op::Contains,
            t if keyword(t, "LIKE") => Op::Like,
            t if keyword(t, "MATCHES") => {
                self.bump();
                return Ok(None);
            }
            _ => return Err(self.error(OPERATORS)),
        };
        self.bump();
        Ok(Some(op))
    }

    fn options(&mut self) -> Result<Options, ParseError> {
        let mut options = Options::default();
        if *self.peek() != Tok::LBracket {
            return Ok(options);
        }
        self.bump();
        match self.bump() {
            Tok::Ident(flags)
                if flags
                    .chars()
                    .all(|c| matches!(c.to_ascii_lowercase(), 'c' | 'd' | 'n')) =>
            {
                options.case_insensitive = flags.to_ascii_lowercase().contains('c');
                options.diacritic_insensitive = flags.to_ascii_lowercase().contains('d');
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("comparison options `c`, `d` or `cd`"));
            }
        }
        if *self.peek() != Tok::RBracket {
            return Err(self.error("`]`"));
        }
        self.bump();
        Ok(options)
    }

    /// An operand. `{…}` lists and parenthesised operands recurse, one level each (bounded by
    /// [`Parser::enter`]); this dispatcher and [`Parser::list`] are all the recursion keeps
    /// on the stack, the rest is in [`Parser::plain_operand`].
    fn operand(&mut self) -> Result<Operand, ParseError> {
        match self.peek() {
            Tok::LBrace => self.list(),
            Tok::LParen => self.parenthesised(),
            _ => self.plain_operand(),
        }
    }

    /// `{a, b, …}`: a literal array when every item is a constant.
    fn list(&mut self) -> Result<Operand, ParseError> {
        self.enter()?;
        self.bump();
        let mut items = Vec::new();
        if *self.peek() != Tok::RBrace {
            loop {
                items.push(self.operand()?);
                match self.peek() {
                    Tok::Comma => {
                        self.bump();
                    }
                    Tok::RBrace => break,
                    _ => return Err(self.error("`,` or `}`")),
                }
            }
        }
        self.bump();
        self.depth -= 1;
        Ok(list_operand(items))
    }

    /// A parenthesised key path, as context expressions write `(event.x)[LAST]`.
    fn parenthesised(&mut self) -> Result<Operand, ParseError> {
        self.enter()?;
        self.bump();
        let inner = self.operand()?;
        if *self.peek() != Tok::RParen {
            return Err(self.error("`)`"));
        }
        self.bump();
        self.depth -= 1;
        match inner {
            Operand::Path { var, mut keys } => {
                self.suffixes(&mut keys)?;
                Ok(Operand::Path { var, keys })
            }
            other => Ok(other),
        }
    }

    /// A string, number, constant or key path.
    #[inline(never)]
    fn plain_operand(&mut self) -> Result<Operand, ParseError> {
        let operand = match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Operand::Literal(serde_json::Value::String(s))
            }
            Tok::Num(n) => {
                self.bump();
                Operand::Literal(
                    serde_json::Number::from_f64(n)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number),
                )
            }
            Tok::Var(name) => {
                self.bump();
                let mut keys = Vec::new();
                self.suffixes(&mut keys)?;
                Operand::Path {
                    var: Some(name),
                    keys,
                }
            }
            Tok::Ident(word) => {
                let upper = word.to_ascii_uppercase();
                let constant = match upper.as_str() {
                    "NIL" | "NULL" => Some(Operand::Literal(serde_json::Value::Null)),
                    "TRUE" | "YES" => Some(Operand::Literal(serde_json::Value::Bool(true))),
                    "FALSE" | "NO" => Some(Operand::Literal(serde_json::Value::Bool(false))),
                    "AND" | "OR" | "NOT" | "IN" | "BEGINSWITH" | "ENDSWITH" | "CONTAINS"
                    | "LIKE" | "MATCHES" | "ANY" | "ALL" | "NONE" | "SOME" => {
                        return Err(self.error("an operand"));
                    }
                    _ => None,
                };
                self.bump();
                match constant {
                    Some(c) => c,
                    None => {
                        let mut keys = vec![Key::Name(word)];
                        self.suffixes(&mut keys)?;
                        Operand::Path { var: None, keys }
                    }
                }
            }
            _ => return Err(self.error("an operand (key path, string, number, nil or {…})")),
        };
        Ok(operand)
    }

    /// `.key`, `."quoted key"`, `.@count`, `[LAST]` … after a path start.
    fn suffixes(&mut self, keys: &mut Vec<Key>) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    match self.bump() {
                        Tok::Ident(name) | Tok::Str(name) => keys.push(Key::Name(name)),
                        Tok::At(name) if name.eq_ignore_ascii_case("count") => {
                            keys.push(Key::Count)
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error("a key name after `.`"));
                        }
                    }
                }
                Tok::LBracket => {
                    // `[c]` after an operand belongs to the operator, never to a path.
                    let index = match self.tokens.get(self.pos + 1).map(|(t, _)| t) {
                        Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("LAST") => Key::Last,
                        Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("FIRST") => Key::First,
                        Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("SIZE") => Key::Size,
                        Some(Tok::Num(n)) if *n >= 0.0 && n.fract() == 0.0 => {
                            Key::Index(*n as usize)
                        }
                        _ => return Ok(()),
                    };
                    self.bump();
                    self.bump();
                    if *self.peek() != Tok::RBracket {
                        return Err(self.error("`]`"));
                    }
                    self.bump();
                    keys.push(index);
                }
                _ => return Ok(()),
            }
        }
    }
}

/// `{…}` items as one operand: a literal array, built once, when all are constants.
fn list_operand(items: Vec<Operand>) -> Operand {
    if items.iter().all(|i| matches!(i, Operand::Literal(_))) {
        Operand::Literal(serde_json::Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Operand::Literal(v) => v,
                    _ => serde_json::Value::Null,
                })
                .collect(),
        ))
    } else {
        Operand::List(items)
    }
}
