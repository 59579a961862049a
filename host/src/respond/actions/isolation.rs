//! Network isolation that keeps the management set reachable: the admin's management
//! hosts, DNS, DHCP, IPv6 neighbour discovery and Apple's push service.
//!
//! - macOS: a pf anchor under `com.apple/` (which the stock `/etc/pf.conf` already
//!   evaluates — the file is never edited), validated with `pfctl -n` before it loads,
//!   pf enabled with a reference token (`pfctl -E`) that release gives back (`pfctl -X`).
//! - Linux: one nftables table (`inet ward_isolation`) whose base chains drop by policy;
//!   checked with `nft -c`, loaded and replaced atomically with `nft -f`.
//!
//! Hostnames are resolved before anything is loaded; one that does not resolve refuses
//! the isolation (it would cut the Mac off the host it names), and they are re-resolved
//! while isolated (an address that stops resolving is kept). After loading, every
//! management host with a port that answered before is connected to again; if one no
//! longer answers, the isolation is rolled back at once.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::response::{IsolationBackend, IsolationConfig};
use crate::respond::actions::Outcome;
use crate::respond::actions::script::run_bounded;

/// The nftables table.
pub const NFT_TABLE: &str = "ward_isolation";
/// The pf anchor.
pub const PF_ANCHOR: &str = "com.apple/ward.isolation";
/// Apple push service: 17.0.0.0/8 on these TCP ports.
const APPLE_PUSH_PORTS: &[u16] = &[443, 2197, 5223];
/// Resolvers read from `/etc/resolv.conf`, at most.
const MAX_RESOLVERS: usize = 16;
/// Addresses one hostname may contribute.
const MAX_ADDRS_PER_HOST: usize = 64;
/// How long a backend command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// One management host, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As the admin wrote it.
    pub spec: String,
    /// Its addresses.
    pub nets: Vec<Net>,
    /// The port the self-test connects to.
    pub port: Option<u16>,
}

/// What isolation keeps reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Management hosts.
    pub mgmt: Vec<Endpoint>,
    /// DNS resolvers.
    pub dns: Vec<IpAddr>,
    /// Apple push service.
    pub apple_push: bool,
}

impl Plan {
    fn nets(&self, v4: bool) -> BTreeSet<Net> {
        self.mgmt
            .iter()
            .flat_map(|e| e.nets.iter().copied())
            .filter(|n| n.addr.is_ipv4() == v4)
            .collect()
    }

    fn resolvers(&self, v4: bool) -> BTreeSet<IpAddr> {
        self.dns
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == v4)
            .collect()
    }
}

/// `host`, `host:port`, `[v6]:port`, an address or a CIDR.
fn split_spec(spec: &str) -> Result<(String, Option<u16>, Option<u8>), String> {
    let spec = spec.trim();
    if let Some((net, prefix)) = spec.split_once('/') {
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{spec}`: bad prefix length"))?;
        return Ok((net.to_owned(), None, Some(prefix)));
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{spec}`: unclosed ["))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("`{spec}`: bad port"))?),
            None => None,
        };
        return Ok((host.to_owned(), port, None));
    }
    if spec.parse::<IpAddr>().is_ok() {
        return Ok((spec.to_owned(), None, None));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            Some(port.parse().map_err(|_| format!("`{spec}`: bad port"))?),
            None,
        )),
        None => Ok((spec.to_owned(), None, None)),
    }
}

/// Resolves one allow entry.
pub fn resolve_entry(spec: &str) -> Result<Endpoint, String> {
    let (host, port, prefix) = split_spec(spec)?;
    let nets = match host.parse::<IpAddr>() {
        Ok(addr) => {
            let full = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(full);
            if prefix > full {
                return Err(format!("`{spec}`: prefix over {full}"));
            }
            vec![Net { addr, prefix }]
        }
        Err(_) if prefix.is_some() => return Err(format!("`{spec}`: a CIDR needs an address")),
        Err(_) => {
            let addrs: BTreeSet<IpAddr> = (host.as_str(), port.unwrap_or(0))
                .to_socket_addrs()
                .map_err(|e| format!("management host `{host}` does not resolve: {e}"))?
                .map(|a| a.ip())
                .take(MAX_ADDRS_PER_HOST)
                .collect();
            if addrs.is_empty() {
                return Err(format!("management host `{host}` resolves to nothing"));
            }
            addrs
                .into_iter()
                .map(|addr| Net {
                    addr,
                    prefix: if addr.is_ipv4() { 32 } else { 128 },
                })
                .collect()
        }
    };
    Ok(Endpoint {
        spec: spec.to_owned(),
        nets,
        port,
    })
}

/// The system's resolvers (`/etc/resolv.conf`).
fn system_resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .take(MAX_RESOLVERS)
        .collect()
}

/// Resolves the admin's management set now. Refuses when it is empty or a host does not
/// resolve: isolating then would cut the Mac off its management.
pub fn plan(config: &IsolationConfig) -> Result<Plan, String> {
    if config.allow.is_empty() {
        return Err(
            "refused: [response.isolation] allow names no management host; isolating would cut this Mac off its management"
                .into(),
        );
    }
    let mgmt = config
        .allow
        .iter()
        .map(|s| resolve_entry(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("refused: {e}; not isolating"))?;
    let dns = if config.dns.is_empty() {
        system_resolvers()
    } else {
        config
            .dns
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|_| format!("refused: DNS resolver `{d}` is not an address"))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Plan {
        mgmt,
        dns,
        apple_push: config.apple_push,
    })
}

/// A refreshed plan: hosts re-resolved and their new addresses added to the ones they
/// had (a host that stops resolving, or an answer that leaves its old address out, never
/// takes an address away while isolated), at most [`MAX_ADDRS_PER_HOST`] each, the
/// newest kept.
pub fn refreshed(config: &IsolationConfig, previous: &Plan) -> Plan {
    let mut next = previous.clone();
    for (i, spec) in config.allow.iter().enumerate() {
        if let (Ok(now), Some(slot)) = (resolve_entry(spec), next.mgmt.get_mut(i)) {
            let mut nets = now.nets;
            for old in &slot.nets {
                if !nets.contains(old) {
                    nets.push(*old);
                }
            }
            nets.truncate(MAX_ADDRS_PER_HOST);
            slot.nets = nets;
        }
    }
    next
}

/// Which firewall is used.
pub fn backend_of(config: &IsolationConfig) -> Option<IsolationBackend> {
    match config.backend {
        IsolationBackend::Auto if cfg!(target_os = "macos") => Some(IsolationBackend::Pf),
        IsolationBackend::Auto => Some(IsolationBackend::Nftables),
        IsolationBackend::None => None,
        other => Some(other),
    }
}

fn set_elements<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The nftables script that replaces the isolation table atomically.
pub fn nft_rules(plan: &Plan) -> String {
    let mut s = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    s.push_str(&format!("table inet {NFT_TABLE} {{\n"));
    for (name, ty, v4) in [("mgmt4", "ipv4_addr", true), ("mgmt6", "ipv6_addr", false)] {
        let nets = plan.nets(v4);
        s.push_str(&format!(
            "  set {name} {{\n    type {ty}; flags interval;\n"
        ));
        if !nets.is_empty() {
            s.push_str(&format!("    elements = {{ {} }}\n", set_elements(nets)));
        }
        s.push_str("  }\n");
    }
    for (name, ty, v4) in [("dns4", "ipv4_addr", true), ("dns6", "ipv6_addr", false)] {
        let addrs = plan.resolvers(v4);
        s.push_str(&format!("  set {name} {{\n    type {ty};\n"));
        if !addrs.is_empty() {
            s.push_str(&format!("    elements = {{ {} }}\n", set_elements(addrs)));
        }
        s.push_str("  }\n");
    }
    let push = set_elements(APPLE_PUSH_PORTS);
    for (chain, hook, lo, addr, port_dir, dhcp, dhcp6, nd) in [
        (
            "output",
            "output",
            "oifname",
            "daddr",
            "dport",
            "udp sport 68 udp dport 67",
            "udp sport 546 udp dport 547",
            "nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert",
        ),
        (
            "input",
            "input",
            "iifname",
            "saddr",
            "sport",
            "udp sport 67 udp dport 68",
            "udp sport 547 udp dport 546",
            "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect",
        ),
    ] {
        s.push_str(&format!(
            "  chain {chain} {{\n    type filter hook {hook} priority -300; policy drop;\n"
        ));
        s.push_str(&format!("    {lo} \"lo\" accept\n"));
        s.push_str(&format!(
            "    ip {addr} @mgmt4 accept\n    ip6 {addr} @mgmt6 accept\n"
        ));
        for proto in ["udp", "tcp"] {
            s.push_str(&format!(
                "    ip {addr} @dns4 {proto} {port_dir} 53 accept\n    ip6 {addr} @dns6 {proto} {port_dir} 53 accept\n"
            ));
        }
        s.push_str(&format!("    {dhcp} accept\n    {dhcp6} accept\n"));
        s.push_str(&format!("    icmpv6 type {{ {nd} }} accept\n"));
        if plan.apple_push {
            s.push_str(&format!(
                "    ip {addr} 17.0.0.0/8 tcp {port_dir} {{ {push} }} accept\n"
            ));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The nftables script that replaces the management sets (a refresh).
pub fn nft_refresh(plan: &Plan) -> String {
    let mut s = String::new();
    for (name, v4) in [("mgmt4", true), ("mgmt6", false)] {
        s.push_str(&format!("flush set inet {NFT_TABLE} {name}\n"));
        let nets = plan.nets(v4);
        if !nets.is_empty() {
            s.push_str(&format!(
                "add element inet {NFT_TABLE} {name} {{ {} }}\n",
                set_elements(nets)
            ));
        }
    }
    s
}

/// The pf rules of the anchor.
pub fn pf_rules(plan: &Plan) -> String {
    let mgmt: BTreeSet<Net> = plan
        .nets(true)
        .into_iter()
        .chain(plan.nets(false))
        .collect();
    let dns: BTreeSet<IpAddr> = plan.dns.iter().copied().collect();
    let mut s =
        String::from("# ward network isolation: everything but the management set is blocked\n");
    s.push_str(&format!(
        "table <ward_mgmt> persist {{ {} }}\n",
        set_elements(mgmt)
    ));
    s.push_str(&format!(
        "table <ward_dns> persist {{ {} }}\n",
        set_elements(dns)
    ));
    s.push_str("pass quick on lo0 all\n");
    s.push_str("pass out quick proto { udp, tcp } to <ward_dns> port 53\n");
    s.push_str("pass out quick proto udp from any port 68 to any port 67\n");
    s.push_str("pass in quick proto udp from any port 67 to any port 68\n");
    s.push_str("pass out quick proto udp from any port 546 to any port 547\n");
    s.push_str("pass in quick proto udp from any port 547 to any port 546\n");
    s.push_str(
        "pass quick inet6 proto ipv6-icmp all icmp6-type { routersol, routeradv, neighbrsol, neighbradv }\n",
    );
    s.push_str("pass out quick to <ward_mgmt>\n");
    s.push_str("pass in quick from <ward_mgmt>\n");
    if plan.apple_push {
        s.push_str(&format!(
            "pass out quick proto tcp to 17.0.0.0/8 port {{ {} }}\n",
            set_elements(APPLE_PUSH_PORTS)
        ));
    }
    s.push_str("block drop quick all\n");
    s
}

/// Connects to every management host with a port; which answered.
pub fn probe(plan: &Plan, timeout: Duration) -> Vec<(String, bool)> {
    plan.mgmt
        .iter()
        .filter_map(|e| {
            let port = e.port?;
            let ok = e
                .nets
                .iter()
                .filter(|n| n.prefix == if n.addr.is_ipv4() { 32 } else { 128 })
                .any(|n| {
                    TcpStream::connect_timeout(&SocketAddr::new(n.addr, port), timeout).is_ok()
                });
            Some((e.spec.clone(), ok))
        })
        .collect()
}

/// The isolation backend at work.
pub struct Firewall {
    backend: IsolationBackend,
    program: PathBuf,
    work_dir: PathBuf,
}

impl Firewall {
    /// The backend `config` names (`None`: isolation refused), writing rule files into
    /// `work_dir` (the state directory).
    pub fn new(config: &IsolationConfig, work_dir: &Path) -> Option<Self> {
        let backend = backend_of(config)?;
        let program = config.program.clone().unwrap_or_else(|| {
            PathBuf::from(match backend {
                IsolationBackend::Pf => "/sbin/pfctl",
                _ => "nft",
            })
        });
        Some(Self {
            backend,
            program,
            work_dir: work_dir.to_path_buf(),
        })
    }

    /// `nftables` or `pf`.
    pub fn name(&self) -> &'static str {
        match self.backend {
            IsolationBackend::Pf => "pf",
            _ => "nftables",
        }
    }

    fn run(&self, args: &[&str], stdin_file: Option<&Path>) -> Result<String, String> {
        let mut argv: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        if let Some(f) = stdin_file {
            argv.push(f.display().to_string());
        }
        let run = run_bounded(&self.program, &argv, &[], COMMAND_TIMEOUT, 64 << 10)?;
        if run.code == Some(0) {
            Ok(format!("{}{}", run.stdout, run.stderr))
        } else {
            Err(format!(
                "{} {} failed ({:?}): {}",
                self.program.display(),
                argv.join(" "),
                run.code,
                run.stderr.trim()
            ))
        }
    }

    fn write_rules(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.work_dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Validates and loads the rules for `plan`; returns pf's enable token, if any.
    pub fn apply(&self, plan: &Plan) -> Result<Option<String>, String> {
        match self.backend {
            IsolationBackend::Pf => {
                let file = self.write_rules("isolation.pf.conf", &pf_rules(plan))?;
                self.run(&["-a", PF_ANCHOR, "-n", "-f"], Some(&file))
                    .map_err(|e| format!("the rules did not validate: {e}"))?;
                self.run(&["-a", PF_ANCHOR, "-f"], Some(&file))?;
                let said = self.run(&["-E"], None)?;
                let token = said
                    .lines()
                    .find_map(|l| l.split_once("Token :").map(|(_, t)| t.trim().to_owned()));
                Ok(token)
            }
            _ => {
                let file = self.write_rules("isolation.nft", &nft_rules(plan))?;
                self.run(&["-c", "-f"], Some(&file))
                    .map_err(|e| format!("the rules did not validate: {e}"))?;
                self.run(&["-f"], Some(&file))?;
                Ok(None)
            }
        }
    }

    /// Replaces the management addresses of a loaded isolation.
    pub fn refresh(&self, plan: &Plan) -> Result<(), String> {
        match self.backend {
            IsolationBackend::Pf => {
                let mut args: Vec<String> = ["-a", PF_ANCHOR, "-t", "ward_mgmt", "-T", "replace"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                args.extend(
                    plan.nets(true)
                        .iter()
                        .chain(plan.nets(false).iter())
                        .map(Net::to_string),
                );
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                self.run(&refs, None).map(|_| ())
            }
            _ => {
                let file = self.write_rules("isolation-refresh.nft", &nft_refresh(plan))?;
                self.run(&["-f"], Some(&file)).map(|_| ())
            }
        }
    }

    /// Takes the isolation down (already down is fine).
    pub fn release(&self, token: Option<&str>) -> Result<String, String> {
        match self.backend {
            IsolationBackend::Pf => {
                self.run(&["-a", PF_ANCHOR, "-F", "all"], None)?;
                if let Some(t) = token {
                    self.run(&["-X", t], None)?;
                }
                Ok("pf anchor flushed and pf's reference released".into())
            }
            _ => match self.run(&["delete", "table", "inet", NFT_TABLE], None) {
                Ok(_) => Ok(format!("nftables table {NFT_TABLE} deleted")),
                Err(e) if e.contains("No such file") || e.contains("does not exist") => {
                    Ok(format!("nftables table {NFT_TABLE} was already gone"))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Whether the isolation is loaded now.
    pub fn active(&self) -> bool {
        match self.backend {
            IsolationBackend::Pf => self
                .run(&["-a", PF_ANCHOR, "-s", "rules"], None)
                .is_ok_and(|r| r.contains("block drop")),
            _ => self
                .run(&["list", "table", "inet", NFT_TABLE], None)
                .is_ok(),
        }
    }

    /// Isolates: resolve (done by the caller into `plan`), probe, load, probe again, roll
    /// back if a management host stopped answering.
    pub fn isolate(
        &self,
        plan: &Plan,
        selftest: Duration,
    ) -> Result<(Outcome, Option<String>), String> {
        let before = probe(plan, selftest);
        let token = self.apply(plan)?;
        let after = probe(plan, selftest);
        let lost: Vec<&str> = before
            .iter()
            .filter(|(spec, ok)| *ok && after.iter().any(|(s, now)| s == spec && !now))
            .map(|(s, _)| s.as_str())
            .collect();
        if !lost.is_empty() {
            let rolled = self.release(token.as_deref());
            return Err(format!(
                "rolled back: management host(s) {} answered before isolation and not after ({})",
                lost.join(", "),
                rolled.unwrap_or_else(|e| format!("ROLLBACK FAILED: {e}"))
            ));
        }
        let untested: Vec<&str> = plan
            .mgmt
            .iter()
            .filter(|e| e.port.is_none())
            .map(|e| e.spec.as_str())
            .collect();
        let mut out = Outcome::new(format!(
            "isolated with {} ({} management host(s) reachable after loading)",
            self.name(),
            after.iter().filter(|(_, ok)| *ok).count()
        ))
        .with("backend", self.name())
        .with(
            "management",
            plan.mgmt
                .iter()
                .map(|e| format!("{} → {}", e.spec, set_elements(e.nets.iter())))
                .collect::<Vec<_>>(),
        )
        .with(
            "dns",
            plan.dns.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
        )
        .with(
            "selftest",
            after
                .iter()
                .map(|(s, ok)| format!("{s}: {}", if *ok { "reachable" } else { "unreachable" }))
                .collect::<Vec<_>>(),
        );
        if !untested.is_empty() {
            out = out.with("not_self_tested", untested);
        }
        if let Some(t) = &token {
            out = out.with("pf_token", t.clone());
        }
        Ok((out, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(allow: &[&str]) -> Plan {
        plan(&IsolationConfig {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            dns: vec!["10.0.0.53".into(), "fd00::53".into()],
            ..IsolationConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn entries_parse_and_unresolvable_hosts_refuse() {
        let e = resolve_entry("10.77.0.2:8443").unwrap();
        assert_eq!(
            (e.nets[0].to_string(), e.port),
            ("10.77.0.2".into(), Some(8443))
        );
        let e = resolve_entry("10.0.0.0/8").unwrap();
        assert_eq!(e.nets[0].to_string(), "10.0.0.0/8");
        let e = resolve_entry("[fd00::1]:443").unwrap();
        assert_eq!(
            (e.nets[0].to_string(), e.port),
            ("fd00::1".into(), Some(443))
        );
        let e = resolve_entry("localhost:8443").unwrap();
        assert!(!e.nets.is_empty());
        assert!(resolve_entry("10.0.0.0/40").is_err());
        assert!(resolve_entry("host.invalid:443").is_err());
        let err = plan(&IsolationConfig {
            allow: vec!["jamf.invalid:443".into()],
            ..IsolationConfig::default()
        })
        .unwrap_err();
        assert!(err.contains("not isolating"), "{err}");
        let err = plan(&IsolationConfig::default()).unwrap_err();
        assert!(err.contains("names no management host"), "{err}");
    }

    #[test]
    fn rules_keep_the_management_set() {
        let p = plan_of(&["10.77.0.2:8443", "fd00::2", "192.168.0.0/16"]);
        let nft = nft_rules(&p);
        assert!(nft.starts_with("table inet ward_isolation\ndelete table inet ward_isolation\n"));
        assert!(
            nft.contains("elements = { 10.77.0.2, 192.168.0.0/16 }"),
            "{nft}"
        );
        assert!(nft.contains("elements = { fd00::2 }"), "{nft}");
        assert!(nft.contains("policy drop"));
        assert!(nft.contains("ip daddr @dns4 udp dport 53 accept"));
        assert!(nft.contains("udp sport 68 udp dport 67 accept"));
        assert!(nft.contains("ip daddr 17.0.0.0/8 tcp dport { 443, 2197, 5223 } accept"));
        let pf = pf_rules(&p);
        assert!(
            pf.contains("table <ward_mgmt> persist { 10.77.0.2, 192.168.0.0/16, fd00::2 }"),
            "{pf}"
        );
        assert!(
            pf.contains("table <ward_dns> persist { 10.0.0.53, fd00::53 }"),
            "{pf}"
        );
        assert!(pf.trim_end().ends_with("block drop quick all"));
        let refresh = nft_refresh(&p);
        assert!(refresh.contains("flush set inet ward_isolation mgmt4"));
    }
}
