//! `ward ctl`: one request to a running agent over its control socket, the answer as a
//! readable table (or, with `--json`, the answer's document as it came).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use crate::operate::control::{Request, ask};

/// Sends `request` to the agent at `socket` and prints its answer. Exit 1 if the agent
/// refused the request.
pub fn run(socket: &Path, request: Request, json: bool) -> anyhow::Result<ExitCode> {
    let answer = ask(socket, &request)?;
    if !answer.ok {
        eprintln!(
            "ward ctl: {}",
            answer
                .error
                .as_deref()
                .unwrap_or("the agent refused the request")
        );
        return Ok(ExitCode::from(1));
    }
    if json {
        println!("{}", serde_json::to_string(&answer.result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let text = match (&request, &answer.result) {
        (Request::Status, Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k:<16} {}", scalar(v)))
            .collect::<Vec<_>>()
            .join("\n"),
        (Request::Plugins, Value::Array(rows)) => table(
            rows,
            &[
                ("plugin", &["name"]),
                ("version", &["version"]),
                ("mode", &["mode"]),
                ("probation", &["on_probation"]),
                ("rollbacks", &["rollbacks"]),
                ("sha256", &["sha256"]),
                ("origin", &["origin"]),
            ],
        ),
        (Request::Stats, Value::Array(rows)) => table(
            rows,
            &[
                ("plugin", &["name"]),
                ("calls", &["stats", "calls"]),
                ("events", &["stats", "events"]),
                ("findings", &["stats", "results"]),
                ("ns/ev p50", &["stats", "ns_per_event", "p50_ns"]),
                ("ns/ev p99", &["stats", "ns_per_event", "p99_ns"]),
                ("errors", &["stats", "plugin_errors"]),
                ("traps", &["stats", "traps"]),
                ("timeouts", &["stats", "timeouts"]),
                ("mem hwm", &["stats", "memory_high_water"]),
                ("deadl. missed", &["stats", "deadlines_missed"]),
                ("version", &["version"]),
                ("sha256", &["sha256"]),
            ],
        ),
        (_, other) => scalar(other),
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn table(rows: &[Value], columns: &[(&str, &[&str])]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(_, path)| {
                    let mut v = row;
                    for key in *path {
                        v = v.get(key).unwrap_or(&Value::Null);
                    }
                    scalar(v)
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (head, _))| {
            cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([head.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, row: Vec<&str>| {
        let mut text = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    out.trim_end().to_owned()
}
