//! The composition root: builds the runtime, the process table, the registry's plugins
//! and the detection pipeline from a config, and opens the configured source. `ward
//! replay` and `ward run` both start here.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, bail};

use crate::config::{SourceConfig, WardConfig};
use crate::detect::pipeline::Pipeline;
use crate::ingest::eslogger::{EsloggerConfig, EsloggerReader};
use crate::ingest::follow::FollowReader;
use crate::registry::load::{LoadOptions, PluginSource, load};
use crate::sandbox::runtime::Runtime;
use crate::sandbox::state::SharedProcessTable;

/// Builds the runtime and pipeline from `config`, plus extra unpinned plugins.
pub fn build_pipeline(config: &WardConfig, extra: &[PathBuf]) -> anyhow::Result<(Pipeline, usize)> {
    let rt = Arc::new(Runtime::new(
        config.limits(),
        config.cache_dir().as_deref(),
    )?);
    let processes: SharedProcessTable = Arc::new(RwLock::new(
        ward_event::ProcessTable::new(config.agent.process_table_capacity)
            .with_byte_budget(config.agent.process_table_bytes),
    ));
    let mut loaded = crate::registry::load_all(&rt, config, &processes);
    for path in extra {
        match PluginSource::from_file(path)
            .and_then(|s| load(&rt, &s, &LoadOptions::default(), &processes))
        {
            Ok(p) => loaded.plugins.push(p),
            Err(e) => {
                tracing::error!(error = %e, "plugin refused");
                loaded.errors.push(e);
            }
        }
    }
    for e in &loaded.errors {
        eprintln!("ward: {e}");
    }
    // An agent that detects nothing must not look like one that found nothing.
    let detectors = loaded
        .plugins
        .iter()
        .filter(|p| p.kind() == crate::sandbox::plugin::Kind::Detector)
        .count();
    if detectors == 0 {
        if loaded.errors.is_empty() {
            bail!("no detector to run: the default content is off and no detector is configured");
        }
        bail!(
            "no detector to run: every one was refused ({} refused, see above)",
            loaded.errors.len()
        );
    }
    Ok((
        Pipeline::new(rt, loaded.plugins, processes, config.pipeline()),
        loaded.errors.len(),
    ))
}

/// The stream at `input` (`-` for standard input).
pub fn open_input(input: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if input.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        bail!("{} is a directory, not an eslogger stream", input.display());
    }
    Ok(Box::new(file))
}

/// Opens the configured source; `stop` ends the never-ending ones (follow, eslogger).
pub fn open_source(
    config: &WardConfig,
    pipeline: &Pipeline,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Box<dyn Read + Send>> {
    Ok(match &config.source {
        Some(SourceConfig::File { path }) => open_input(&config.resolve(path))?,
        Some(SourceConfig::Stdin) | None => open_input(Path::new("-"))?,
        Some(SourceConfig::Follow { path, from_start }) => {
            let reader = FollowReader::open(&config.resolve(path), *from_start, stop)
                .with_context(|| format!("cannot follow {}", path.display()))?;
            Box::new(reader)
        }
        Some(SourceConfig::Eslogger { program, kinds }) => {
            let kinds = match kinds {
                Some(k) => k.clone(),
                None => pipeline.subscribed_kinds().unwrap_or_else(|| {
                    ward_event::model::TYPED_KINDS
                        .iter()
                        .map(|(k, _)| (*k).to_owned())
                        .collect()
                }),
            };
            let program = program.clone().unwrap_or_else(|| PathBuf::from("eslogger"));
            Box::new(EsloggerReader::start(
                EsloggerConfig { program, kinds },
                stop,
            )?)
        }
    })
}
