//! Routing: which detector sees which event, by subscription and host-side prefilter.
//!
//! Checked on the host before any guest call, so a detector subscribed to `exec` costs
//! nothing on the file-event firehose.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, Anchored, Input, StartKind};

use crate::sandbox::bindings::wit;

/// Bytes of prefilter patterns (prefixes, fragments and signing ids together) one plugin
/// may describe: the matchers are built from them once, and their size follows it.
pub const MAX_PREFILTER_BYTES: usize = 1 << 20;

/// A plugin's prefilter, compiled: each list is matched in one pass over the path (an
/// Aho-Corasick automaton, anchored at the start for prefixes) or one hash lookup, so its
/// cost per event does not grow with the number of entries.
#[derive(Debug, Clone)]
struct Prefilter {
    prefixes: Option<AhoCorasick>,
    contains: Option<AhoCorasick>,
    signing_ids: Option<HashSet<String>>,
}

fn automaton(patterns: &[String], anchored: bool) -> Result<Option<AhoCorasick>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let kind = if anchored {
        StartKind::Anchored
    } else {
        StartKind::Unanchored
    };
    AhoCorasick::builder()
        .start_kind(kind)
        .build(patterns)
        .map(Some)
        .map_err(|e| format!("prefilter cannot be compiled: {e}"))
}

/// The routing rule of one plugin, compiled from its `describe()`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `None` subscribes to every kind (`*`).
    kinds: Option<HashSet<String>>,
    prefilter: Option<Prefilter>,
}

impl Route {
    /// The route for a plugin's self-description; an error if its prefilter is over
    /// [`MAX_PREFILTER_BYTES`].
    pub fn new(info: &wit::PluginInfo) -> Result<Self, String> {
        let kinds = if info.subscriptions.iter().any(|k| k == "*") {
            None
        } else {
            Some(info.subscriptions.iter().cloned().collect())
        };
        let prefilter = match &info.prefilter {
            None => None,
            Some(p) => {
                let bytes: usize = [&p.path_prefixes, &p.path_contains, &p.signing_ids]
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(String::len)
                    .sum();
                if bytes > MAX_PREFILTER_BYTES {
                    return Err(format!(
                        "prefilter of {bytes} bytes (cap {MAX_PREFILTER_BYTES})"
                    ));
                }
                let compiled = Prefilter {
                    prefixes: automaton(&p.path_prefixes, true)?,
                    contains: automaton(&p.path_contains, false)?,
                    signing_ids: (!p.signing_ids.is_empty())
                        .then(|| p.signing_ids.iter().cloned().collect()),
                };
                let empty = compiled.prefixes.is_none()
                    && compiled.contains.is_none()
                    && compiled.signing_ids.is_none();
                (!empty).then_some(compiled)
            }
        };
        Ok(Self { kinds, prefilter })
    }

    /// True if the plugin subscribed to `kind`.
    pub fn subscribes(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(kind))
    }

    /// The event kinds subscribed to; `None` for all.
    pub fn kinds(&self) -> Option<&HashSet<String>> {
        self.kinds.as_ref()
    }

    /// True if `event` should be delivered: every non-empty list of the prefilter passes.
    pub fn accepts(&self, event: &wit::Event) -> bool {
        if !self.subscribes(&event.kind) {
            return false;
        }
        let Some(p) = &self.prefilter else {
            return true;
        };
        let path = primary_path(event);
        p.prefixes
            .as_ref()
            .is_none_or(|a| a.is_match(Input::new(path).anchored(Anchored::Yes)))
            && p.contains.as_ref().is_none_or(|a| a.is_match(path))
            && p.signing_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(actor(event).signing_id.as_deref().unwrap_or("")))
    }
}

/// The process that acted: the new image for `exec`, the event's process otherwise.
pub fn actor(event: &wit::Event) -> &wit::Process {
    match &event.data {
        wit::EventData::Exec(exec) => &exec.target,
        _ => &event.process,
    }
}

/// The path an event is about (the same definition as `ward_sdk::EventExt::primary_path`).
pub fn primary_path(event: &wit::Event) -> &str {
    use wit::EventData as D;
    match &event.data {
        D::Exec(e) => &e.target.executable.path,
        D::Open(e) => &e.file.path,
        D::Close(e) => &e.target.path,
        D::Create(e) => &e.path,
        D::Rename(e) => &e.destination_path,
        D::Unlink(e) => &e.target.path,
        D::Write(f) => &f.path,
        D::Setextattr(e) | D::Deleteextattr(e) => &e.target.path,
        D::Setmode(e) => &e.target.path,
        D::Mmap(e) => &e.source.path,
        D::UipcConnect(e) => &e.file.path,
        D::XpMalwareDetected(e) => &e.detected_path,
        D::BtmLaunchItem(e) => &e.item_url,
        _ => &event.process.executable.path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(subscriptions: &[&str], prefilter: Option<wit::Prefilter>) -> wit::PluginInfo {
        wit::PluginInfo {
            name: "p".into(),
            version: "1".into(),
            kind: wit::PluginKind::Detector,
            description: String::new(),
            subscriptions: subscriptions.iter().map(|s| (*s).to_owned()).collect(),
            prefilter,
            capabilities: vec![],
            config: vec![],
        }
    }

    fn exec(path: &str, signing_id: &str) -> wit::Event {
        let line = format!(
            r#"{{"version":10,"time":"t","process":{{"audit_token":{{"pid":1,"pidversion":1}},"executable":{{"path":"/bin/zsh"}}}},"event":{{"exec":{{"target":{{"audit_token":{{"pid":1,"pidversion":2}},"signing_id":"{signing_id}","executable":{{"path":"{path}"}}}},"args":[]}}}}}}"#
        );
        crate::ingest::convert::event(&ward_event::parse_line(line.as_bytes(), 1 << 20).unwrap())
    }

    #[test]
    fn subscriptions_and_prefilters_decide_delivery() {
        let ev = exec("/private/tmp/x", "com.apple.xattr");
        assert!(Route::new(&info(&["exec"], None)).unwrap().accepts(&ev));
        assert!(Route::new(&info(&["*"], None)).unwrap().accepts(&ev));
        assert!(!Route::new(&info(&["create"], None)).unwrap().accepts(&ev));
        assert!(!Route::new(&info(&[], None)).unwrap().accepts(&ev));

        let pf = |prefixes: &[&str], contains: &[&str], ids: &[&str]| wit::Prefilter {
            path_prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
            path_contains: contains.iter().map(|s| (*s).to_owned()).collect(),
            signing_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        };
        let route = |p| Route::new(&info(&["exec"], Some(p))).unwrap();
        assert!(route(pf(&["/private/"], &[], &[])).accepts(&ev));
        assert!(!route(pf(&["/usr/"], &[], &[])).accepts(&ev));
        assert!(route(pf(&[], &["tmp"], &[])).accepts(&ev));
        assert!(!route(pf(&[], &["Launch"], &[])).accepts(&ev));
        assert!(route(pf(&[], &[], &["com.apple.xattr"])).accepts(&ev));
        assert!(
            !route(pf(&["/private/"], &[], &["com.apple.curl"])).accepts(&ev),
            "every non-empty list must pass"
        );
        assert!(
            route(pf(&[], &[], &[])).accepts(&ev),
            "an empty prefilter matches all"
        );
    }

    /// Thousands of entries are matched in one pass (an automaton), not scanned per event;
    /// past the byte cap a prefilter is refused.
    #[test]
    fn large_prefilters_are_compiled_and_capped() {
        let prefixes: Vec<String> = (0..16_000).map(|i| format!("/opt/app{i}/")).collect();
        let contains: Vec<String> = (0..16_000).map(|i| format!("/frag{i}/")).collect();
        let p = wit::Prefilter {
            path_prefixes: prefixes.clone(),
            path_contains: contains,
            signing_ids: vec![],
        };
        let route = Route::new(&info(&["exec"], Some(p))).unwrap();
        assert!(route.accepts(&exec("/opt/app15999/x/frag7/bin", "x")));
        assert!(
            !route.accepts(&exec("/opt/app15999/x/bin", "x")),
            "no fragment"
        );
        assert!(
            !route.accepts(&exec("/tmp/opt/app1/frag7/bin", "x")),
            "a prefix is anchored"
        );
        let too_big = wit::Prefilter {
            path_prefixes: vec!["/x".repeat(1 << 10); 1025],
            path_contains: vec![],
            signing_ids: vec![],
        };
        let err = Route::new(&info(&["exec"], Some(too_big))).unwrap_err();
        assert!(err.contains("cap 1048576"), "{err}");
    }
}
