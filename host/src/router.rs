//! Routing: which detector sees which event, by subscription and host-side prefilter.
//!
//! Checked on the host before any guest call, so a detector subscribed to `exec` costs
//! nothing on the file-event firehose.

use std::collections::HashSet;

use crate::bindings::wit;

/// The routing rule of one plugin, compiled from its `describe()`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `None` subscribes to every kind (`*`).
    kinds: Option<HashSet<String>>,
    prefilter: Option<wit::Prefilter>,
}

impl Route {
    /// The route for a plugin's self-description.
    pub fn new(info: &wit::PluginInfo) -> Self {
        let kinds = if info.subscriptions.iter().any(|k| k == "*") {
            None
        } else {
            Some(info.subscriptions.iter().cloned().collect())
        };
        let prefilter = info.prefilter.clone().filter(|p| {
            !(p.path_prefixes.is_empty() && p.path_contains.is_empty() && p.signing_ids.is_empty())
        });
        Self { kinds, prefilter }
    }

    /// True if the plugin subscribed to `kind`.
    pub fn subscribes(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(kind))
    }

    /// The event kinds subscribed to; `None` for all.
    pub fn kinds(&self) -> Option<&HashSet<String>> {
        self.kinds.as_ref()
    }

    /// True if `event` should be delivered.
    pub fn accepts(&self, event: &wit::Event) -> bool {
        if !self.subscribes(&event.kind) {
            return false;
        }
        let Some(p) = &self.prefilter else {
            return true;
        };
        let path = primary_path(event);
        (p.path_prefixes.is_empty() || p.path_prefixes.iter().any(|x| path.starts_with(x.as_str())))
            && (p.path_contains.is_empty()
                || p.path_contains.iter().any(|x| path.contains(x.as_str())))
            && (p.signing_ids.is_empty() || {
                let id = actor(event).signing_id.as_deref().unwrap_or("");
                p.signing_ids.iter().any(|x| x == id)
            })
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
        crate::convert::event(&ward_event::parse_line(line.as_bytes(), 1 << 20).unwrap())
    }

    #[test]
    fn subscriptions_and_prefilters_decide_delivery() {
        let ev = exec("/private/tmp/x", "com.apple.xattr");
        assert!(Route::new(&info(&["exec"], None)).accepts(&ev));
        assert!(Route::new(&info(&["*"], None)).accepts(&ev));
        assert!(!Route::new(&info(&["create"], None)).accepts(&ev));
        assert!(!Route::new(&info(&[], None)).accepts(&ev));

        let pf = |prefixes: &[&str], contains: &[&str], ids: &[&str]| wit::Prefilter {
            path_prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
            path_contains: contains.iter().map(|s| (*s).to_owned()).collect(),
            signing_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        };
        let route = |p| Route::new(&info(&["exec"], Some(p)));
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
}
