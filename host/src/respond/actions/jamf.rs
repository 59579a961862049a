//! Jamf Pro: device lock, erase, the penalty box (an extension attribute value or a static
//! group) through the Jamf Pro API, and policies through the local `jamf` binary.
//!
//! The API client holds the credentials — a JSON file `{"client_id", "client_secret"}`
//! that only the agent's user may read — and nothing else ever sees them: a remediator
//! plans `jamf-lock`, the host asks Jamf Pro. OAuth client credentials
//! (`POST /api/oauth/token`) give a bearer token, kept until shortly before it expires.
//! This Mac's computer id and management id come from the config or from one inventory
//! lookup by serial number.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::response::JamfConfig;
use crate::respond::actions::Outcome;
use crate::respond::actions::script::run_bounded;

/// Largest response body read.
const MAX_BODY: u64 = 1 << 20;

/// The API client.
pub struct Jamf {
    config: JamfConfig,
    agent: ureq::Agent,
    base: String,
    token: Option<(String, Instant)>,
    ids: Option<(u64, String)>,
    serial: String,
}

/// Percent-encodes `s` for a URL query or form.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn body_of(resp: ureq::Response) -> Result<String, String> {
    let mut text = String::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(text)
}

fn http_err(what: &str, e: ureq::Error) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = body_of(resp).unwrap_or_default();
            format!(
                "{what}: HTTP {code}: {}",
                crate::respond::actions::cut(body.trim(), 300)
            )
        }
        ureq::Error::Transport(t) => format!("{what}: {t}"),
    }
}

/// Reads the credentials file, refusing one others may read.
pub fn read_credentials(path: &Path) -> Result<(String, String), String> {
    let text = crate::config::secret::read_private_file(path)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: no `{k}`", path.display()))
    };
    Ok((field("client_id")?, field("client_secret")?))
}

/// A 6-digit PIN from the system's random source.
pub fn new_pin() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(format!("{:06}", u64::from_le_bytes(bytes) % 1_000_000))
}

/// A Jamf custom trigger: 1-64 letters, digits, `.`, `_`, `-`.
pub fn valid_trigger(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Jamf {
    /// A client for `config`; `serial` finds this Mac when no id is configured.
    pub fn new(config: &JamfConfig, serial: &str) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(config.timeout_secs))
                .redirects(0)
                .build(),
            base: config.url.trim_end_matches('/').to_owned(),
            config: config.clone(),
            token: None,
            ids: config.computer_id.zip(config.management_id.clone()),
            serial: serial.to_owned(),
        }
    }

    fn token(&mut self) -> Result<String, String> {
        if let Some((t, until)) = &self.token
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let (id, secret) = read_credentials(&self.config.credentials)?;
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            encode(&id),
            encode(&secret)
        );
        let resp = self
            .agent
            .post(&format!("{}/api/oauth/token", self.base))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .set("Accept", "application/json")
            .send_string(&form)
            .map_err(|e| http_err("POST /api/oauth/token", e))?;
        let v: serde_json::Value =
            serde_json::from_str(&body_of(resp)?).map_err(|e| format!("token answer: {e}"))?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or("the token answer has no access_token")?
            .to_owned();
        let life = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60);
        // Renew a little early.
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(10).max(1));
        self.token = Some((token.clone(), until));
        Ok(token)
    }

    /// This Mac's (computer id, management id).
    fn ids(&mut self) -> Result<(u64, String), String> {
        if let Some(ids) = &self.ids {
            return Ok(ids.clone());
        }
        if self.serial.is_empty() {
            return Err("no computer id configured and no serial number to look it up".into());
        }
        let token = self.token()?;
        let filter = format!("hardware.serialNumber==\"{}\"", self.serial);
        let resp = self
            .agent
            .get(&format!(
                "{}/api/v1/computers-inventory?section=GENERAL&page-size=1&filter={}",
                self.base,
                encode(&filter)
            ))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Accept", "application/json")
            .call()
            .map_err(|e| http_err("GET /api/v1/computers-inventory", e))?;
        let v: serde_json::Value =
            serde_json::from_str(&body_of(resp)?).map_err(|e| format!("inventory answer: {e}"))?;
        let first = v
            .get("results")
            .and_then(|r| r.get(0))
            .ok_or_else(|| format!("Jamf Pro knows no computer with serial {}", self.serial))?;
        let id = first
            .get("id")
            .and_then(|i| {
                i.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| i.as_u64())
            })
            .ok_or("the inventory answer has no id")?;
        let management = first
            .get("general")
            .and_then(|g| g.get("managementId"))
            .and_then(|m| m.as_str())
            .ok_or("the inventory answer has no managementId")?
            .to_owned();
        let ids = (id, self.config.management_id.clone().unwrap_or(management));
        self.ids = Some(ids.clone());
        Ok(ids)
    }

    fn command(&mut self, data: serde_json::Value) -> Result<serde_json::Value, String> {
        let (_, management) = self.ids()?;
        let token = self.token()?;
        let body = serde_json::json!({
            "clientData": [{ "managementId": management }],
            "commandData": data,
        });
        let resp = self
            .agent
            .post(&format!("{}/api/v2/mdm/commands", self.base))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/json")
            .set("Accept", "application/json")
            .send_string(&body.to_string())
            .map_err(|e| http_err("POST /api/v2/mdm/commands", e))?;
        Ok(serde_json::from_str(&body_of(resp)?).unwrap_or(serde_json::Value::Null))
    }

    /// `DEVICE_LOCK` with a new PIN, kept in the outcome (the admins unlock with it).
    pub fn lock(&mut self, message: &str) -> Result<Outcome, String> {
        let pin = new_pin()?;
        let answer = self.command(serde_json::json!({
            "commandType": "DEVICE_LOCK",
            "pin": pin,
            "message": crate::respond::actions::cut(message, 1024),
        }))?;
        Ok(Outcome::new("Jamf Pro DEVICE_LOCK sent")
            .with("pin", pin)
            .with("jamf", answer))
    }

    /// `ERASE_DEVICE`, only where the admin allows erasing.
    pub fn erase(&mut self) -> Result<Outcome, String> {
        if !self.config.allow_erase {
            return Err("refused: [response.jamf] allow_erase is false".into());
        }
        let pin = new_pin()?;
        let answer = self.command(serde_json::json!({
            "commandType": "ERASE_DEVICE",
            "pin": pin,
            "obliterationBehavior": "Default",
        }))?;
        Ok(Outcome::new("Jamf Pro ERASE_DEVICE sent")
            .with("pin", pin)
            .with("jamf", answer))
    }

    /// Puts the Mac in (or takes it out of) the penalty box.
    pub fn penalty_box(&mut self, inside: bool) -> Result<Outcome, String> {
        let pb = self
            .config
            .penalty_box
            .clone()
            .ok_or("refused: [response.jamf] penalty_box is not configured")?;
        let mut done = Vec::new();
        if let Some(ea) = pb.extension_attribute_id {
            let (id, _) = self.ids()?;
            let token = self.token()?;
            let values: Vec<&str> = if inside {
                vec![pb.value.as_str()]
            } else {
                Vec::new()
            };
            let body = serde_json::json!({
                "extensionAttributes": [{ "definitionId": ea.to_string(), "values": values }],
            });
            self.agent
                .request(
                    "PATCH",
                    &format!("{}/api/v1/computers-inventory-detail/{id}", self.base),
                )
                .set("Authorization", &format!("Bearer {token}"))
                .set("Content-Type", "application/json")
                .set("Accept", "application/json")
                .send_string(&body.to_string())
                .map_err(|e| http_err("PATCH /api/v1/computers-inventory-detail", e))?;
            done.push(format!(
                "extension attribute {ea} {}",
                if inside { "set" } else { "cleared" }
            ));
        }
        if let Some(group) = pb.static_group_id {
            self.static_group(group, inside)?;
            done.push(format!(
                "static group {group} {}",
                if inside { "joined" } else { "left" }
            ));
        }
        if done.is_empty() {
            return Err(
                "refused: penalty_box names neither an extension attribute nor a group".into(),
            );
        }
        Ok(Outcome::new(format!(
            "Jamf Pro penalty box {}: {}",
            if inside { "entered" } else { "left" },
            done.join(", ")
        )))
    }

    /// Adds this Mac to (or removes it from) a static computer group (Classic API).
    pub fn static_group(&mut self, group: u64, add: bool) -> Result<Outcome, String> {
        let (id, _) = self.ids()?;
        let token = self.token()?;
        let which = if add {
            "computer_additions"
        } else {
            "computer_deletions"
        };
        let xml = format!(
            "<computer_group><{which}><computer><id>{id}</id></computer></{which}></computer_group>"
        );
        self.agent
            .put(&format!(
                "{}/JSSResource/computergroups/id/{group}",
                self.base
            ))
            .set("Authorization", &format!("Bearer {token}"))
            .set("Content-Type", "application/xml")
            .send_string(&xml)
            .map_err(|e| http_err("PUT /JSSResource/computergroups", e))?;
        Ok(Outcome::new(format!(
            "{} static group {group}",
            if add { "added to" } else { "removed from" }
        )))
    }

    /// `jamf policy -event <trigger>` with the local binary.
    pub fn policy(&self, trigger: &str) -> Result<Outcome, String> {
        if !valid_trigger(trigger) {
            return Err(format!(
                "refused: `{}` is not a policy trigger (letters, digits, . _ -)",
                crate::respond::actions::shown(trigger)
            ));
        }
        let run = run_bounded(
            &self.config.jamf_binary,
            &["policy".into(), "-event".into(), trigger.into()],
            &[],
            Duration::from_secs(600),
            16 << 10,
        )?;
        let out = Outcome::new(format!(
            "jamf policy -event {trigger} exited {:?}",
            run.code
        ))
        .with("stdout", run.stdout)
        .with("stderr", run.stderr);
        if run.code == Some(0) {
            Ok(out)
        } else {
            Err(out.details)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_triggers_and_encoding() {
        let pin = new_pin().unwrap();
        assert_eq!(pin.len(), 6);
        assert!(pin.bytes().all(|b| b.is_ascii_digit()));
        assert!(valid_trigger("isolate-me_2"));
        assert!(!valid_trigger("x; rm -rf /"));
        assert!(!valid_trigger(""));
        assert_eq!(encode("a b&c=\"d\""), "a%20b%26c%3D%22d%22");
    }

    #[test]
    fn credentials_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jamf.json");
        std::fs::write(&path, r#"{"client_id":"id","client_secret":"s3cret"}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_credentials(&path).unwrap_err().contains("0600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_credentials(&path).unwrap(),
            ("id".to_owned(), "s3cret".to_owned())
        );
    }
}
