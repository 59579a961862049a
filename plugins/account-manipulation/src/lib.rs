//! Detector: local account manipulation seen through Open Directory events.
//!
//! - a local user account created (MITRE ATT&CK T1136.001 Create Account: Local Account);
//! - a member added to a privileged local group — `admin`, `wheel`, the SSH and screen
//!   sharing access groups — by `od_group_add` or by appending to the group's
//!   `GroupMembership` attribute (T1098.007 Additional Local or Domain Groups);
//! - an account hidden from the login window: `IsHidden` set to true, or a user given a
//!   UniqueID below 500 (T1564.002 Hidden Users);
//! - a user's password reset from the command line (`dscl`, `sysadminctl`) (T1098 Account
//!   Manipulation).
//!
//! Only operations that succeeded (`error_code` 0) on a local node count: a refused attempt
//! changed nothing, and directory-server changes are the directory's business.

use ward_sdk::prelude::*;
use ward_sdk::{OdEvent, OdOperation};

const RULE_CREATED: &str = "local-account-created";
const RULE_PRIVILEGED: &str = "privileged-group-member-added";
const RULE_HIDDEN: &str = "account-hidden";
const RULE_PASSWORD: &str = "account-password-reset-from-cli";

/// Local groups whose members gain administrator rights or remote access.
const PRIVILEGED_GROUPS: &[&str] = &[
    "admin",
    "wheel",
    "com.apple.access_ssh",
    "com.apple.access_screensharing",
    "com.apple.access_remote_ae",
];

/// Command-line tools whose password resets are worth a look (System Settings and
/// `passwd` are the everyday ways).
const CLI_PASSWORD_TOOLS: &[&str] = &["com.apple.dscl", "com.apple.sysadminctl"];

/// The detector; stateless.
#[derive(Default)]
pub struct AccountManipulation;

/// The process that asked Open Directory for the change: the event's instigator, or the
/// process table's image for its token when the instigator had already exited.
fn instigator(od: &OdEvent) -> Option<Process> {
    od.instigator
        .clone()
        .or_else(|| od.instigator_token.and_then(process::lookup))
}

/// How far up the instigator's ancestry to look for untrusted code.
const LINEAGE_DEPTH: u32 = 8;

/// The path of the first ad-hoc-signed or unsigned image among `by` and its ancestors: a
/// dropper that runs `sysadminctl` is as guilty as one that calls Open Directory itself.
fn untrusted_in_lineage(by: &Process) -> Option<String> {
    if by.is_untrusted_code() {
        return Some(by.path().to_owned());
    }
    // Start from the parent: the instigator may be known only from the event itself.
    let parent = by.parent_token.and_then(process::lookup)?;
    let further = process::ancestors(parent.token, LINEAGE_DEPTH);
    std::iter::once(parent)
        .chain(further)
        .find(ProcessExt::is_untrusted_code)
        .map(|p| p.path().to_owned())
}

/// The attribute name without its `dsAttrTypeStandard:` / `dsAttrTypeNative:` prefix.
fn attribute(od: &OdEvent) -> &str {
    let name = od.attribute_name.as_deref().unwrap_or("");
    name.rsplit_once(':').map_or(name, |(_, short)| short)
}

fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "yes" | "true"
    )
}

/// True when `value` is a UniqueID in the range the login window hides (below 500) and the
/// record is not one of macOS's own `_service` accounts.
fn is_hidden_uid(record: &str, value: &str) -> bool {
    !record.starts_with('_')
        && value
            .trim()
            .parse::<i64>()
            .is_ok_and(|uid| (0..500).contains(&uid))
}

/// What an OD event means for this detector: (rule, technique, severity, message).
/// `by_signing_id` is the instigator's.
fn classify(
    od: &OdEvent,
    by_signing_id: &str,
) -> Option<(&'static str, &'static str, Severity, String)> {
    if od.error_code != 0 || !od.node_name.starts_with("/Local/") {
        return None;
    }
    let record = od.record_name.as_deref().unwrap_or("");
    let attribute = match od.operation {
        OdOperation::AttributeValueAdd | OdOperation::AttributeSet => attribute(od),
        _ => "",
    };
    let values = &od.attribute_values;
    // Who joined the group, whether by `dseditgroup` (group add) or `dscl -append`.
    let joined = match od.operation {
        OdOperation::GroupAdd => Some(od.member.clone().unwrap_or_else(|| "a member".into())),
        _ if attribute == "GroupMembership" => Some(values.join(", ")),
        _ => None,
    };
    if let Some(member) = joined.filter(|_| PRIVILEGED_GROUPS.contains(&record)) {
        return Some((
            RULE_PRIVILEGED,
            "T1098.007",
            Severity::High,
            format!("{member} added to privileged local group {record:?}"),
        ));
    }
    match od.operation {
        OdOperation::CreateUser => Some((
            RULE_CREATED,
            "T1136.001",
            Severity::Medium,
            format!("local user account {record:?} created"),
        )),
        OdOperation::ModifyPassword if CLI_PASSWORD_TOOLS.contains(&by_signing_id) => Some((
            RULE_PASSWORD,
            "T1098",
            Severity::Low,
            format!("password of account {record:?} reset from the command line"),
        )),
        _ if attribute == "IsHidden" && values.iter().any(|v| is_true(v)) => Some((
            RULE_HIDDEN,
            "T1564.002",
            Severity::Medium,
            format!("account {record:?} hidden from the login window (IsHidden)"),
        )),
        _ if attribute == "UniqueID" && values.iter().any(|v| is_hidden_uid(record, v)) => Some((
            RULE_HIDDEN,
            "T1564.002",
            Severity::Medium,
            format!(
                "account {record:?} given UniqueID {} (below 500, hidden from the login window)",
                values.join(", ")
            ),
        )),
        _ => None,
    }
}

impl Detector for AccountManipulation {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "account-manipulation",
            env!("CARGO_PKG_VERSION"),
            PluginKind::Detector,
            "local accounts created, privileged group members added, accounts hidden, passwords reset from the command line",
        )
        .subscribe(&[
            "od_create_user",
            "od_group_add",
            "od_attribute_value_add",
            "od_attribute_set",
            "od_modify_password",
        ])
    }

    /// Only what it reads: reads names, tokens and the process table, nothing optional.
    fn parts() -> EventParts {
        EventParts::empty()
    }

    fn on_event(&mut self, event: &Event) -> Result<Vec<Finding>, PluginError> {
        let EventData::Od(od) = &event.data else {
            return Ok(Vec::new());
        };
        let by = instigator(od);
        let by_path = by.as_ref().map_or("", ProcessExt::path);
        let by_signing_id = by.as_ref().map_or("", ProcessExt::signing_id_or_empty);
        let Some((rule, technique, mut severity, message)) = classify(od, by_signing_id) else {
            return Ok(Vec::new());
        };
        // Untrusted code changing accounts, itself or through Apple's tools, is worse than an
        // admin at a terminal.
        let untrusted = by.as_ref().and_then(untrusted_in_lineage);
        if untrusted.is_some() {
            severity = Severity::High;
        }
        let mut finding = Finding::new(rule, severity, message)
            .attack(&[technique])
            .evidence("operation", event.kind.clone())
            .evidence("record", od.record_name.clone().unwrap_or_default())
            .evidence("node", od.node_name.clone())
            .evidence("instigator_path", by_path)
            .evidence("instigator_signing_id", by_signing_id);
        if let Some(member) = &od.member {
            finding = finding.evidence("member", member.clone());
        }
        if let Some(name) = &od.attribute_name {
            finding = finding
                .evidence("attribute", name.clone())
                .evidence("values", od.attribute_values.join(", "));
        }
        if let Some(path) = untrusted {
            finding = finding.evidence("untrusted_code", path);
        }
        if let Some(token) = od.instigator_token {
            finding = finding.evidence(
                "instigator_pid",
                format!("{}/{}", token.pid, token.pidversion),
            );
        }
        Ok(vec![finding])
    }
}

ward_sdk::export_detector!(AccountManipulation);

#[cfg(test)]
mod tests {
    use super::*;
    use ward_sdk::testing;

    fn od(kind: &str, operation: OdOperation, record: &str) -> (String, OdEvent) {
        (
            kind.to_owned(),
            OdEvent {
                operation,
                instigator: Some(testing::process("/usr/bin/dscl")),
                instigator_token: Some(testing::token(4100, 9100)),
                error_code: 0,
                node_name: "/Local/Default".into(),
                db_path: Some("/var/db/dslocal/nodes/Default".into()),
                record_name: Some(record.into()),
                member: None,
                attribute_name: None,
                attribute_values: Vec::new(),
            },
        )
    }

    fn run(kind: &str, od: OdEvent) -> Vec<Finding> {
        let event = testing::event(
            kind,
            testing::process("/usr/libexec/opendirectoryd"),
            EventData::Od(od),
        );
        testing::deliver(&mut AccountManipulation, &event).unwrap()
    }

    fn attr(kind: &str, record: &str, name: &str, value: &str) -> Vec<Finding> {
        let operation = if kind == "od_attribute_set" {
            OdOperation::AttributeSet
        } else {
            OdOperation::AttributeValueAdd
        };
        let (kind, mut e) = od(kind, operation, record);
        e.attribute_name = Some(name.into());
        e.attribute_values = vec![value.into()];
        run(&kind, e)
    }

    #[test]
    fn user_creation_fires_and_refused_or_remote_creation_does_not() {
        let (kind, e) = od("od_create_user", OdOperation::CreateUser, "backdoor");
        let f = run(&kind, e.clone());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, RULE_CREATED);
        assert_eq!(f[0].attack, vec!["T1136.001"]);
        assert_eq!(f[0].severity, Severity::Medium);
        assert!(f[0].message.contains("backdoor"));

        let mut refused = e.clone();
        refused.error_code = 4102;
        assert!(run(&kind, refused).is_empty());
        let mut ldap = e;
        ldap.node_name = "/LDAPv3/ldap.example.com".into();
        assert!(run(&kind, ldap).is_empty());
    }

    #[test]
    fn untrusted_instigator_raises_severity() {
        let (kind, mut e) = od("od_create_user", OdOperation::CreateUser, "backdoor");
        let mut dropper = testing::process("/private/tmp/dropper");
        dropper.signer = SignerType::Adhoc;
        e.instigator = Some(dropper);
        let f = run(&kind, e);
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(
            f[0].evidence_value("instigator_path"),
            Some("/private/tmp/dropper")
        );
    }

    #[test]
    fn untrusted_ancestor_raises_severity() {
        testing::reset();
        let mut dropper = testing::process("/private/tmp/.helper");
        dropper.signer = SignerType::Adhoc;
        dropper.token = testing::token(801, 8011);
        testing::add_process(dropper);
        let (kind, mut e) = od("od_create_user", OdOperation::CreateUser, "support");
        let mut tool = testing::process("/usr/sbin/sysadminctl");
        tool.parent_token = Some(testing::token(801, 8011));
        e.instigator = Some(tool);
        let f = run(&kind, e);
        assert_eq!(f[0].severity, Severity::High);
        assert_eq!(
            f[0].evidence_value("untrusted_code"),
            Some("/private/tmp/.helper")
        );
        testing::reset();
    }

    #[test]
    fn exited_instigator_is_found_in_the_process_table() {
        testing::reset();
        let mut tool = testing::process("/usr/sbin/sysadminctl");
        tool.token = testing::token(4100, 9100);
        testing::add_process(tool);
        let (kind, mut e) = od("od_create_user", OdOperation::CreateUser, "backdoor");
        e.instigator = None;
        let f = run(&kind, e);
        assert_eq!(
            f[0].evidence_value("instigator_path"),
            Some("/usr/sbin/sysadminctl")
        );
        testing::reset();
    }

    #[test]
    fn privileged_group_additions_fire_others_do_not() {
        for group in ["admin", "wheel", "com.apple.access_ssh"] {
            let (kind, mut e) = od("od_group_add", OdOperation::GroupAdd, group);
            e.member = Some("mallory".into());
            let f = run(&kind, e);
            assert_eq!(f.len(), 1, "{group}");
            assert_eq!(f[0].rule, RULE_PRIVILEGED);
            assert_eq!(f[0].attack, vec!["T1098.007"]);
            assert_eq!(f[0].severity, Severity::High);
            assert!(f[0].message.contains("mallory"));
        }
        let (kind, mut e) = od("od_group_add", OdOperation::GroupAdd, "staff-projects");
        e.member = Some("mallory".into());
        assert!(run(&kind, e).is_empty());
        // Removal from admin is not an escalation.
        let (kind, e) = od("od_group_remove", OdOperation::GroupRemove, "admin");
        assert!(run(&kind, e).is_empty());
    }

    #[test]
    fn group_membership_attribute_on_admin_fires() {
        let f = attr(
            "od_attribute_value_add",
            "admin",
            "dsAttrTypeStandard:GroupMembership",
            "mallory",
        );
        assert_eq!(f[0].rule, RULE_PRIVILEGED);
        assert!(
            attr(
                "od_attribute_value_add",
                "everyone-else",
                "dsAttrTypeStandard:GroupMembership",
                "mallory"
            )
            .is_empty()
        );
    }

    #[test]
    fn hidden_accounts_fire() {
        let f = attr(
            "od_attribute_value_add",
            "backdoor",
            "dsAttrTypeNative:IsHidden",
            "1",
        );
        assert_eq!(f[0].rule, RULE_HIDDEN);
        assert_eq!(f[0].attack, vec!["T1564.002"]);
        let f = attr(
            "od_attribute_set",
            "backdoor",
            "dsAttrTypeStandard:UniqueID",
            "401",
        );
        assert_eq!(f[0].rule, RULE_HIDDEN);
        assert!(f[0].message.contains("401"));
    }

    #[test]
    fn ordinary_attributes_and_service_accounts_are_quiet() {
        let quiet = [
            // The real fixture's comment change.
            (
                "od_attribute_value_add",
                "testuser",
                "dsAttrTypeStandard:Comment",
                "hello",
            ),
            (
                "od_attribute_value_add",
                "backdoor",
                "dsAttrTypeNative:IsHidden",
                "0",
            ),
            (
                "od_attribute_set",
                "_postgres",
                "dsAttrTypeStandard:UniqueID",
                "216",
            ),
            (
                "od_attribute_set",
                "alice",
                "dsAttrTypeStandard:UniqueID",
                "502",
            ),
        ];
        for (kind, record, name, value) in quiet {
            assert!(
                attr(kind, record, name, value).is_empty(),
                "{record} {name}={value}"
            );
        }
    }

    #[test]
    fn password_reset_from_the_command_line_is_low() {
        let (kind, e) = od("od_modify_password", OdOperation::ModifyPassword, "alice");
        let f = run(&kind, e.clone());
        assert_eq!(f[0].rule, RULE_PASSWORD);
        assert_eq!(f[0].severity, Severity::Low);
        let mut settings = e;
        settings.instigator = Some(testing::process(
            "/System/Applications/System Settings.app/Contents/MacOS/System Settings",
        ));
        assert!(run(&kind, settings).is_empty());
    }
}
