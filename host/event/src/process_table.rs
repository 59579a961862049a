//! The process table: every process image the stream has shown, keyed by
//! `(pid, pidversion)`, so plugins can ask for parents and responsible processes.

use crate::model::{AuditToken, EventPayload, Message, Process};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Default number of process images kept.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Arguments kept per process image.
pub const MAX_ARGS: usize = 256;
/// Longest ancestry chain returned.
pub const MAX_ANCESTRY: usize = 32;

/// Events an exited image is kept for, so late events (its children's exits, file closes
/// flushed after exit) still resolve it.
pub const DEFAULT_EXIT_GRACE: u64 = 10_000;

/// Bounded map of process images. An exited image expires [`DEFAULT_EXIT_GRACE`] events
/// after its exit; when capacity forces an eviction earlier, exited images go first, then
/// the oldest.
#[derive(Debug)]
pub struct ProcessTable {
    entries: HashMap<(i32, i32), Entry>,
    order: VecDeque<(i32, i32)>,
    /// (image, event count at its exit), oldest first.
    exited: VecDeque<((i32, i32), u64)>,
    capacity: usize,
    exit_grace: u64,
    seen: u64,
}

#[derive(Debug)]
struct Entry {
    process: Arc<Process>,
    args: Option<Arc<[String]>>,
    exited: bool,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ProcessTable {
    /// A table holding at most `capacity` images.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            exited: VecDeque::new(),
            capacity: capacity.max(1),
            exit_grace: DEFAULT_EXIT_GRACE,
            seen: 0,
        }
    }

    /// Sets how many events an exited image is kept for.
    pub fn with_exit_grace(mut self, events: u64) -> Self {
        self.exit_grace = events;
        self
    }

    /// Number of images held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Feeds one message: records every process object it carries and marks exits.
    pub fn observe(&mut self, msg: &Message) {
        self.seen += 1;
        self.expire();
        self.upsert(&msg.process);
        match &msg.event {
            EventPayload::Exec(exec) => {
                self.upsert(&exec.target);
                if let Some(entry) = self.entries.get_mut(&exec.target.audit_token.key()) {
                    entry.args = Some(exec.args.iter().take(MAX_ARGS).cloned().collect());
                }
            }
            EventPayload::Fork(fork) => self.upsert(&fork.child),
            EventPayload::Signal(sig) => self.upsert(&sig.target),
            EventPayload::Exit(_) => self.mark_exited(msg.process.audit_token),
            _ => {}
        }
    }

    fn upsert(&mut self, process: &Process) {
        let key = process.audit_token.key();
        if let Some(entry) = self.entries.get_mut(&key) {
            // Most sightings repeat what the table holds; only copy when a fact changed
            // (ppid after reparenting, or lineage a sparser record had left out).
            let known = &entry.process;
            let same = known.ppid == process.ppid
                && (process.parent_audit_token.is_none()
                    || known.parent_audit_token == process.parent_audit_token)
                && (process.responsible_audit_token.is_none()
                    || known.responsible_audit_token == process.responsible_audit_token);
            if !entry.exited && !same {
                // Fresher facts win, but never lose lineage a sparser record leaves out.
                let mut fresh = process.clone();
                fresh.parent_audit_token = fresh
                    .parent_audit_token
                    .or(entry.process.parent_audit_token);
                fresh.responsible_audit_token = fresh
                    .responsible_audit_token
                    .or(entry.process.responsible_audit_token);
                entry.process = Arc::new(fresh);
            }
            return;
        }
        self.make_room();
        self.entries.insert(
            key,
            Entry {
                process: Arc::new(process.clone()),
                args: None,
                exited: false,
            },
        );
        self.order.push_back(key);
    }

    fn mark_exited(&mut self, token: AuditToken) {
        let key = token.key();
        if let Some(entry) = self.entries.get_mut(&key)
            && !entry.exited
        {
            entry.exited = true;
            self.exited.push_back((key, self.seen));
        }
    }

    /// Drops exited images whose grace has run out.
    fn expire(&mut self) {
        while let Some(&(key, at)) = self.exited.front() {
            if self.seen.saturating_sub(at) <= self.exit_grace {
                break;
            }
            self.exited.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.exited) {
                self.entries.remove(&key);
            }
        }
    }

    fn make_room(&mut self) {
        while self.entries.len() >= self.capacity {
            let victim = self
                .exited
                .pop_front()
                .map(|(key, _)| key)
                .or_else(|| self.order.pop_front());
            match victim {
                Some(key) => {
                    self.entries.remove(&key);
                }
                None => break,
            }
        }
        // Keep the order queue from growing with keys already evicted.
        if self.order.len() > self.capacity * 2 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Approximate heap bytes held: entries, strings, argv and the bookkeeping queues.
    pub fn approx_bytes(&self) -> usize {
        let file =
            |f: &crate::model::File| f.path.capacity() + std::mem::size_of::<crate::model::Stat>();
        let per_entry = std::mem::size_of::<((i32, i32), Entry)>() + 8;
        let mut total = self.entries.capacity() * per_entry
            + self.order.capacity() * std::mem::size_of::<(i32, i32)>()
            + self.exited.capacity() * std::mem::size_of::<((i32, i32), u64)>();
        for entry in self.entries.values() {
            let p = &entry.process;
            total += std::mem::size_of::<Process>()
                + 16
                + file(&p.executable)
                + p.tty.as_ref().map_or(0, file)
                + [&p.cdhash, &p.signing_id, &p.team_id, &p.start_time]
                    .iter()
                    .map(|s| s.as_ref().map_or(0, String::capacity))
                    .sum::<usize>()
                + p.executable.stat.as_ref().map_or(0, |s| {
                    s.st_mtimespec.as_ref().map_or(0, String::capacity)
                        + s.st_birthtimespec.as_ref().map_or(0, String::capacity)
                });
            if let Some(args) = &entry.args {
                total += 16
                    + args
                        .iter()
                        .map(|a| a.capacity() + std::mem::size_of::<String>())
                        .sum::<usize>();
            }
        }
        total
    }

    /// The image with this identity.
    pub fn get(&self, token: &AuditToken) -> Option<Arc<Process>> {
        self.entries
            .get(&token.key())
            .map(|e| Arc::clone(&e.process))
    }

    /// The argv the image was exec'd with, if the table saw its exec.
    pub fn args(&self, token: &AuditToken) -> Option<Arc<[String]>> {
        self.entries.get(&token.key()).and_then(|e| e.args.clone())
    }

    /// True if the image has exited.
    pub fn has_exited(&self, token: &AuditToken) -> bool {
        self.entries.get(&token.key()).is_some_and(|e| e.exited)
    }

    /// The parent of `process`, by its parent audit token.
    pub fn parent(&self, process: &Process) -> Option<Arc<Process>> {
        process
            .parent_audit_token
            .as_ref()
            .and_then(|t| self.get(t))
    }

    /// The process TCC holds responsible for `process`.
    pub fn responsible(&self, process: &Process) -> Option<Arc<Process>> {
        process
            .responsible_audit_token
            .as_ref()
            .and_then(|t| self.get(t))
    }

    /// Parents of `token`, nearest first, at most `max_depth` (capped at [`MAX_ANCESTRY`]);
    /// stops at the first unknown parent or a cycle.
    pub fn ancestors(&self, token: &AuditToken, max_depth: usize) -> Vec<Arc<Process>> {
        let limit = max_depth.min(MAX_ANCESTRY);
        let mut chain: Vec<Arc<Process>> = Vec::new();
        let mut current = self.get(token);
        while let Some(p) = current {
            if chain.len() >= limit {
                break;
            }
            let parent = self.parent(&p);
            match parent {
                Some(parent) if parent.audit_token != p.audit_token => {
                    if chain.iter().any(|c| c.audit_token == parent.audit_token) {
                        break;
                    }
                    chain.push(Arc::clone(&parent));
                    current = Some(parent);
                }
                _ => break,
            }
        }
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_line;

    fn fork(parent: (i32, i32), child: (i32, i32)) -> Message {
        let line = format!(
            r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}},"event":{{"fork":{{"child":{{"audit_token":{{"pid":{},"pidversion":{}}},"parent_audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}}}}}}}}"#,
            parent.0, parent.1, child.0, child.1, parent.0, parent.1
        );
        parse_line(line.as_bytes(), 1 << 20).unwrap()
    }

    fn exit(who: (i32, i32)) -> Message {
        let line = format!(
            r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":{},"pidversion":{}}},"executable":{{"path":"/bin/sh"}}}},"event":{{"exit":{{"stat":0}}}}}}"#,
            who.0, who.1
        );
        parse_line(line.as_bytes(), 1 << 20).unwrap()
    }

    #[test]
    fn capacity_is_a_hard_bound_and_exited_images_go_first() {
        let mut table = ProcessTable::new(4);
        table.observe(&fork((1, 1), (2, 2)));
        table.observe(&fork((2, 2), (3, 3)));
        table.observe(&exit((3, 3)));
        assert_eq!(table.len(), 3);
        table.observe(&fork((2, 2), (4, 4)));
        table.observe(&fork((2, 2), (5, 5)));
        assert_eq!(table.len(), 4);
        let t = |pid| AuditToken {
            pid,
            pidversion: pid,
            ..AuditToken::default()
        };
        assert!(
            table.get(&t(3)).is_none(),
            "the exited image was evicted first"
        );
        assert!(table.get(&t(1)).is_some() && table.get(&t(5)).is_some());
        for i in 10..1000 {
            table.observe(&fork((2, 2), (i, i)));
        }
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn exited_images_expire_after_the_grace() {
        let mut table = ProcessTable::new(100).with_exit_grace(3);
        let t = |pid| AuditToken {
            pid,
            pidversion: pid,
            ..AuditToken::default()
        };
        table.observe(&fork((1, 1), (2, 2)));
        table.observe(&exit((2, 2)));
        assert!(table.has_exited(&t(2)));
        for i in 10..13 {
            table.observe(&fork((1, 1), (i, i)));
        }
        assert!(table.get(&t(2)).is_some(), "still within the grace");
        table.observe(&fork((1, 1), (20, 20)));
        assert!(table.get(&t(2)).is_none(), "expired");
        assert!(table.get(&t(12)).is_some(), "live images never expire");
    }

    #[test]
    fn ancestry_stops_at_unknown_parents_depth_and_cycles() {
        let mut table = ProcessTable::default();
        table.observe(&fork((1, 1), (2, 2)));
        table.observe(&fork((2, 2), (3, 3)));
        table.observe(&fork((3, 3), (4, 4)));
        let t = |pid| AuditToken {
            pid,
            pidversion: pid,
            ..AuditToken::default()
        };
        let chain: Vec<i32> = table
            .ancestors(&t(4), 32)
            .iter()
            .map(|p| p.audit_token.pid)
            .collect();
        assert_eq!(chain, [3, 2, 1]);
        assert_eq!(table.ancestors(&t(4), 2).len(), 2);
        // A cycle (corrupt input) terminates.
        table.observe(&fork((4, 4), (1, 1)));
        assert!(table.ancestors(&t(4), 32).len() <= 4);
    }
}
