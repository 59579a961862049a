//! The process table: every process image the stream has shown, keyed by
//! `(pid, pidversion)`, so plugins can ask for parents and responsible processes.
//!
//! The stream is written by whoever runs on the Mac, so the table is bounded three ways:
//! by count ([`DEFAULT_CAPACITY`]), by bytes per image (argv, paths and identity strings are
//! cut, see [`Argv`] and [`MAX_IMAGE_BYTES`]) and by bytes in all ([`DEFAULT_BYTE_BUDGET`]),
//! kept as a running count. What it evicts under pressure is chosen so that churn cannot
//! erase an attacker's lineage: images that ended (exited, or replaced by an exec) and that
//! no live image descends from go first, then the least recently seen live leaves, and the
//! ancestors of live images only as a last resort. Every operation is O(log n) amortised.

mod image;
mod order;

pub use image::{Argv, MAX_ARGS, MAX_ARGS_BYTES, MAX_FIELD_BYTES, MAX_IMAGE_BYTES, MAX_PATH_BYTES};

use crate::model::{AuditToken, EventPayload, Message, Process};
use image::ENTRY_OVERHEAD;
use order::{Class, Key, Order, Stamp};
use std::collections::HashMap;
use std::sync::Arc;

/// Default number of process images kept.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Longest ancestry chain returned.
pub const MAX_ANCESTRY: usize = 32;
/// Most descendants one [`ProcessTable::descendants`] returns.
pub const MAX_DESCENDANTS: usize = 1024;

/// Default bound on the bytes the table holds in all (images, argv, bookkeeping), so a
/// stream of large command lines cannot grow the agent past it. Typical images cost under
/// 1 KiB, so [`DEFAULT_CAPACITY`] images fit in a fraction of it; images padded to the
/// per-image caps ([`MAX_IMAGE_BYTES`], ~87 KiB each) are evicted once it is reached.
pub const DEFAULT_BYTE_BUDGET: usize = 256 * 1024 * 1024;

/// Events an exited image is kept for, so late events (its children's exits, file closes
/// flushed after exit) still resolve it.
pub const DEFAULT_EXIT_GRACE: u64 = 10_000;

/// Bounded map of process images. An image that exited, or that an exec of its pid
/// replaced ("retired"), expires [`DEFAULT_EXIT_GRACE`] events after it ended unless a
/// live image descends from it; when the count or byte bound forces an eviction earlier,
/// see the module documentation for the order.
#[derive(Debug)]
pub struct ProcessTable {
    entries: HashMap<Key, Entry>,
    order: Order,
    capacity: usize,
    byte_budget: usize,
    exit_grace: u64,
    /// Events observed.
    seen: u64,
    /// Next image id: tells a re-inserted key from the image that held it before.
    next_uid: u64,
    /// Bytes accounted to the images held (each image's [`Entry::bytes`]).
    bytes: usize,
    evictions: Evictions,
}

/// Images evicted before their time, by what they were: a count of lineage lost to
/// pressure (expiry after the grace is not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Exited or retired images nothing live descended from.
    pub ended: u64,
    /// Live images with no live descendant.
    pub leaves: u64,
    /// Ancestors of live images: each one cut a live image's ancestry.
    pub ancestors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    /// Saw its exit.
    Exited,
    /// An exec of the same pid replaced it.
    Retired,
}

#[derive(Debug)]
struct Entry {
    process: Arc<Process>,
    argv: Option<Argv>,
    status: Status,
    uid: u64,
    /// Children that count here: each is live or has such children itself, and names this
    /// image as its parent.
    pins: usize,
    /// The parent (key and uid) this image counts in, while it is needed.
    up: Option<(Key, u64)>,
    /// Event count when it exited or was retired.
    ended_at: u64,
    /// Event count when it was last seen.
    last_seen: u64,
    /// The order set it is in.
    class: Class,
    /// Bytes accounted to it: [`ENTRY_OVERHEAD`], its record, its argv.
    bytes: usize,
}

impl Entry {
    /// Live, or a live image descends from it.
    fn needed(&self) -> bool {
        self.status == Status::Live || self.pins > 0
    }

    fn class_now(&self) -> Class {
        if self.pins > 0 {
            Class::Ancestor
        } else if self.status == Status::Live {
            Class::Leaf
        } else {
            Class::Ended
        }
    }

    fn stamp(&self) -> Stamp {
        match self.class {
            Class::Ended => (self.ended_at, self.uid),
            Class::Leaf | Class::Ancestor => (self.last_seen, self.uid),
        }
    }
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// Most sightings repeat what the table holds; only copy when a fact changed (ppid after
/// reparenting, or lineage a sparser record had left out).
fn same_facts(known: &Process, seen: &Process) -> bool {
    known.ppid == seen.ppid
        && (seen.parent_audit_token.is_none()
            || known.parent_audit_token == seen.parent_audit_token)
        && (seen.responsible_audit_token.is_none()
            || known.responsible_audit_token == seen.responsible_audit_token)
}

impl ProcessTable {
    /// A table holding at most `capacity` images within [`DEFAULT_BYTE_BUDGET`].
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: Order::default(),
            capacity: capacity.max(1),
            byte_budget: DEFAULT_BYTE_BUDGET,
            exit_grace: DEFAULT_EXIT_GRACE,
            seen: 0,
            next_uid: 0,
            bytes: 0,
            evictions: Evictions::default(),
        }
    }

    /// Sets how many events an exited image is kept for.
    pub fn with_exit_grace(mut self, events: u64) -> Self {
        self.exit_grace = events;
        self
    }

    /// Sets the bound on the bytes held in all (see [`ProcessTable::accounted_bytes`]);
    /// never below [`MAX_IMAGE_BYTES`], so one image always fits.
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = bytes.max(MAX_IMAGE_BYTES);
        self
    }

    /// The bound on [`ProcessTable::accounted_bytes`].
    pub fn byte_budget(&self) -> usize {
        self.byte_budget
    }

    /// The bound on [`ProcessTable::len`].
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of images held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Images evicted under pressure so far.
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// Feeds one message: records every process object it carries, retires the image an
    /// exec replaced and marks exits.
    pub fn observe(&mut self, msg: &Message) {
        self.seen += 1;
        self.expire();
        let actor = msg.process.audit_token.key();
        self.sight(&msg.process, None, None);
        match &msg.event {
            EventPayload::Exec(exec) => {
                let target = exec.target.audit_token.key();
                self.birth(&exec.target, Some(&exec.args), actor);
                if target.0 == actor.0 && target != actor {
                    self.end(actor, Status::Retired);
                }
            }
            EventPayload::Fork(fork) => self.birth(&fork.child, None, actor),
            EventPayload::Signal(sig) => self.sight(&sig.target, None, Some(actor)),
            EventPayload::Exit(_) => self.end(actor, Status::Exited),
            _ => {}
        }
    }

    /// A fork child or exec target. An image the table saw end being born again means the
    /// stream is replayed (the kernel never reuses a pidversion): start it afresh.
    fn birth(&mut self, process: &Process, args: Option<&[String]>, actor: Key) {
        let key = process.audit_token.key();
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.status != Status::Live)
        {
            self.remove(key);
        }
        self.sight(process, args, Some(actor));
    }

    /// Records a sighting of `process` (with the argv it was exec'd with, for an exec
    /// target); never evicts `protect` (the event's actor) to make room.
    fn sight(&mut self, process: &Process, args: Option<&[String]>, protect: Option<Key>) {
        let key = process.audit_token.key();
        if self.entries.contains_key(&key) {
            self.refresh(key, process, args);
        } else {
            self.insert(key, process, args, protect);
        }
    }

    fn insert(
        &mut self,
        key: Key,
        process: &Process,
        args: Option<&[String]>,
        protect: Option<Key>,
    ) {
        let process = image::capped_process(process);
        let argv = args.map(Argv::new);
        let bytes =
            ENTRY_OVERHEAD + image::process_bytes(&process) + argv.as_ref().map_or(0, Argv::bytes);
        self.make_room(1, bytes, protect);
        let entry = Entry {
            process: Arc::new(process),
            argv,
            status: Status::Live,
            uid: self.next_uid,
            pins: 0,
            up: None,
            ended_at: 0,
            last_seen: self.seen,
            class: Class::Leaf,
            bytes,
        };
        self.next_uid += 1;
        self.order.insert(entry.class, entry.stamp(), key);
        self.entries.insert(key, entry);
        self.bytes += bytes;
        // Nothing counts in a fresh uid yet, so no link from here can close a cycle.
        self.link(key, false);
    }

    /// A sighting of an image already held: fresher facts (and a new argv) replace the
    /// old, the image moves to the back of its order and is linked to its parent if it was
    /// not yet.
    fn refresh(&mut self, key: Key, process: &Process, args: Option<&[String]>) {
        let Some(entry) = self.entries.get(&key) else {
            return;
        };
        let fresh =
            (entry.status == Status::Live && !same_facts(&entry.process, process)).then(|| {
                // Fresher facts win, but never lose lineage a sparser record leaves out.
                let mut fresh = image::capped_process(process);
                fresh.parent_audit_token = fresh
                    .parent_audit_token
                    .or(entry.process.parent_audit_token);
                fresh.responsible_audit_token = fresh
                    .responsible_audit_token
                    .or(entry.process.responsible_audit_token);
                fresh
            });
        let argv = args.map(Argv::new);
        if fresh.is_some() || argv.is_some() {
            let bytes = ENTRY_OVERHEAD
                + image::process_bytes(fresh.as_ref().unwrap_or(entry.process.as_ref()))
                + argv.as_ref().or(entry.argv.as_ref()).map_or(0, Argv::bytes);
            let grows = bytes.saturating_sub(entry.bytes);
            self.make_room(0, grows, Some(key));
            let Some(entry) = self.entries.get_mut(&key) else {
                return;
            };
            let old_parent = entry.process.parent_audit_token;
            if let Some(fresh) = fresh {
                entry.process = Arc::new(fresh);
            }
            if argv.is_some() {
                entry.argv = argv;
            }
            self.bytes = self.bytes.saturating_sub(entry.bytes) + bytes;
            entry.bytes = bytes;
            if entry.process.parent_audit_token != old_parent {
                let old = entry.up.take();
                self.release(old);
            }
        }
        // Link a needed image its parent does not count yet: its parent changed, or was
        // not held when the image was (the table started mid-stream, or evicted it).
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.up.is_none() && e.needed())
        {
            self.link(key, true);
        }
        self.reposition(key, true);
    }

    /// Counts a needed image in its parent, if the parent is held and still needed (an
    /// image nothing needs is never pinned again: that keeps [`Self::release`] amortised
    /// O(1)). A parent with the image's own pid is never real (exec chains, pid 0); with
    /// `check_cycle`, a link that would close a cycle of up to [`MAX_ANCESTRY`] images
    /// (corrupt input) is not made.
    fn link(&mut self, key: Key, check_cycle: bool) {
        let Some(entry) = self.entries.get(&key) else {
            return;
        };
        let Some(parent) = entry.process.parent_audit_token.map(|t| t.key()) else {
            return;
        };
        if parent.0 == key.0 || !entry.needed() || entry.up.is_some() {
            return;
        }
        let Some(uid) = self
            .entries
            .get(&parent)
            .filter(|p| p.needed())
            .map(|p| p.uid)
        else {
            return;
        };
        if check_cycle && self.leads_to(parent, key) {
            return;
        }
        if let Some(p) = self.entries.get_mut(&parent) {
            p.pins += 1;
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.up = Some((parent, uid));
        }
        self.reposition(parent, true);
    }

    /// True if `target` is `from` or among the images `from` counts in, within
    /// [`MAX_ANCESTRY`] steps.
    fn leads_to(&self, from: Key, target: Key) -> bool {
        let mut at = from;
        for _ in 0..MAX_ANCESTRY {
            if at == target {
                return true;
            }
            let next = self
                .entries
                .get(&at)
                .and_then(|e| e.up)
                .filter(|(k, uid)| self.entries.get(k).is_some_and(|p| p.uid == *uid));
            match next {
                Some((k, _)) => at = k,
                None => return false,
            }
        }
        false
    }

    /// An image stopped being needed: it no longer counts in the parent `link` names, which
    /// may stop being needed in turn, and so on up. Each step past the first ends an image's
    /// neededness for good, so the walk is amortised O(1) per image inserted.
    fn release(&mut self, mut link: Option<(Key, u64)>) {
        while let Some((key, uid)) = link.take() {
            let Some(parent) = self.entries.get_mut(&key) else {
                return;
            };
            if parent.uid != uid {
                return;
            }
            parent.pins = parent.pins.saturating_sub(1);
            if !parent.needed() {
                link = parent.up.take();
            }
            self.reposition(key, false);
        }
    }

    /// Marks an image exited or retired.
    fn end(&mut self, key: Key, status: Status) {
        let seen = self.seen;
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.status != Status::Live {
            return;
        }
        entry.status = status;
        entry.ended_at = seen;
        let released = if entry.needed() {
            None
        } else {
            entry.up.take()
        };
        self.reposition(key, false);
        self.release(released);
    }

    /// Puts an image in the order set its state calls for; `touch` moves a live image or an
    /// ancestor to the back (ended images keep their place: they expire by when they ended).
    fn reposition(&mut self, key: Key, touch: bool) {
        let seen = self.seen;
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let class = entry.class_now();
        let moved = touch && class != Class::Ended && entry.last_seen != seen;
        if class == entry.class && !moved {
            return;
        }
        self.order.remove(entry.class, entry.stamp());
        entry.class = class;
        if touch {
            entry.last_seen = seen;
        }
        self.order.insert(class, entry.stamp(), key);
    }

    /// Drops an image and its place in the order; its parent stops counting it.
    fn remove(&mut self, key: Key) -> Option<Class> {
        let entry = self.entries.remove(&key)?;
        self.order.remove(entry.class, entry.stamp());
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        self.release(entry.up);
        Some(entry.class)
    }

    /// Drops ended images whose grace has run out and that nothing live descends from.
    fn expire(&mut self) {
        while let Some((at, key)) = self.order.oldest_ended() {
            if self.seen.saturating_sub(at) <= self.exit_grace {
                break;
            }
            self.remove(key);
        }
    }

    /// Evicts until `entries` more images of `bytes` more fit, never `protect`.
    fn make_room(&mut self, entries: usize, bytes: usize, protect: Option<Key>) {
        while self.entries.len() + entries > self.capacity || self.bytes + bytes > self.byte_budget
        {
            let Some(victim) = self.order.victim(protect) else {
                break;
            };
            match self.remove(victim) {
                Some(Class::Ended) => self.evictions.ended += 1,
                Some(Class::Leaf) => self.evictions.leaves += 1,
                Some(Class::Ancestor) => self.evictions.ancestors += 1,
                None => break,
            }
        }
    }

    /// Bytes accounted to the images held: each image's record, strings and argv and its
    /// share of the bookkeeping. A running count, kept at or under
    /// [`ProcessTable::byte_budget`]. O(1).
    pub fn accounted_bytes(&self) -> usize {
        self.bytes
    }

    /// Approximate heap bytes held: [`ProcessTable::accounted_bytes`] plus the spare slots
    /// of the map (bounded by the capacity). O(1).
    pub fn approx_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Key, Entry)>() + 1;
        self.bytes + self.entries.capacity().saturating_sub(self.entries.len()) * slot
    }

    /// The image with this identity.
    pub fn get(&self, token: &AuditToken) -> Option<Arc<Process>> {
        self.entries
            .get(&token.key())
            .map(|e| Arc::clone(&e.process))
    }

    /// The argv the image was exec'd with, if the table saw its exec: at most [`MAX_ARGS`]
    /// arguments and [`MAX_ARGS_BYTES`] bytes (see [`ProcessTable::argv`] for the count).
    pub fn args(&self, token: &AuditToken) -> Option<Arc<[String]>> {
        self.argv(token).map(|a| a.kept)
    }

    /// The argv kept for the image, with the true argument count and whether it was cut.
    pub fn argv(&self, token: &AuditToken) -> Option<Argv> {
        self.entries.get(&token.key()).and_then(|e| e.argv.clone())
    }

    /// How many arguments the image was exec'd with (kept or not), if the table saw its
    /// exec.
    pub fn args_total(&self, token: &AuditToken) -> Option<usize> {
        self.entries
            .get(&token.key())
            .and_then(|e| e.argv.as_ref())
            .map(|a| a.total)
    }

    /// True if the image has exited.
    pub fn has_exited(&self, token: &AuditToken) -> bool {
        self.entries
            .get(&token.key())
            .is_some_and(|e| e.status == Status::Exited)
    }

    /// True if an exec of the same pid replaced the image.
    pub fn is_retired(&self, token: &AuditToken) -> bool {
        self.entries
            .get(&token.key())
            .is_some_and(|e| e.status == Status::Retired)
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

    /// The images that name `token` as their parent, their children, and so on, breadth
    /// first, at most `max` (capped at [`MAX_DESCENDANTS`]). One pass over the table to
    /// index children, then the walk: O(n) — for evidence and response, never per event.
    pub fn descendants(&self, token: &AuditToken, max: usize) -> Vec<Arc<Process>> {
        let limit = max.min(MAX_DESCENDANTS);
        let mut children: HashMap<Key, Vec<&Entry>> = HashMap::new();
        for entry in self.entries.values() {
            if let Some(parent) = &entry.process.parent_audit_token {
                children.entry(parent.key()).or_default().push(entry);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|e| e.uid);
        }
        let mut out: Vec<Arc<Process>> = Vec::new();
        let mut seen = std::collections::HashSet::from([token.key()]);
        let mut frontier = std::collections::VecDeque::from([token.key()]);
        while let Some(parent) = frontier.pop_front() {
            for child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
                if out.len() >= limit {
                    return out;
                }
                let key = child.process.audit_token.key();
                if seen.insert(key) {
                    frontier.push_back(key);
                    out.push(Arc::clone(&child.process));
                }
            }
        }
        out
    }

    /// Every image the table holds that has neither exited nor been replaced by an exec,
    /// in the order they were first seen. O(n): for a sweep after a new block, not per
    /// event.
    pub fn live(&self) -> Vec<Arc<Process>> {
        let mut live: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.status == Status::Live)
            .collect();
        live.sort_by_key(|e| e.uid);
        live.into_iter().map(|e| Arc::clone(&e.process)).collect()
    }
}

#[cfg(test)]
mod tests;
