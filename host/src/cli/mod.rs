//! Command-line interface (the CLI contract of DESIGN.md): clap, dispatch, and the
//! developer tools.

pub mod analytics;
pub mod bench;
pub mod plugin_test;
pub mod scaffold;
pub mod synth;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::WardConfig;
use crate::detect::pipeline::Summary;
use crate::detect::run::run_stream;
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
    },
    /// Run the agent with a policy file until the source ends or SIGINT/SIGTERM.
    Run {
        /// Policy file.
        #[arg(long)]
        config: PathBuf,
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
    /// Write a seeded synthetic eslogger stream shaped like a busy Mac.
    Gen {
        /// Number of events.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Seed; the same seed always gives the same stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
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
        } => replay(&input, config.as_deref(), &plugins, no_default_content),
        Command::Run { config } => run_agent(&config),
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
        Command::Gen { events, seed, out } => {
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    crate::cli::synth::write_stream(
                        events,
                        seed,
                        &mut std::io::BufWriter::new(file),
                    )
                }
                None => crate::cli::synth::write_stream(
                    events,
                    seed,
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                ),
            }
            .context("writing the stream")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            events,
            batch,
            suite,
        } => {
            crate::cli::bench::run(events, batch, suite)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

fn replay(
    input: &Path,
    config: Option<&Path>,
    extra: &[PathBuf],
    no_default_content: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = load_config(config)?;
    if no_default_content {
        config.agent.default_content = false;
    }
    let reader = crate::agent::open_input(input)?;
    let (pipeline, refused) = crate::agent::build_pipeline(&config, extra)?;
    let summary = tokio_runtime()?.block_on(run_stream(pipeline, reader, std::io::stdout()))?;
    print_summary("replay", &summary, refused);
    Ok(ExitCode::SUCCESS)
}

fn run_agent(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = WardConfig::load(config_path)?;
    let (pipeline, refused) = crate::agent::build_pipeline(&config, &[])?;
    if let Some(kinds) = pipeline.subscribed_kinds() {
        tracing::info!(kinds = %kinds.join(" "), "event kinds the loaded detectors subscribe to");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = crate::agent::open_source(&config, &pipeline, Arc::clone(&stop))?;
    let rt = tokio_runtime()?;
    let summary = rt.block_on(async {
        let mut work = Box::pin(run_stream(pipeline, reader, std::io::stdout()));
        tokio::select! {
            result = &mut work => result,
            _ = shutdown_signal() => {
                eprintln!("ward run: signal received, draining");
                stop.store(true, Ordering::Relaxed);
                match tokio::time::timeout(Duration::from_secs(5), work).await {
                    Ok(result) => result,
                    Err(_) => {
                        eprintln!("ward run: the source did not stop within 5 s; exiting");
                        Ok(Summary::default())
                    }
                }
            }
        }
    })?;
    print_summary("run", &summary, refused);
    // Blocking reader threads may still wait on input; do not hold the exit for them.
    rt.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
