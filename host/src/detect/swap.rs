//! Changing the detection stage's plugins while it runs: a new version swapped in between
//! chunks (the batch in hand is delivered to the version it was collected for, so no
//! event is lost or seen twice), a plugin taken out, a mode changed — the AUTH lane told
//! the same — and a new version on probation, rolled back to the one it replaced when it
//! faults or is too slow before its probation ends.

use std::time::Instant;

use crate::detect::auth_lane::Inbox;
use crate::detect::pipeline::{Pipeline, Routed};
use crate::forward::finding::FindingRecord;
use crate::sandbox::plugin::{Kind, Mode, Plugin};

/// Latency samples (calls) before a version on probation can be judged too slow.
const PROBATION_MIN_SAMPLES: u64 = 16;

/// A new version on probation.
pub struct Probation {
    /// The version it replaced, warm, to roll back to (`None`: a plugin new to the stage;
    /// rolling back removes it).
    previous: Option<Plugin>,
    until: Instant,
}

/// A change to the stage's plugins.
pub enum Change {
    /// Put this plugin in: a new version of one running (on probation), or a new one.
    Upsert(Box<Plugin>),
    /// Take this plugin out, by name.
    Remove(String),
    /// Set a plugin's mode.
    Mode(String, Mode),
}

impl Pipeline {
    /// Tells the AUTH lane, wherever it runs.
    fn tell_lane(&mut self, msg: Inbox) {
        match (&mut self.lane, &self.lane_inbox) {
            (Some(lane), _) => lane.apply(msg),
            (None, Some(inbox)) => {
                let _ = inbox.send(msg);
            }
            (None, None) => {}
        }
    }

    /// Applies `change` now, after delivering the batch in hand to the plugins it was
    /// collected for. Returns what was done, in one line, or why nothing was.
    pub fn apply(
        &mut self,
        change: Change,
        out: &mut Vec<FindingRecord>,
    ) -> Result<String, String> {
        self.flush(out);
        match change {
            Change::Upsert(plugin) => self.upsert(*plugin),
            Change::Remove(name) => {
                let at = self
                    .detectors
                    .iter()
                    .position(|d| d.plugin.name() == name)
                    .ok_or_else(|| format!("no plugin named `{name}` is running"))?;
                let gone = self.detectors.remove(at);
                self.tell_lane(Inbox::Remove(name.clone()));
                Ok(format!(
                    "unloaded {} {} ({})",
                    name,
                    gone.plugin.info().version,
                    gone.plugin.digest()
                ))
            }
            Change::Mode(name, mode) => {
                let d = self
                    .detectors
                    .iter_mut()
                    .find(|d| d.plugin.name() == name)
                    .ok_or_else(|| format!("no plugin named `{name}` is running"))?;
                d.plugin.mode = mode;
                self.tell_lane(Inbox::Mode(name.clone(), mode));
                Ok(format!("{name} is now {}", mode_name(mode)))
            }
        }
    }

    fn upsert(&mut self, plugin: Plugin) -> Result<String, String> {
        if plugin.kind() != Kind::Detector {
            return Err(format!(
                "{} is a {}: only detectors run in the detection stage",
                plugin.name(),
                plugin.kind()
            ));
        }
        let name = plugin.name().to_owned();
        self.tell_lane(Inbox::Upsert(Box::new(plugin.another_lane())));
        let until = Instant::now() + self.options.probation;
        let said = format!("{} {} ({})", name, plugin.info().version, plugin.digest());
        let routed = |plugin: Plugin, previous: Option<Plugin>| Routed {
            route: plugin.route().clone(),
            plugin,
            probation: Some(Probation { previous, until }),
        };
        match self.detectors.iter().position(|d| d.plugin.name() == name) {
            Some(at) => {
                let Some(slot) = self.detectors.get_mut(at) else {
                    return Err(format!("{name}: lost its place"));
                };
                let old = std::mem::replace(slot, routed(plugin, None));
                // A version replacing one still on probation keeps the last good one.
                let previous = match old.probation {
                    Some(p) if p.previous.is_some() => p.previous,
                    _ => Some(old.plugin),
                };
                if let Some(p) = slot.probation.as_mut() {
                    p.previous = previous;
                }
                Ok(format!("swapped in {said}, on probation"))
            }
            None => {
                self.detectors.push(routed(plugin, None));
                Ok(format!("loaded {said}, on probation"))
            }
        }
    }

    /// Ends the probations that are over and rolls back a version on probation that
    /// faulted or whose p99 time per event is over the budget. Called after each
    /// delivery; records each rollback as a finding of the agent.
    pub(super) fn judge_probations(&mut self, out: &mut Vec<FindingRecord>) {
        let now = Instant::now();
        let budget = self.options.probation_max_ns_per_event;
        let mut i = 0;
        while i < self.detectors.len() {
            let Some(d) = self.detectors.get_mut(i) else {
                break;
            };
            let Some(p) = &d.probation else {
                i += 1;
                continue;
            };
            let s = &d.plugin.stats;
            let p99 = s.ns_per_event.quantile(0.99);
            let why = if s.faults > 0 {
                Some(format!("{} fault(s) on probation", s.faults))
            } else if s.ns_per_event.count() >= PROBATION_MIN_SAMPLES && p99 > budget {
                Some(format!(
                    "p99 {p99} ns per event on probation, over the {budget} ns budget"
                ))
            } else {
                None
            };
            let Some(why) = why else {
                if now >= p.until {
                    tracing::info!(plugin = %d.plugin.name(), digest = %d.plugin.digest(), "probation passed");
                    d.probation = None;
                }
                i += 1;
                continue;
            };
            let name = d.plugin.name().to_owned();
            let failed = format!("{} ({})", d.plugin.info().version, d.plugin.digest());
            let previous = d.probation.take().and_then(|p| p.previous);
            *self.rollbacks.entry(name.clone()).or_default() += 1;
            let back = match previous {
                Some(prev) => {
                    let to = format!("{} ({})", prev.info().version, prev.digest());
                    self.tell_lane(Inbox::Upsert(Box::new(prev.another_lane())));
                    if let Some(d) = self.detectors.get_mut(i) {
                        d.route = prev.route().clone();
                        d.plugin = prev;
                    }
                    i += 1;
                    to
                }
                None => {
                    self.detectors.remove(i);
                    self.tell_lane(Inbox::Remove(name.clone()));
                    "nothing (it was new)".to_owned()
                }
            };
            tracing::error!(plugin = %name, failed = %failed, back_to = %back, reason = %why, "new version rolled back");
            out.push(FindingRecord::agent_notice(
                "plugin-rolled-back",
                "high",
                format!("new version {failed} of {name} rolled back to {back}: {why}"),
                vec![
                    ("rolled_back_plugin".into(), name),
                    ("failed_version".into(), failed),
                    ("back_to".into(), back),
                    ("reason".into(), why),
                ],
            ));
            self.findings += 1;
        }
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
        Mode::Disabled => "disabled",
    }
}
