//! Tokens of the predicate language, each with its byte offset.

use crate::parser::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// `$name`.
    Var(String),
    /// A bare identifier or keyword (keywords are recognised by the parser).
    Ident(String),
    /// `@count` and friends.
    At(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Dot,
    /// Comparison operators and `&&` `||` `!`.
    Sym(&'static str),
    End,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Var(v) => format!("`${v}`"),
            Tok::Ident(i) => format!("`{i}`"),
            Tok::At(a) => format!("`@{a}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Num(n) => format!("number {n}"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::End => "end of filter".into(),
        }
    }
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<>", "<=", ">=", "=>", "=<", "&&", "||", "=", "<", ">", "!",
];

pub(crate) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((Tok::LParen, start)),
            b')' => out.push((Tok::RParen, start)),
            b'{' => out.push((Tok::LBrace, start)),
            b'}' => out.push((Tok::RBrace, start)),
            b'[' => out.push((Tok::LBracket, start)),
            b']' => out.push((Tok::RBracket, start)),
            b',' => out.push((Tok::Comma, start)),
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push((Tok::Dot, start))
            }
            b'"' | b'\'' => {
                let (s, end) = string(text, i, b)?;
                out.push((Tok::Str(s), start));
                i = end;
                continue;
            }
            b'$' | b'@' => {
                let end = ident_end(bytes, i + 1);
                let name = text.get(i + 1..end).unwrap_or("").to_owned();
                if name.is_empty() {
                    return Err(ParseError::at(
                        text,
                        start,
                        "a name",
                        &format!("`{}`", b as char),
                    ));
                }
                out.push((
                    if b == b'$' {
                        Tok::Var(name)
                    } else {
                        Tok::At(name)
                    },
                    start,
                ));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'.' | b'-' if number_start(bytes, i) => {
                let mut end = i + 1;
                while bytes
                    .get(end)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
                {
                    end += 1;
                }
                let lit = text.get(i..end).unwrap_or("");
                let n = lit
                    .parse::<f64>()
                    .map_err(|_| ParseError::at(text, start, "a number", &format!("`{lit}`")))?;
                out.push((Tok::Num(n), start));
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = ident_end(bytes, i);
                out.push((Tok::Ident(text.get(i..end).unwrap_or("").to_owned()), start));
                i = end;
                continue;
            }
            _ => {
                let rest = text.get(i..).unwrap_or("");
                match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                    Some(sym) => {
                        out.push((Tok::Sym(sym), start));
                        i += sym.len();
                        continue;
                    }
                    None => {
                        let c = rest.chars().next().unwrap_or('?');
                        return Err(ParseError::at(
                            text,
                            start,
                            "an operator, operand or `(`",
                            &format!("`{c}`"),
                        ));
                    }
                }
            }
        }
        i += 1;
    }
    out.push((Tok::End, text.len()));
    Ok(out)
}

fn number_start(bytes: &[u8], i: usize) -> bool {
    match bytes.get(i) {
        Some(b'-') => bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit()),
        Some(b'.') => bytes.get(i + 1).is_some_and(u8::is_ascii_digit),
        Some(c) => c.is_ascii_digit(),
        None => false,
    }
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        i += 1;
    }
    i
}

/// A quoted string starting at `start` (the quote); returns the value and the offset after
/// the closing quote. Backslash escapes `\\`, `\"`, `\'`, `\n`, `\t`; any other escaped
/// character is kept with its backslash (so regular expressions survive).
fn string(text: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = text.get(start + 1..).unwrap_or("").char_indices();
    while let Some((off, c)) = chars.next() {
        let at = start + 1 + off;
        if c == quote as char {
            return Ok((out, at + 1));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\'')) => out.push('\''),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(ParseError::at(
        text,
        start,
        "a closing quote",
        "end of filter",
    ))
}
