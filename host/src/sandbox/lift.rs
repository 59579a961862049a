//! Bounded lifting of what guests return.
//!
//! The canonical ABI lets a guest return a list whose strings all point at the same
//! bytes of its memory: a 64 MiB instance can describe a result of gigabytes, and the
//! generated bindings copy every string in full before the host sees any of it. So the
//! host lifts results through its own types instead: [`Text`] copies at most
//! [`OutputLimits::field_bytes`] of a string (cut on a character boundary and marked),
//! [`List`] refuses more than [`OutputLimits::list_items`] elements before reading any,
//! and every byte copied — plus the host-side size of every list element — is charged
//! to one per-call budget ([`OutputLimits::total_bytes`]). Past the budget lifting stops
//! with [`OutputLimitExceeded`], which the caller counts as the guest's `output-limit`
//! fault. Nothing is read that is not kept.
//!
//! The record and variant types below mirror `wit/types.wit` field for field (wasmtime
//! type-checks them against the component's exports when a call is prepared) and convert
//! into the generated [`wit`] types, so the rest of the host keeps one type per WIT type.
//!
//! This module implements wasmtime's `ComponentType`/`Lift` for [`Text`] and [`List`] by
//! delegating to wasmtime's own implementations for `string` and `list<T>` on a pointer
//! pair whose length the host has shortened; it relies on wasmtime 48's (hidden, but
//! public) lifting API and must be re-checked on a wasmtime upgrade.
#![allow(unsafe_code)]

use std::cell::Cell;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext, wasmtime_environ,
};
use wasmtime::component::{ComponentType, Lift, WasmList};

use crate::sandbox::bindings::wit;

/// What one call may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes kept of any one string; the rest is cut and marked, not read.
    pub field_bytes: usize,
    /// Bytes copied out of the guest in one call, host-side list elements included.
    pub total_bytes: usize,
    /// Elements of any one list.
    pub list_items: usize,
}

impl OutputLimits {
    /// The limits used when a lift happens outside [`with_limits`] (never on purpose).
    pub const FALLBACK: OutputLimits = OutputLimits {
        field_bytes: 8 << 10,
        total_bytes: 1 << 20,
        list_items: 1024,
    };
}

/// What one call's results cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes charged to the budget.
    pub bytes: usize,
    /// Strings cut to `field_bytes`.
    pub fields_cut: usize,
}

/// A result over [`OutputLimits`]: the guest's fault (`output-limit`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutputLimitExceeded(pub String);

#[derive(Clone, Copy)]
struct Budget {
    limits: OutputLimits,
    left: usize,
    usage: Usage,
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// Runs `call` (a guest call whose results lift through this module's types) under
/// `limits`, returning what it returned and what its results cost.
pub fn with_limits<R>(limits: OutputLimits, call: impl FnOnce() -> R) -> (R, Usage) {
    let fresh = Budget {
        limits,
        left: limits.total_bytes,
        usage: Usage::default(),
    };
    let outer = BUDGET.with(|b| b.replace(Some(fresh)));
    let result = call();
    let used = BUDGET.with(|b| b.replace(outer));
    (result, used.map(|b| b.usage).unwrap_or_default())
}

fn current() -> Budget {
    BUDGET.with(Cell::get).unwrap_or(Budget {
        limits: OutputLimits::FALLBACK,
        left: OutputLimits::FALLBACK.total_bytes,
        usage: Usage::default(),
    })
}

fn store(budget: Budget) {
    BUDGET.with(|b| {
        if b.get().is_some() {
            b.set(Some(budget));
        }
    });
}

/// Charges `bytes` to the current budget, or fails naming `what`.
fn charge(bytes: usize, what: &str) -> wasmtime::Result<()> {
    let mut budget = current();
    match budget.left.checked_sub(bytes) {
        Some(left) => {
            budget.left = left;
            budget.usage.bytes += bytes;
            store(budget);
            Ok(())
        }
        None => Err(wasmtime::Error::new(OutputLimitExceeded(format!(
            "{what} would take the call's results past {} bytes",
            budget.limits.total_bytes
        )))),
    }
}

/// A pointer pair (`ptr`, `len`) as it sits in linear memory, 4-aligned as wasmtime's
/// lifting expects.
#[repr(C, align(8))]
struct PointerPair([u8; 8]);

impl PointerPair {
    fn read(bytes: &[u8]) -> wasmtime::Result<(u32, u32)> {
        let word = |at: usize| -> wasmtime::Result<u32> {
            bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| wasmtime::Error::msg("pointer pair out of bounds"))
        };
        Ok((word(0)?, word(4)?))
    }

    fn new(ptr: u32, len: u32) -> Self {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&ptr.to_le_bytes());
        bytes[4..].copy_from_slice(&len.to_le_bytes());
        PointerPair(bytes)
    }
}

/// A `string` from the guest, at most [`OutputLimits::field_bytes`] of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl Text {
    /// How many bytes of a `len`-byte string at `ptr` to copy: the field cap, moved back
    /// to a character boundary (`memory` is only peeked at around the cut).
    fn keep(memory: &[u8], ptr: usize, len: usize, cap: usize) -> usize {
        if len <= cap {
            return len;
        }
        let mut end = cap;
        // A UTF-8 continuation byte is 0b10xx_xxxx; a character is at most 4 bytes.
        while end > 0
            && cap - end < 4
            && memory
                .get(ptr + end)
                .is_some_and(|b| (b & 0b1100_0000) == 0b1000_0000)
        {
            end -= 1;
        }
        end
    }

    fn lift(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        ptr: u32,
        len: u32,
    ) -> wasmtime::Result<Self> {
        if !matches!(
            cx.options().string_encoding,
            wasmtime_environ::component::StringEncoding::Utf8
        ) {
            wasmtime::bail!("only UTF-8 guests are supported");
        }
        let (start, full) = (ptr as usize, len as usize);
        if start
            .checked_add(full)
            .is_none_or(|end| end > cx.memory().len())
        {
            wasmtime::bail!("string pointer/length out of bounds of memory");
        }
        let cap = current().limits.field_bytes;
        let kept = Self::keep(cx.memory(), start, full, cap);
        charge(kept, "a string")?;
        let pair = PointerPair::new(ptr, u32::try_from(kept)?);
        let mut text = <String as Lift>::linear_lift_from_memory(cx, ty, &pair.0)?;
        if kept < full {
            let mut budget = current();
            budget.usage.fields_cut += 1;
            store(budget);
            text.push_str(&format!("…[{} bytes cut]", full - kept));
        }
        Ok(Text(text))
    }
}

// SAFETY: `Text` has exactly the canonical ABI of `string` (a pointer pair), declares
// `str`'s lowered representation and type-checks only against `string`.
unsafe impl ComponentType for Text {
    type Lower = <str as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <str as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifting reads the pointer pair wasmtime hands over and delegates the copy to
// wasmtime's own `String` lift on a pair whose length is never longer than the original;
// the bounds check above is repeated there.
unsafe impl Lift for Text {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let [ptr, len] = *src;
        Self::lift(cx, ty, ptr.get_u32(), len.get_u32())
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = PointerPair::read(bytes)?;
        Self::lift(cx, ty, ptr, len)
    }
}

/// A `list<T>` from the guest, refused past [`OutputLimits::list_items`] elements before
/// any is read (a `list<u8>` only by the byte budget); each element's host size is
/// charged to the budget first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T: Lift> List<T> {
    fn lift(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        ptr: u32,
        len: u32,
    ) -> wasmtime::Result<Self> {
        let items = len as usize;
        // A list of bytes (an artifact's content) is bounded by the byte budget alone.
        let max = if std::mem::size_of::<T>() == 1 {
            usize::MAX
        } else {
            current().limits.list_items
        };
        if items > max {
            return Err(wasmtime::Error::new(OutputLimitExceeded(format!(
                "a list of {items} items (cap {max})"
            ))));
        }
        charge(items.saturating_mul(std::mem::size_of::<T>()), "a list")?;
        let pair = PointerPair::new(ptr, len);
        let list = <WasmList<T> as Lift>::linear_lift_from_memory(cx, ty, &pair.0)?;
        Ok(List(T::linear_lift_list_from_memory(cx, &list)?))
    }
}

// SAFETY: `List<T>` has exactly the canonical ABI of `list<T>` (a pointer pair) and
// type-checks as `[T]` does.
unsafe impl<T: ComponentType> ComponentType for List<T> {
    type Lower = <[T] as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[T] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: as for `Text`: the original pointer pair is passed on unchanged to wasmtime's
// own `WasmList<T>` lift (which checks bounds and alignment) after the length check.
unsafe impl<T: Lift> Lift for List<T> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let [ptr, len] = *src;
        Self::lift(cx, ty, ptr.get_u32(), len.get_u32())
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let (ptr, len) = PointerPair::read(bytes)?;
        Self::lift(cx, ty, ptr, len)
    }
}

fn texts(list: List<Text>) -> Vec<String> {
    list.0.into_iter().map(|t| t.0).collect()
}

/// `evidence`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Evidence {
    name: Text,
    value: Text,
}

/// `finding`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Finding {
    rule: Text,
    severity: wit::Severity,
    attack: List<Text>,
    message: Text,
    evidence: List<Evidence>,
}

impl From<Finding> for wit::Finding {
    fn from(f: Finding) -> Self {
        wit::Finding {
            rule: f.rule.0,
            severity: f.severity,
            attack: texts(f.attack),
            message: f.message.0,
            evidence: f
                .evidence
                .0
                .into_iter()
                .map(|e| wit::Evidence {
                    name: e.name.0,
                    value: e.value.0,
                })
                .collect(),
        }
    }
}

/// `detection`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Detection {
    #[component(name = "event-index")]
    event_index: u32,
    finding: Finding,
}

impl From<Detection> for wit::Detection {
    fn from(d: Detection) -> Self {
        wit::Detection {
            event_index: d.event_index,
            finding: d.finding.into(),
        }
    }
}

/// `verdict`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum Verdict {
    /// Let it happen.
    #[component(name = "allow")]
    Allow,
    /// Stop it.
    #[component(name = "deny")]
    Deny(Text),
    /// Nothing to say.
    #[component(name = "no-opinion")]
    NoOpinion,
    /// Should have an opinion but could not form one.
    #[component(name = "undecided")]
    Undecided(Text),
}

impl From<Verdict> for wit::Verdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => wit::Verdict::Allow,
            Verdict::Deny(t) => wit::Verdict::Deny(t.0),
            Verdict::NoOpinion => wit::Verdict::NoOpinion,
            Verdict::Undecided(t) => wit::Verdict::Undecided(t.0),
        }
    }
}

/// `plugin-error`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct PluginError {
    message: Text,
}

impl From<PluginError> for wit::PluginError {
    fn from(e: PluginError) -> Self {
        wit::PluginError {
            message: e.message.0,
        }
    }
}

/// `prefilter`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Prefilter {
    #[component(name = "path-prefixes")]
    path_prefixes: List<Text>,
    #[component(name = "path-contains")]
    path_contains: List<Text>,
    #[component(name = "signing-ids")]
    signing_ids: List<Text>,
}

/// `config-option`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct ConfigOption {
    name: Text,
    help: Text,
}

/// `plugin-info`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct PluginInfo {
    name: Text,
    version: Text,
    kind: wit::PluginKind,
    description: Text,
    subscriptions: List<Text>,
    prefilter: Option<Prefilter>,
    capabilities: List<Text>,
    config: List<ConfigOption>,
}

impl From<PluginInfo> for wit::PluginInfo {
    fn from(i: PluginInfo) -> Self {
        wit::PluginInfo {
            name: i.name.0,
            version: i.version.0,
            kind: i.kind,
            description: i.description.0,
            subscriptions: texts(i.subscriptions),
            prefilter: i.prefilter.map(|p| wit::Prefilter {
                path_prefixes: texts(p.path_prefixes),
                path_contains: texts(p.path_contains),
                signing_ids: texts(p.signing_ids),
            }),
            capabilities: texts(i.capabilities),
            config: i
                .config
                .0
                .into_iter()
                .map(|c| wit::ConfigOption {
                    name: c.name.0,
                    help: c.help.0,
                })
                .collect(),
        }
    }
}

/// `artifact`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Artifact {
    name: Text,
    #[component(name = "content-type")]
    content_type: Text,
    content: List<u8>,
}

impl From<Artifact> for wit::Artifact {
    fn from(a: Artifact) -> Self {
        wit::Artifact {
            name: a.name.0,
            content_type: a.content_type.0,
            content: a.content.0,
        }
    }
}

/// `notification`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct Notification {
    title: Text,
    body: Text,
    #[component(name = "to-user")]
    to_user: bool,
}

/// `run-script`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct RunScript {
    #[component(name = "script-id")]
    script_id: Text,
    args: List<Text>,
}

/// `jamf-lock`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct JamfLock {
    message: Text,
}

/// `block-entry`.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum BlockEntry {
    /// A SHA-256.
    #[component(name = "sha256")]
    Sha256(Text),
    /// A CDHash.
    #[component(name = "cdhash")]
    Cdhash(Text),
    /// A team id.
    #[component(name = "team-id")]
    TeamId(Text),
    /// A signing id.
    #[component(name = "signing-id")]
    SigningId(Text),
}

/// `action` (0.2.0).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum Action {
    /// Kill a process image.
    #[component(name = "kill-process")]
    KillProcess(wit::KillProcess),
    /// Quarantine a file.
    #[component(name = "quarantine-file")]
    QuarantineFile(Text),
    /// Remove a file.
    #[component(name = "remove-file")]
    RemoveFile(Text),
    /// Remove a launch item.
    #[component(name = "remove-launch-item")]
    RemoveLaunchItem(Text),
    /// Isolate the network.
    #[component(name = "isolate-network")]
    IsolateNetwork,
    /// Lock the screen.
    #[component(name = "lock-screen")]
    LockScreen,
    /// Notify.
    #[component(name = "notify")]
    Notify(Notification),
    /// Run an admin script.
    #[component(name = "run-script")]
    RunScript(RunScript),
    /// Lock through Jamf Pro.
    #[component(name = "jamf-lock")]
    JamfLock(JamfLock),
    /// Erase through Jamf Pro.
    #[component(name = "jamf-erase")]
    JamfErase(Text),
    /// Jamf Pro penalty box.
    #[component(name = "jamf-penalty-box")]
    JamfPenaltyBox,
    /// A Jamf policy trigger.
    #[component(name = "jamf-policy")]
    JamfPolicy(Text),
    /// A prevent-list entry.
    #[component(name = "block")]
    Block(BlockEntry),
    /// A device tag.
    #[component(name = "tag-device")]
    TagDevice(Text),
}

/// `action` as `ward:plugin@0.1.0` has it: the first eight cases.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(variant)]
pub enum ActionV0_1 {
    /// Kill a process image.
    #[component(name = "kill-process")]
    KillProcess(wit::KillProcess),
    /// Quarantine a file.
    #[component(name = "quarantine-file")]
    QuarantineFile(Text),
    /// Remove a file.
    #[component(name = "remove-file")]
    RemoveFile(Text),
    /// Remove a launch item.
    #[component(name = "remove-launch-item")]
    RemoveLaunchItem(Text),
    /// Isolate the network.
    #[component(name = "isolate-network")]
    IsolateNetwork,
    /// Lock the screen.
    #[component(name = "lock-screen")]
    LockScreen,
    /// Notify.
    #[component(name = "notify")]
    Notify(Notification),
    /// Run an admin script.
    #[component(name = "run-script")]
    RunScript(RunScript),
}

impl From<ActionV0_1> for Action {
    fn from(a: ActionV0_1) -> Self {
        match a {
            ActionV0_1::KillProcess(k) => Action::KillProcess(k),
            ActionV0_1::QuarantineFile(t) => Action::QuarantineFile(t),
            ActionV0_1::RemoveFile(t) => Action::RemoveFile(t),
            ActionV0_1::RemoveLaunchItem(t) => Action::RemoveLaunchItem(t),
            ActionV0_1::IsolateNetwork => Action::IsolateNetwork,
            ActionV0_1::LockScreen => Action::LockScreen,
            ActionV0_1::Notify(n) => Action::Notify(n),
            ActionV0_1::RunScript(r) => Action::RunScript(r),
        }
    }
}

impl From<Action> for wit::Action {
    fn from(a: Action) -> Self {
        match a {
            Action::KillProcess(k) => wit::Action::KillProcess(k),
            Action::QuarantineFile(t) => wit::Action::QuarantineFile(t.0),
            Action::RemoveFile(t) => wit::Action::RemoveFile(t.0),
            Action::RemoveLaunchItem(t) => wit::Action::RemoveLaunchItem(t.0),
            Action::IsolateNetwork => wit::Action::IsolateNetwork,
            Action::LockScreen => wit::Action::LockScreen,
            Action::Notify(n) => wit::Action::Notify(wit::Notification {
                title: n.title.0,
                body: n.body.0,
                to_user: n.to_user,
            }),
            Action::RunScript(r) => wit::Action::RunScript(wit::RunScript {
                script_id: r.script_id.0,
                args: texts(r.args),
            }),
            Action::JamfLock(l) => wit::Action::JamfLock(wit::JamfLock {
                message: l.message.0,
            }),
            Action::JamfErase(t) => wit::Action::JamfErase(t.0),
            Action::JamfPenaltyBox => wit::Action::JamfPenaltyBox,
            Action::JamfPolicy(t) => wit::Action::JamfPolicy(t.0),
            Action::Block(b) => wit::Action::Block(match b {
                BlockEntry::Sha256(t) => wit::BlockEntry::Sha256(t.0),
                BlockEntry::Cdhash(t) => wit::BlockEntry::Cdhash(t.0),
                BlockEntry::TeamId(t) => wit::BlockEntry::TeamId(t.0),
                BlockEntry::SigningId(t) => wit::BlockEntry::SigningId(t.0),
            }),
            Action::TagDevice(t) => wit::Action::TagDevice(t.0),
        }
    }
}

/// `planned-action` (0.2.0).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct PlannedAction {
    action: Action,
    reason: Text,
}

impl From<PlannedAction> for wit::PlannedAction {
    fn from(p: PlannedAction) -> Self {
        wit::PlannedAction {
            action: p.action.into(),
            reason: p.reason.0,
        }
    }
}

/// `planned-action` as `ward:plugin@0.1.0` has it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[component(record)]
pub struct PlannedActionV0_1 {
    action: ActionV0_1,
    reason: Text,
}

impl From<PlannedActionV0_1> for wit::PlannedAction {
    fn from(p: PlannedActionV0_1) -> Self {
        wit::PlannedAction {
            action: Action::from(p.action).into(),
            reason: p.reason.0,
        }
    }
}

/// `result<T, plugin-error>` as the exports return it, converted.
pub fn plugin_result<T, U: From<T>>(
    r: Result<List<T>, PluginError>,
) -> Result<Vec<U>, wit::PluginError> {
    r.map(|l| l.0.into_iter().map(U::from).collect())
        .map_err(wit::PluginError::from)
}
