//! Jamf Protect custom analytics in their YAML export format: loading, validating, and
//! reporting a broken filter with the file's own line and column.
//!
//! The file is the admin's (or whoever could write it): before yaml-rust2 builds its tree
//! (its loader recurses once per level of nesting, and copies the value of an anchor at
//! every alias), the file is scanned with the event parser, iteratively, and refused past
//! [`MAX_ANALYTIC_BYTES`], [`MAX_YAML_DEPTH`] or [`MAX_YAML_NODES`], or if it uses an alias.

use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Largest analytic file accepted: the bundled ones are under 2 KiB. Bounds the work and
/// memory of one analytic (its filter's tokens, its tree, its YAML).
pub const MAX_ANALYTIC_BYTES: usize = 64 << 10;

/// Deepest YAML nesting (sequences and mappings) accepted: an analytic needs 3 (`context`
/// entries' `exprs`). Bounds the loader's recursion and the drop of its tree.
pub const MAX_YAML_DEPTH: usize = 16;

/// YAML values (scalars, sequences, mappings) accepted in one file.
pub const MAX_YAML_NODES: usize = 4096;

use crate::parser::{Operand, Predicate};
use crate::pattern::Regexes;

/// One loaded analytic.
#[derive(Debug, Clone)]
pub struct Analytic {
    /// `name`: the finding's rule id.
    pub name: String,
    /// `inputType`, e.g. `GPProcessEvent`.
    pub input_type: String,
    /// `severity` (Informational, Low, Medium, High).
    pub severity: String,
    /// `level`: lower levels run first; higher levels read their tags and context.
    pub level: i64,
    /// `tags` (Jamf-managed analytics put ATT&CK ids here).
    pub tags: Vec<String>,
    /// `categories`.
    pub categories: Vec<String>,
    /// `MitreCategories`.
    pub mitre: Vec<String>,
    /// `shortDescription` (or the label).
    pub description: String,
    /// The parsed `filter`.
    pub filter: Predicate,
    /// `context`: named values to extract when the analytic fires.
    pub context: Vec<(String, Vec<Operand>)>,
}

/// Why an analytic file was not loaded, with the position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticError {
    /// 1-based line in the file.
    pub line: usize,
    /// 1-based column in the file.
    pub column: usize,
    /// What was wrong.
    pub message: String,
    /// The analytic's `name`, when the file got that far.
    pub name: Option<String>,
}

impl fmt::Display for AnalyticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for AnalyticError {}

fn strings(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Maps offsets in a folded plain-scalar `filter:` value back to file positions.
struct FilterMap {
    /// (offset in the folded value, file line, file column) at the start of each piece.
    pieces: Vec<(usize, usize, usize)>,
}

impl FilterMap {
    /// Rebuilds the folded value from the file text; `None` if the filter is not written as
    /// a plain scalar starting on the `filter:` line (then positions are filter-relative).
    fn new(file: &str, value: &str) -> Option<Self> {
        let lines: Vec<&str> = file.lines().collect();
        let start = lines.iter().position(|l| l.starts_with("filter:"))?;
        let first = lines.get(start)?;
        let rest = first.get("filter:".len()..)?;
        let lead = rest.len() - rest.trim_start().len();
        let mut pieces = vec![(0, start + 1, "filter:".len() + lead + 1)];
        let mut folded = rest.trim().to_owned();
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            if line.trim().is_empty() || !line.starts_with([' ', '\t']) {
                break;
            }
            let indent = line.len() - line.trim_start().len();
            folded.push(' ');
            pieces.push((folded.len(), i + 1, indent + 1));
            folded.push_str(line.trim());
        }
        (folded == value).then_some(Self { pieces })
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let (base, line, column) = self
            .pieces
            .iter()
            .rev()
            .find(|(o, _, _)| *o <= offset)
            .copied()
            .unwrap_or((0, 1, 1));
        (line, column + (offset - base))
    }
}

fn yaml_error(marker: yaml_rust2::scanner::Marker, message: String) -> AnalyticError {
    AnalyticError {
        line: marker.line(),
        column: marker.col() + 1,
        message,
        name: None,
    }
}

/// Checks the YAML's shape with the event parser (no recursion, nothing built) before it is
/// loaded: size, nesting, number of values, no aliases.
fn check_yaml(text: &str) -> Result<(), AnalyticError> {
    if text.len() > MAX_ANALYTIC_BYTES {
        return Err(AnalyticError {
            line: 1,
            column: 1,
            message: format!(
                "the file is {} bytes, over the {MAX_ANALYTIC_BYTES}-byte limit for an analytic",
                text.len()
            ),
            name: None,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let (mut depth, mut nodes) = (0usize, 0usize);
    loop {
        let (event, marker) = parser
            .next_token()
            .map_err(|e| yaml_error(*e.marker(), format!("invalid YAML: {}", e.info())))?;
        match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err(yaml_error(
                        marker,
                        format!("YAML nested deeper than {MAX_YAML_DEPTH} levels"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Alias(_) => {
                return Err(yaml_error(
                    marker,
                    "YAML aliases (`*name`) are not accepted in analytics".into(),
                ));
            }
            _ => {}
        }
        if matches!(
            event,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            nodes += 1;
            if nodes > MAX_YAML_NODES {
                return Err(yaml_error(
                    marker,
                    format!("more than {MAX_YAML_NODES} YAML values"),
                ));
            }
        }
    }
}

/// Parses one analytic file's text, compiling its filter's `MATCHES` patterns now.
pub fn parse_analytic(text: &str) -> Result<Analytic, AnalyticError> {
    parse_analytic_with(text, Regexes::AtParse)
}

/// Parses one analytic file's text, compiling its filter's `MATCHES` patterns when
/// `regexes` says.
pub fn parse_analytic_with(text: &str, regexes: Regexes) -> Result<Analytic, AnalyticError> {
    check_yaml(text)?;
    let docs = YamlLoader::load_from_str(text).map_err(|e| AnalyticError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: format!("invalid YAML: {}", e.info()),
        name: None,
    })?;
    let doc = docs.first().ok_or_else(|| AnalyticError {
        line: 1,
        column: 1,
        message: "empty file".into(),
        name: None,
    })?;
    let field = |key: &str| &doc[key];
    let required = |key: &str| -> Result<String, AnalyticError> {
        field(key)
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AnalyticError {
                line: 1,
                column: 1,
                message: format!("missing or non-text `{key}`"),
                name: None,
            })
    };
    let name = required("name")?;
    let input_type = required("inputType")?;
    let filter_text = required("filter")?;
    let filter = Predicate::parse_with(&filter_text, regexes).map_err(|e| {
        let (line, column) = FilterMap::new(text, &filter_text)
            .map(|m| m.position(e.offset))
            .unwrap_or((e.line, e.column));
        AnalyticError {
            line,
            column,
            message: format!("filter: expected {}, found {}", e.expected, e.found),
            name: Some(name.clone()),
        }
    })?;
    let mut context = Vec::new();
    if let Yaml::Array(entries) = field("context") {
        for entry in entries {
            let label = entry["name"].as_str().unwrap_or("").to_owned();
            let mut exprs = Vec::new();
            for expr in strings(&entry["exprs"]) {
                let operand = Predicate::parse_operand(&expr).map_err(|e| AnalyticError {
                    line: 1,
                    column: 1,
                    message: format!("context `{label}` expression {expr:?}: {e}"),
                    name: Some(name.clone()),
                })?;
                exprs.push(operand);
            }
            context.push((label, exprs));
        }
    }
    Ok(Analytic {
        name,
        input_type,
        severity: field("severity")
            .as_str()
            .unwrap_or("Informational")
            .to_owned(),
        level: field("level").as_i64().unwrap_or(0),
        tags: strings(field("tags")),
        categories: strings(field("categories")),
        mitre: strings(field("MitreCategories")),
        description: field("shortDescription")
            .as_str()
            .or(field("label").as_str())
            .unwrap_or("")
            .to_owned(),
        filter,
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_filter_is_reported_at_its_file_position() {
        let text = "---\nname: Broken\ninputType: GPProcessEvent\nfilter: $event.type == 1 AND\n  $event.process.path == \"/bin/sh\" $event.type == 2\nseverity: Low\n";
        let err = parse_analytic(text).unwrap_err();
        assert_eq!((err.line, err.column), (5, 36), "{err}");
        assert!(
            err.message
                .contains("expected AND, OR or the end of the filter, found `$event`"),
            "{err}"
        );
    }

    #[test]
    fn fields_and_context_load() {
        let text = "name: A\ninputType: GPFSEvent\nfilter: $event.path ENDSWITH \".plist\"\nseverity: Medium\nlevel: 0\ntags:\n  - T1543.001\ncontext:\n  - exprs:\n      - (event.process.args)[LAST]\n    name: Last\n";
        let a = parse_analytic(text).unwrap();
        assert_eq!(
            (a.name.as_str(), a.severity.as_str(), a.tags.as_slice()),
            ("A", "Medium", &["T1543.001".to_owned()][..])
        );
        assert_eq!(a.context.len(), 1);
    }

    #[test]
    fn missing_keys_and_bad_yaml_are_errors() {
        assert!(
            parse_analytic("name: A\nfilter: $event.type == 1\n")
                .unwrap_err()
                .message
                .contains("inputType")
        );
        assert!(
            parse_analytic("name: [unclosed\n")
                .unwrap_err()
                .message
                .contains("invalid YAML")
        );
    }
}
