//! Command-line interface (the CLI contract of DESIGN.md): clap, dispatch, and the
//! developer tools.

pub mod alerts;
pub mod analytics;
pub mod bench;
pub mod bench_content;
pub mod bench_forward;
pub mod bench_live;
pub mod bench_respond;
pub mod bench_steady;
pub mod ctl;
pub mod fleet;
pub mod plugin_test;
pub mod respond;
pub mod scaffold;
pub mod synth;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::WardConfig;
use crate::detect::pipeline::Summary;
use crate::registry::load::LoadOptions;

/// ward: macOS incident response with sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "ward", version, about)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the full pipeline over a recorded eslogger stream; findings to stdout as NDJSON.
    Replay {
        /// eslogger JSON lines file, or `-` for stdin.
        input: PathBuf,
        /// Policy file (default: built-in content, default limits).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also load this component (unpinned); repeatable.
        #[arg(long = "plugin")]
        plugins: Vec<PathBuf>,
        /// Do not run the built-in first-party plugins.
        #[arg(long)]
        no_default_content: bool,
        /// State directory for the playbooks' records (default: the config's).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Carry out the playbooks' actions. Without it every action is recorded as
        /// `dry-run` with what would have been done, and nothing on this machine changes.
        #[arg(long)]
        execute: bool,
    },
    /// Run the agent with a policy file until the source ends or SIGINT/SIGTERM.
    Run {
        /// Policy file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Talk to a running agent (`ward run`) over its control socket.
    Ctl {
        /// The control socket (default: the config's `control_socket`, or
        /// `<state_dir>/ward.sock`).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The agent's policy file, to find its socket.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the answer as one JSON document.
        #[arg(long)]
        json: bool,
        /// What to ask.
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Response actions: list them; approve, deny or undo one.
    Actions {
        /// What to do.
        #[command(subcommand)]
        command: ActionsCommand,
    },
    /// Incidents: the findings of one process tree, their actions and evidence.
    Incidents {
        /// State directory (default: the config's).
        #[arg(long)]
        state: Option<PathBuf>,
        /// The agent's policy file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// The findings committed to the outbox, with the agent running or not.
    Alerts {
        /// What to do.
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// The fleet: response commands to Macs over NATS JetStream.
    Fleet {
        /// What to do.
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// The hash-chained audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Plugin development tools.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Jamf Protect custom analytics.
    Analytics {
        /// What to do.
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Write a synthetic eslogger stream: a busy, quiet Mac (seeded) or a Mac under attack.
    Gen {
        /// Number of events.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Seed; the same seed always gives the same stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// What the stream looks like.
        #[arg(long, value_enum, default_value_t = crate::cli::synth::Mix::Quiet)]
        mix: crate::cli::synth::Mix,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure throughput: parse only, a native detector, and the same detector as a
    /// sandboxed component called per event and batched.
    Bench {
        /// Events to generate.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per batched call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Which measurements.
        #[arg(long, value_enum, default_value_t = crate::cli::bench::Suite::All)]
        suite: crate::cli::bench::Suite,
        /// Seconds of the steady suite's busy window (2,000 events/s).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
    },
}

/// `ward ctl …`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Uptime, counts, reloads.
    Status,
    /// The plugins running: version, mode, probation, full sha-256, origin.
    Plugins,
    /// Per-plugin accounting: calls, events, ns per event p50/p99, faults, memory.
    Stats,
    /// Load (or swap in) a component; its `[[plugins]]` entry by name gives its settings.
    Load {
        /// The component.
        path: PathBuf,
    },
    /// Take a plugin out, by name.
    Unload {
        /// Its name.
        name: String,
    },
    /// Re-read the config file and apply it (as SIGHUP does).
    Reload,
    /// Set a plugin's mode.
    Mode {
        /// Its name.
        name: String,
        /// The mode.
        #[arg(value_parser = ["enforce", "shadow", "disabled"])]
        mode: String,
    },
}

/// Where `ward actions` and `ward audit` find the state.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// State directory (default: the config's `state_dir`).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The agent's policy file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `ward fleet …`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Publish a signed command (a `ward ctl` request: mode, approve, deny, undo, reload,
    /// status, plugins, stats) to Macs, and print their results.
    Send {
        /// `nats://host:port`.
        #[arg(long)]
        address: String,
        /// A NATS `.creds` file.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// The fleet's secret key (`ward plugin keygen`); its public key must be in the
        /// Macs' `[fleet] trusted_keys`.
        #[arg(long)]
        key: PathBuf,
        /// `device:<serial or host name>`, `group:<smart group>` or `all`.
        #[arg(long)]
        to: String,
        /// Seconds the command stays valid (a Mac that is off longer never runs it).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
        expires: u64,
        /// Results to wait for.
        #[arg(long, default_value_t = 0)]
        wait: usize,
        /// Seconds to wait for them.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// The request as JSON, e.g. `{"cmd":"mode","name":"command-abuse","mode":"shadow"}`.
        request: String,
    },
}

/// `ward alerts …`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// The newest findings, oldest first (`--json`: one record per line, with its
    /// idempotency key `id`).
    List {
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
        /// Only events at or after this: an RFC 3339 time or a duration back (15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this severity and above.
        #[arg(long)]
        severity: Option<String>,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// The kind of record: `finding` (default), `audit` (the response stage's audit
        /// records forwarded by `ward run`) or `all`.
        #[arg(long, default_value = "finding", value_parser = ["finding", "audit", "all"])]
        kind: String,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        limit: u64,
    },
    /// One finding, whole, by its key or sequence number.
    Show {
        /// Its `id` or `seq`.
        id: String,
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// As one JSON line.
        #[arg(long)]
        json: bool,
    },
}

/// `ward actions …`.
#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// Every action with its status (`--json`: one record per line).
    List {
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
        /// Only actions in this status (e.g. `pending-approval`).
        #[arg(long)]
        status: Option<String>,
    },
    /// Carry out an action waiting for approval.
    Approve {
        /// The action.
        id: i64,
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// The running agent's control socket.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Deny an action waiting for approval.
    Deny {
        /// The action.
        id: i64,
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// The running agent's control socket.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Revert a reversible action early (release isolation, restore from quarantine,
    /// remove a prevent-list entry, clear a tag, leave the penalty box).
    Undo {
        /// The action.
        id: i64,
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// The running agent's control socket.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

/// `ward audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: exit 0 when intact, 1 naming the first broken record.
    Verify {
        /// Where.
        #[command(flatten)]
        at: StateArgs,
    },
    /// Print every record.
    List {
        /// Where.
        #[command(flatten)]
        at: StateArgs,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
}

/// `ward analytics …`.
#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// Load every analytic (`*.yaml`, `*.yml`) under a directory and report each one that does
    /// not parse with its file, line, column and what was expected. Exit 1 if any failed.
    Check {
        /// Directory of analytics (searched recursively).
        dir: PathBuf,
    },
}

/// `ward plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run one plugin in the real sandbox against recorded events.
    Test {
        /// The component.
        plugin: PathBuf,
        /// eslogger JSON lines to feed it.
        #[arg(long)]
        events: PathBuf,
        /// Expected output (NDJSON); each line must match the output line at the same
        /// position on every field it names. Exit 1 on any difference.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Write the output to the --expect file instead of comparing.
        #[arg(long, requires = "expect")]
        bless: bool,
        /// Plugin config value, `key=value`; repeatable.
        #[arg(long = "set", value_parser = parse_key_value)]
        settings: Vec<(String, String)>,
        /// Grant a capability (e.g. `file-read`); repeatable.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Directory a `file-read` grant covers; repeatable.
        #[arg(long = "file-scope")]
        file_scope: Vec<PathBuf>,
    },
    /// Make a publisher's ed25519 key pair: the secret key (hex) goes to `--out`, created
    /// owner-only; the public key (what `[agent] trusted_keys` lists) is printed.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component with a publisher's secret key: writes `<component>.sig` beside it
    /// and prints the public key that verifies it.
    Sign {
        /// The component.
        plugin: PathBuf,
        /// The secret key file (`ward plugin keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Scaffold a plugin crate that depends on ward-sdk.
    New {
        /// Crate name (kebab-case).
        name: String,
        /// Which world.
        #[arg(long, value_parser = ["detector", "collector", "remediator"])]
        kind: String,
        /// Parent directory (default: current).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path to the ward-sdk crate (default: a git-free path dependency you edit).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// Sets up `tracing` on stderr.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay {
            input,
            config,
            plugins,
            no_default_content,
            state,
            execute,
        } => replay(
            &input,
            config.as_deref(),
            &plugins,
            no_default_content,
            state.as_deref(),
            execute,
        ),
        Command::Actions { command } => {
            use crate::cli::respond::{Verb, act, list};
            let (at, what) = match &command {
                ActionsCommand::List { at, .. } => (at, None),
                ActionsCommand::Approve { at, id, socket } => {
                    (at, Some((Verb::Approve, *id, socket)))
                }
                ActionsCommand::Deny { at, id, socket } => (at, Some((Verb::Deny, *id, socket))),
                ActionsCommand::Undo { at, id, socket } => (at, Some((Verb::Undo, *id, socket))),
            };
            let config = load_config(at.config.as_deref())?;
            let dir = crate::cli::respond::state_dir(at.state.as_deref(), &config);
            match (what, &command) {
                (Some((verb, id, socket)), _) => act(
                    verb,
                    id,
                    &dir,
                    &config,
                    socket.as_deref(),
                    at.config.as_deref(),
                ),
                (None, ActionsCommand::List { json, status, .. }) => {
                    list(&dir, *json, status.as_deref())
                }
                (None, _) => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Incidents {
            state,
            config,
            json,
        } => {
            let config = load_config(config.as_deref())?;
            let dir = crate::cli::respond::state_dir(state.as_deref(), &config);
            crate::cli::respond::incidents(&dir, json)
        }
        Command::Fleet {
            command:
                FleetCommand::Send {
                    address,
                    credentials,
                    key,
                    to,
                    expires,
                    wait,
                    timeout,
                    request,
                },
        } => crate::cli::fleet::send(&crate::cli::fleet::Send {
            address: &address,
            credentials: credentials.as_deref(),
            key: &key,
            to: &to,
            request: &request,
            expires,
            wait,
            timeout: std::time::Duration::from_secs(timeout),
        }),
        Command::Alerts { command } => match command {
            AlertsCommand::List {
                at,
                json,
                since,
                severity,
                rule,
                plugin,
                kind,
                limit,
            } => {
                let config = load_config(at.config.as_deref())?;
                let dir = crate::cli::respond::state_dir(at.state.as_deref(), &config);
                let query = crate::forward::outbox::Query {
                    since_ms: since
                        .as_deref()
                        .map(|s| crate::cli::alerts::parse_since(s, crate::clock::now_ms()))
                        .transpose()?,
                    min_severity: severity
                        .as_deref()
                        .map(crate::cli::alerts::parse_severity)
                        .transpose()?,
                    rule,
                    plugin,
                    kind: (kind != "all").then_some(kind),
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                };
                crate::cli::alerts::list(&dir, &query, json)
            }
            AlertsCommand::Show { id, at, json } => {
                let config = load_config(at.config.as_deref())?;
                let dir = crate::cli::respond::state_dir(at.state.as_deref(), &config);
                crate::cli::alerts::show(&dir, &id, json)
            }
        },
        Command::Audit { command } => {
            let (at, list) = match &command {
                AuditCommand::Verify { at } => (at, None),
                AuditCommand::List { at, json } => (at, Some(*json)),
            };
            let config = load_config(at.config.as_deref())?;
            let dir = crate::cli::respond::state_dir(at.state.as_deref(), &config);
            match list {
                None => crate::cli::respond::verify(&dir),
                Some(json) => crate::cli::respond::audit_list(&dir, json),
            }
        }
        Command::Run { config } => run_agent(&config),
        Command::Ctl {
            socket,
            config,
            json,
            command,
        } => {
            let socket = match (socket, config) {
                (Some(s), _) => s,
                (None, Some(c)) => WardConfig::load(&c)?.control_socket(),
                (None, None) => WardConfig::default().control_socket(),
            };
            use crate::operate::control::Request;
            let request = match command {
                CtlCommand::Status => Request::Status,
                CtlCommand::Plugins => Request::Plugins,
                CtlCommand::Stats => Request::Stats,
                CtlCommand::Load { path } => Request::Load {
                    path: std::path::absolute(&path).unwrap_or(path),
                },
                CtlCommand::Unload { name } => Request::Unload { name },
                CtlCommand::Reload => Request::Reload,
                CtlCommand::Mode { name, mode } => Request::Mode {
                    name,
                    mode: match mode.as_str() {
                        "enforce" => crate::sandbox::plugin::Mode::Enforce,
                        "shadow" => crate::sandbox::plugin::Mode::Shadow,
                        _ => crate::sandbox::plugin::Mode::Disabled,
                    },
                },
            };
            crate::cli::ctl::run(&socket, request, json)
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    events,
                    expect,
                    bless,
                    settings,
                    grants,
                    file_scope,
                },
        } => {
            let options = LoadOptions {
                config: settings.into_iter().collect(),
                grants,
                file_scope,
                ..LoadOptions::default()
            };
            crate::cli::plugin_test::run(&plugin, &events, expect.as_deref(), bless, options)
        }
        Command::Plugin {
            command: PluginCommand::Keygen { out },
        } => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let (secret, public) = crate::registry::signature::generate()
                .context("reading the system's random source")?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| {
                    format!("cannot create {} (it must not exist yet)", out.display())
                })?;
            writeln!(file, "{secret}").with_context(|| format!("writing {}", out.display()))?;
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Sign { plugin, key },
        } => {
            let secret = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let bytes = std::fs::read(&plugin)
                .with_context(|| format!("cannot read {}", plugin.display()))?;
            let (sig, public) = crate::registry::signature::sign(&secret, &bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let path = crate::registry::signature::signature_path(&plugin);
            std::fs::write(&path, format!("{sig}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("ward plugin sign: wrote {}", path.display());
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    kind,
                    dir,
                    sdk_path,
                },
        } => {
            crate::cli::scaffold::new_plugin(&name, &kind, &dir, sdk_path.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analytics {
            command: AnalyticsCommand::Check { dir },
        } => crate::cli::analytics::check(&dir),
        Command::Gen {
            events,
            seed,
            mix,
            out,
        } => {
            let sink: Box<dyn std::io::Write> = match out {
                Some(path) => Box::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let bar = progress_bar(Some(events), "events");
            let mut sink = std::io::BufWriter::new(CountedLines {
                inner: sink,
                bar: bar.clone(),
            });
            crate::cli::synth::write_mix(events, seed, mix, &mut sink)
                .and_then(|()| std::io::Write::flush(&mut sink))
                .context("writing the stream")?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            events,
            batch,
            suite,
            seconds,
        } => {
            crate::cli::bench::run(events, batch, suite, seconds)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn load_config(path: Option<&Path>) -> anyhow::Result<WardConfig> {
    Ok(match path {
        Some(p) => WardConfig::load(p)?,
        None => WardConfig::default(),
    })
}

fn print_summary(command: &str, summary: &Summary, refused: usize) {
    eprintln!("ward {command}: {summary}");
    if refused > 0 {
        eprintln!("ward {command}: {refused} plugin(s) refused (see above)");
    }
}

/// A progress bar on stderr when it is a terminal (never when piped or redirected).
/// `bytes` counts bytes, `events` lines.
fn progress_bar(total: Option<u64>, unit: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let template = if unit == "bytes" {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{bar:40} {pos}/{len} events {per_sec} eta {eta}"
    };
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    Some(bar)
}

/// Counts the lines written into a progress bar, if there is one.
struct CountedLines<W> {
    inner: W,
    bar: Option<indicatif::ProgressBar>,
}

impl<W: std::io::Write> std::io::Write for CountedLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(bar) = &self.bar {
            let lines = buf
                .get(..n)
                .unwrap_or_default()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            bar.inc(lines as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Counts what is read into a progress bar.
struct Counted<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn replay(
    input: &Path,
    config_path: Option<&Path>,
    extra: &[PathBuf],
    no_default_content: bool,
    state: Option<&Path>,
    execute: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = load_config(config_path)?;
    if no_default_content {
        config.agent.default_content = false;
    }
    // Playbooks (or an explicit --state) bring the response stage.
    let respond = !config.playbooks.is_empty() || state.is_some();
    let state_dir = crate::cli::respond::state_dir(state, &config);
    // Never beside an agent (or another replay) writing the same state.
    let _lock = if respond {
        config.blocks = crate::agent::response::stored_blocks(&state_dir);
        Some(crate::respond::store::StateLock::take(&state_dir)?)
    } else {
        None
    };
    // With a state directory, findings are committed to its outbox (`ward alerts`).
    let bell = crate::forward::outbox::Bell::default();
    let (outbox, sinks) = if respond {
        (
            Some(config.open_outbox(&state_dir)?.with_bell(bell.clone())),
            Some(crate::forward::sink::Sinks::start(
                &config, &state_dir, bell,
            )?),
        )
    } else {
        (None, None)
    };
    let mut reader = crate::agent::open_input(input)?;
    let mut startup = crate::agent::start(&config, extra)?;
    for (e, _) in &startup.refused {
        eprintln!("ward: {e}");
    }
    let response = if respond {
        Some(crate::agent::response::start(
            &config,
            &mut startup,
            state_dir.clone(),
            execute,
            config_path,
            None,
            None,
        )?)
    } else {
        None
    };
    let size = (input.as_os_str() != "-")
        .then(|| std::fs::metadata(input).ok().map(|m| m.len()))
        .flatten();
    let bar = progress_bar(size, "bytes");
    if let Some(bar) = &bar {
        reader = Box::new(Counted {
            inner: reader,
            bar: bar.clone(),
        });
    }
    let (tx, rx) = crate::detect::run::stage_channel();
    let records = startup.refused_records();
    if !records.is_empty() {
        let _ = tx.try_send(crate::detect::run::StageMsg::Records(records));
    }
    let lines = crate::ingest::LineReader::new(reader, startup.pipeline.options().max_line_bytes);
    let committer = outbox.map(crate::forward::outbox::Committer::new);
    let failed = committer
        .as_ref()
        .map(|c| std::sync::Arc::clone(&c.failed))
        .unwrap_or_default();
    let summary = tokio_runtime()?.block_on(crate::detect::run::run_with_response(
        startup.pipeline,
        Box::new(lines),
        std::io::stdout(),
        (tx, rx),
        crate::detect::run::LiveView::default(),
        response.as_ref().map(|r| r.offer.clone()),
        committer,
    ))?;
    if let Some(line) = failed.summary() {
        eprintln!("ward replay: {line}");
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let named = startup.refused.iter().filter(|(_, n)| *n).count();
    print_summary("replay", &summary, startup.refused.len());
    if let Some(sinks) = sinks.filter(|s| !s.is_empty()) {
        eprintln!(
            "ward replay: {}",
            sinks.finish(std::time::Duration::from_secs(config.agent.sink_drain_secs))
        );
    }
    if let Some(response) = response {
        let responded = response.finish();
        eprintln!(
            "ward replay: {responded}{}; records in {}",
            if execute {
                ""
            } else {
                " (dry run: nothing was changed; --execute carries actions out)"
            },
            state_dir.display()
        );
    }
    if named > 0 {
        eprintln!(
            "ward replay: {named} plugin(s) named on the command line or in the config were refused"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_agent(config_path: &Path) -> anyhow::Result<ExitCode> {
    crate::agent::run(config_path)
}
