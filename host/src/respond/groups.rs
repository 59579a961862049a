//! Smart groups on the Mac: named criteria over the device's facts (OS version, host name,
//! serial, model, the admin's tags) and over the tags that playbooks set (each with a
//! lease). A finding can tag the device, the tag puts it in a group, and the group scopes
//! playbooks and plugin modes — the analytic → smart group → policy flow of Jamf, without
//! waiting for an inventory round-trip.

use std::collections::BTreeSet;

use crate::config::response::{DeviceConfig, SmartGroupConfig};

/// What the agent knows of this Mac.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceFacts {
    /// Host name.
    pub hostname: String,
    /// OS version (`14.5`).
    pub os_version: String,
    /// Serial number.
    pub serial: String,
    /// Model identifier.
    pub model: String,
    /// The admin's tags.
    pub admin_tags: Vec<String>,
}

/// Output of a probe command, trimmed; empty when it is missing or fails.
fn probe(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl DeviceFacts {
    /// The facts `config` gives, the rest read from this machine.
    pub fn read(config: &DeviceConfig) -> Self {
        let macos = cfg!(target_os = "macos");
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        });
        let os_version = config.os_version.clone().unwrap_or_else(|| {
            if macos {
                probe("/usr/bin/sw_vers", &["-productVersion"])
            } else {
                read_trimmed("/etc/os-release")
                    .lines()
                    .find_map(|l| l.strip_prefix("VERSION_ID="))
                    .map(|v| v.trim_matches('"').to_owned())
                    .unwrap_or_default()
            }
        });
        let serial = config.serial.clone().unwrap_or_else(|| {
            if macos {
                probe(
                    "/usr/sbin/ioreg",
                    &["-c", "IOPlatformExpertDevice", "-d", "2"],
                )
                .lines()
                .find(|l| l.contains("\"IOPlatformSerialNumber\""))
                .and_then(|l| l.rsplit('"').nth(1))
                .unwrap_or_default()
                .to_owned()
            } else {
                read_trimmed("/sys/class/dmi/id/product_serial")
            }
        });
        let model = config.model.clone().unwrap_or_else(|| {
            if macos {
                probe("/usr/sbin/sysctl", &["-n", "hw.model"])
            } else {
                read_trimmed("/sys/class/dmi/id/product_name")
            }
        });
        Self {
            hostname,
            os_version,
            serial,
            model,
            admin_tags: config.tags.clone(),
        }
    }
}

/// A tag a playbook may set: 1-64 letters, digits, `-`, `_`, `.`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `text` matches `pattern`, where `*` is any run and `?` any one character.
/// Iterative with one backtrack point: O(len(pattern) × len(text)) at worst, no recursion.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == '*')
}

/// An OS version test: `>= 14`, `> 13.6`, `<= 15`, `< 15.1`, `= 14.5`, `!= 14.0`, or a
/// glob (`14.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionTest {
    /// Compared numerically, component by component (missing components are 0).
    Compare(std::cmp::Ordering, bool, Vec<u64>),
    /// Matched as text.
    Glob(String),
}

fn version_parts(v: &str) -> Option<Vec<u64>> {
    let parts: Option<Vec<u64>> = v.trim().split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty() && p.len() <= 4)
}

impl VersionTest {
    /// Parses an admin's test.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (ordering, negate, rest) = if let Some(r) = t.strip_prefix(">=") {
            (std::cmp::Ordering::Less, true, r)
        } else if let Some(r) = t.strip_prefix("<=") {
            (std::cmp::Ordering::Greater, true, r)
        } else if let Some(r) = t.strip_prefix("!=") {
            (std::cmp::Ordering::Equal, true, r)
        } else if let Some(r) = t.strip_prefix('>') {
            (std::cmp::Ordering::Greater, false, r)
        } else if let Some(r) = t.strip_prefix('<') {
            (std::cmp::Ordering::Less, false, r)
        } else if let Some(r) = t.strip_prefix('=') {
            (std::cmp::Ordering::Equal, false, r)
        } else if t.contains(['*', '?']) {
            return Ok(Self::Glob(t.to_owned()));
        } else {
            (std::cmp::Ordering::Equal, false, t)
        };
        let parts = version_parts(rest)
            .ok_or_else(|| format!("`{text}` is not a version test (e.g. `>= 14.2`, `14.*`)"))?;
        Ok(Self::Compare(ordering, negate, parts))
    }

    /// Whether `version` passes.
    pub fn matches(&self, version: &str) -> bool {
        match self {
            Self::Glob(g) => glob(g, version),
            Self::Compare(ordering, negate, want) => {
                let Some(have) = version_parts(version) else {
                    return false;
                };
                let len = have.len().max(want.len());
                let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
                let cmp = (0..len)
                    .map(|i| at(&have, i).cmp(&at(want, i)))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal);
                (cmp == *ordering) != *negate
            }
        }
    }
}

/// One smart group, built.
#[derive(Debug, Clone)]
pub struct SmartGroup {
    /// Its name.
    pub name: String,
    os_version: Option<VersionTest>,
    config: SmartGroupConfig,
}

/// Every smart group.
#[derive(Debug, Clone, Default)]
pub struct SmartGroups {
    groups: Vec<SmartGroup>,
}

impl SmartGroups {
    /// Builds the groups (the config was validated).
    pub fn build(configs: &[SmartGroupConfig]) -> Self {
        Self {
            groups: configs
                .iter()
                .map(|c| SmartGroup {
                    name: c.name.clone(),
                    os_version: c
                        .os_version
                        .as_deref()
                        .and_then(|v| VersionTest::parse(v).ok()),
                    config: c.clone(),
                })
                .collect(),
        }
    }

    /// True when no group is defined.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups the device is in, given its facts and its tags now.
    pub fn membership(&self, facts: &DeviceFacts, tags: &BTreeSet<String>) -> BTreeSet<String> {
        self.groups
            .iter()
            .filter(|g| {
                let c = &g.config;
                g.os_version
                    .as_ref()
                    .is_none_or(|t| t.matches(&facts.os_version))
                    && c.hostname
                        .as_deref()
                        .is_none_or(|h| glob(h, &facts.hostname))
                    && (c.serial.is_empty() || c.serial.contains(&facts.serial))
                    && c.model.as_deref().is_none_or(|m| glob(m, &facts.model))
                    && c.admin_tags.iter().all(|t| facts.admin_tags.contains(t))
                    && c.tags.iter().all(|t| tags.contains(t))
            })
            .map(|g| g.name.clone())
            .collect()
    }

    /// The Jamf Pro static group a group mirrors to, if any.
    pub fn jamf_mirror(&self, name: &str) -> Option<u64> {
        self.groups
            .iter()
            .find(|g| g.name == name)
            .and_then(|g| g.config.jamf_static_group_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_without_recursion_or_blow_up() {
        assert!(glob("fin-*", "fin-laptop-7"));
        assert!(glob("*Book*", "MacBookPro18,3"));
        assert!(glob("/private/tmp/*", "/private/tmp/x/y"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(!glob("x", ""));
        // The classic exponential case for a naive backtracker: linear here.
        let text = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob(&pattern, &text));
    }

    #[test]
    fn version_tests() {
        let t = |s: &str| VersionTest::parse(s).unwrap();
        assert!(t(">= 14").matches("14.0"));
        assert!(t(">= 14").matches("15.1.2"));
        assert!(!t(">= 14").matches("13.6.9"));
        assert!(t("< 15.1").matches("15.0.1"));
        assert!(!t("< 15.1").matches("15.1"));
        assert!(t("14.*").matches("14.5"));
        assert!(t("= 14.5").matches("14.5.0"));
        assert!(t("!= 14.5").matches("14.6"));
        assert!(!t(">= 14").matches("sonoma"));
        assert!(VersionTest::parse(">= fourteen").is_err());
    }

    #[test]
    fn membership_follows_facts_and_tags() {
        let group = |name: &str, f: &dyn Fn(&mut SmartGroupConfig)| {
            let mut c = SmartGroupConfig {
                name: name.into(),
                os_version: None,
                hostname: None,
                serial: Vec::new(),
                model: None,
                admin_tags: Vec::new(),
                tags: Vec::new(),
                jamf_static_group_id: None,
            };
            f(&mut c);
            c
        };
        let groups = SmartGroups::build(&[
            group("sonoma-finance", &|c| {
                c.os_version = Some(">= 14".into());
                c.admin_tags = vec!["finance".into()];
            }),
            group("compromised", &|c| c.tags = vec!["compromised".into()]),
            group("by-serial", &|c| c.serial = vec!["C02XYZ".into()]),
            group("fin-hosts", &|c| c.hostname = Some("fin-*".into())),
        ]);
        let facts = DeviceFacts {
            hostname: "fin-7".into(),
            os_version: "14.5".into(),
            serial: "C02ABC".into(),
            model: "MacBookPro18,3".into(),
            admin_tags: vec!["finance".into()],
        };
        let none = BTreeSet::new();
        let names = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
        assert_eq!(
            names(groups.membership(&facts, &none)),
            ["fin-hosts", "sonoma-finance"]
        );
        let tagged: BTreeSet<String> = ["compromised".to_owned()].into();
        assert!(groups.membership(&facts, &tagged).contains("compromised"));
        assert!(valid_tag("compromised.2026"));
        assert!(!valid_tag("no spaces"));
        assert!(!valid_tag(""));
    }
}
