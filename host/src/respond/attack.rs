//! MITRE ATT&CK (Enterprise) tactics, and which tactics a technique serves, for playbooks
//! that match a finding by tactic. The table covers the macOS techniques of the matrix
//! (and everything the built-in content raises); a technique not in it matches no tactic.

/// Tactic ids and names, in the matrix's order.
pub const TACTICS: &[(&str, &str)] = &[
    ("TA0043", "reconnaissance"),
    ("TA0042", "resource-development"),
    ("TA0001", "initial-access"),
    ("TA0002", "execution"),
    ("TA0003", "persistence"),
    ("TA0004", "privilege-escalation"),
    ("TA0005", "defense-evasion"),
    ("TA0006", "credential-access"),
    ("TA0007", "discovery"),
    ("TA0008", "lateral-movement"),
    ("TA0009", "collection"),
    ("TA0011", "command-and-control"),
    ("TA0010", "exfiltration"),
    ("TA0040", "impact"),
];

/// Techniques (without sub-technique) and the tactics they serve.
const TECHNIQUES: &[(&str, &[&str])] = &[
    ("T1005", &["TA0009"]),
    ("T1021", &["TA0008"]),
    ("T1027", &["TA0005"]),
    ("T1036", &["TA0005"]),
    ("T1037", &["TA0003", "TA0004"]),
    ("T1040", &["TA0006", "TA0007"]),
    ("T1041", &["TA0010"]),
    ("T1046", &["TA0007"]),
    ("T1055", &["TA0005", "TA0004"]),
    ("T1056", &["TA0009", "TA0006"]),
    ("T1057", &["TA0007"]),
    ("T1059", &["TA0002"]),
    ("T1068", &["TA0004"]),
    ("T1070", &["TA0005"]),
    ("T1071", &["TA0011"]),
    ("T1074", &["TA0009"]),
    ("T1078", &["TA0005", "TA0003", "TA0004", "TA0001"]),
    ("T1082", &["TA0007"]),
    ("T1083", &["TA0007"]),
    ("T1087", &["TA0007"]),
    ("T1090", &["TA0011"]),
    ("T1095", &["TA0011"]),
    ("T1098", &["TA0003", "TA0004"]),
    ("T1105", &["TA0011"]),
    ("T1110", &["TA0006"]),
    ("T1113", &["TA0009"]),
    ("T1115", &["TA0009"]),
    ("T1123", &["TA0009"]),
    ("T1125", &["TA0009"]),
    ("T1132", &["TA0011"]),
    ("T1135", &["TA0007"]),
    ("T1136", &["TA0003"]),
    ("T1140", &["TA0005"]),
    ("T1176", &["TA0003"]),
    ("T1185", &["TA0009"]),
    ("T1189", &["TA0001"]),
    ("T1190", &["TA0001"]),
    ("T1195", &["TA0001"]),
    ("T1201", &["TA0007"]),
    ("T1204", &["TA0002"]),
    ("T1217", &["TA0007"]),
    ("T1222", &["TA0005"]),
    ("T1485", &["TA0040"]),
    ("T1486", &["TA0040"]),
    ("T1489", &["TA0040"]),
    ("T1490", &["TA0040"]),
    ("T1496", &["TA0040"]),
    ("T1497", &["TA0005", "TA0007"]),
    ("T1498", &["TA0040"]),
    ("T1518", &["TA0007"]),
    ("T1529", &["TA0040"]),
    ("T1531", &["TA0040"]),
    ("T1539", &["TA0006"]),
    ("T1543", &["TA0003", "TA0004"]),
    ("T1546", &["TA0004", "TA0003"]),
    ("T1547", &["TA0003", "TA0004"]),
    ("T1548", &["TA0004", "TA0005"]),
    ("T1552", &["TA0006"]),
    ("T1553", &["TA0005"]),
    ("T1555", &["TA0006"]),
    ("T1556", &["TA0006", "TA0005", "TA0003"]),
    ("T1557", &["TA0006", "TA0009"]),
    ("T1560", &["TA0009"]),
    ("T1562", &["TA0005"]),
    ("T1564", &["TA0005"]),
    ("T1565", &["TA0040"]),
    ("T1566", &["TA0001"]),
    ("T1567", &["TA0010"]),
    ("T1569", &["TA0002"]),
    ("T1570", &["TA0008"]),
    ("T1571", &["TA0011"]),
    ("T1572", &["TA0011"]),
    ("T1573", &["TA0011"]),
    ("T1574", &["TA0003", "TA0004", "TA0005"]),
    ("T1580", &["TA0007"]),
    ("T1608", &["TA0042"]),
    ("T1614", &["TA0007"]),
    ("T1620", &["TA0005"]),
    ("T1647", &["TA0005"]),
];

/// The tactic id for an id (`TA0003`) or a name (`persistence`, `Persistence`,
/// `privilege escalation`).
pub fn tactic_id(text: &str) -> Option<&'static str> {
    let wanted = text.trim().to_ascii_lowercase().replace([' ', '_'], "-");
    TACTICS
        .iter()
        .find(|(id, name)| id.eq_ignore_ascii_case(&wanted) || *name == wanted)
        .map(|(id, _)| *id)
}

/// The tactics `technique` (`T1543.001` or `T1543`) serves.
pub fn tactics_of(technique: &str) -> &'static [&'static str] {
    let base = technique.split('.').next().unwrap_or(technique).trim();
    TECHNIQUES
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(base))
        .map(|(_, tactics)| *tactics)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_map_to_tactics_by_id_or_name() {
        assert_eq!(tactic_id("persistence"), Some("TA0003"));
        assert_eq!(tactic_id("Privilege Escalation"), Some("TA0004"));
        assert_eq!(tactic_id("ta0005"), Some("TA0005"));
        assert_eq!(tactic_id("lunch"), None);
        assert!(tactics_of("T1543.001").contains(&"TA0003"));
        assert!(tactics_of("T1553.001").contains(&"TA0005"));
        assert!(tactics_of("T9999").is_empty());
        // Every technique the built-in content raises has a tactic.
        for t in [
            "T1562.001",
            "T1543.001",
            "T1105",
            "T1555.001",
            "T1059.002",
            "T1553.001",
            "T1543.004",
            "T1204.002",
            "T1059.004",
            "T1547.015",
            "T1564.002",
            "T1548.006",
            "T1548.003",
            "T1546.004",
            "T1486",
            "T1136.001",
            "T1098.007",
            "T1098.004",
            "T1056.002",
            "T1055",
            "T1098",
        ] {
            assert!(!tactics_of(t).is_empty(), "{t}");
        }
        // The table's tactics are all real ones.
        for (_, tactics) in TECHNIQUES {
            for t in *tactics {
                assert!(TACTICS.iter().any(|(id, _)| id == t), "{t}");
            }
        }
    }
}
