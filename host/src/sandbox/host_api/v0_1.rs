//! The imports of `ward:plugin@0.1.0`, answered by the current implementations: a 0.1.0
//! component gets exactly what it got before 0.2.0, through the same scopes, caps and
//! deadlines. Only the shapes that 0.2.0 changed are converted (a process record keeps its
//! shape but is a distinct Rust type per package; `file-metadata` gained fields).

use crate::sandbox::bindings::collector::ward::plugin::files as files_now;
use crate::sandbox::bindings::detector::ward::plugin::enrich as enrich_now;
use crate::sandbox::bindings::detector::ward::plugin::host as host_now;
use crate::sandbox::bindings::detector::ward::plugin::process_table as table_now;
use crate::sandbox::bindings::v0_1::collector::ward::plugin::files as files_then;
use crate::sandbox::bindings::v0_1::detector::ward::plugin::enrich as enrich_then;
use crate::sandbox::bindings::v0_1::detector::ward::plugin::host as host_then;
use crate::sandbox::bindings::v0_1::detector::ward::plugin::process_table as table_then;
use crate::sandbox::bindings::v0_1::detector::ward::plugin::types as then;
use crate::sandbox::bindings::wit as now;
use crate::sandbox::state::PluginState;

impl then::Host for PluginState {}

fn token_now(t: then::AuditToken) -> now::AuditToken {
    now::AuditToken {
        pid: t.pid,
        pidversion: t.pidversion,
        auid: t.auid,
        euid: t.euid,
        egid: t.egid,
        ruid: t.ruid,
        rgid: t.rgid,
        asid: t.asid,
    }
}

fn token_then(t: now::AuditToken) -> then::AuditToken {
    then::AuditToken {
        pid: t.pid,
        pidversion: t.pidversion,
        auid: t.auid,
        euid: t.euid,
        egid: t.egid,
        ruid: t.ruid,
        rgid: t.rgid,
        asid: t.asid,
    }
}

fn file_then(f: now::File) -> then::File {
    then::File {
        path: f.path,
        path_truncated: f.path_truncated,
        stat: f.stat.map(|s| then::FileStat {
            dev: s.dev,
            ino: s.ino,
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            flags: s.flags,
            mtime: s.mtime,
            birthtime: s.birthtime,
        }),
    }
}

fn signer_then(s: now::SignerType) -> then::SignerType {
    match s {
        now::SignerType::Apple => then::SignerType::Apple,
        now::SignerType::AppStore => then::SignerType::AppStore,
        now::SignerType::DeveloperId => then::SignerType::DeveloperId,
        now::SignerType::Development => then::SignerType::Development,
        now::SignerType::Adhoc => then::SignerType::Adhoc,
        now::SignerType::Unsigned => then::SignerType::Unsigned,
    }
}

fn process_then(p: now::Process) -> then::Process {
    then::Process {
        token: token_then(p.token),
        ppid: p.ppid,
        original_ppid: p.original_ppid,
        group_id: p.group_id,
        session_id: p.session_id,
        codesigning_flags: p.codesigning_flags,
        is_platform_binary: p.is_platform_binary,
        is_es_client: p.is_es_client,
        cdhash: p.cdhash,
        signing_id: p.signing_id,
        team_id: p.team_id,
        executable: file_then(p.executable),
        tty: p.tty.map(file_then),
        start_time: p.start_time,
        parent_token: p.parent_token.map(token_then),
        responsible_token: p.responsible_token.map(token_then),
        cs_validation_category: p.cs_validation_category,
        signer: signer_then(p.signer),
    }
}

impl host_then::Host for PluginState {
    fn log(&mut self, level: host_then::LogLevel, message: String) {
        let level = match level {
            host_then::LogLevel::Trace => host_now::LogLevel::Trace,
            host_then::LogLevel::Debug => host_now::LogLevel::Debug,
            host_then::LogLevel::Info => host_now::LogLevel::Info,
            host_then::LogLevel::Warn => host_now::LogLevel::Warn,
            host_then::LogLevel::Error => host_now::LogLevel::Error,
        };
        host_now::Host::log(self, level, message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        host_now::Host::config(self, key)
    }
}

impl table_then::Host for PluginState {
    fn lookup(&mut self, token: then::AuditToken) -> Option<then::Process> {
        table_now::Host::lookup(self, token_now(token)).map(process_then)
    }

    fn ancestors(&mut self, token: then::AuditToken, max_depth: u32) -> Vec<then::Process> {
        table_now::Host::ancestors(self, token_now(token), max_depth)
            .into_iter()
            .map(process_then)
            .collect()
    }
}

fn file_error_then(e: files_now::FileError) -> files_then::FileError {
    match e {
        files_now::FileError::Denied(m) => files_then::FileError::Denied(m),
        files_now::FileError::Io(m) => files_then::FileError::Io(m),
    }
}

impl files_then::Host for PluginState {
    fn metadata(
        &mut self,
        path: String,
    ) -> Result<Option<files_then::FileMetadata>, files_then::FileError> {
        files_now::Host::metadata(self, path)
            .map(|m| {
                m.map(|m| files_then::FileMetadata {
                    size: m.size,
                    mode: m.mode,
                    uid: m.uid,
                    mtime: m.mtime,
                    is_dir: m.is_dir,
                    is_symlink: m.is_symlink,
                })
            })
            .map_err(file_error_then)
    }

    fn sha256(&mut self, path: String) -> Result<Option<String>, files_then::FileError> {
        files_now::Host::sha256(self, path).map_err(file_error_then)
    }

    fn read(
        &mut self,
        path: String,
        offset: u64,
        max_bytes: u32,
    ) -> Result<Option<Vec<u8>>, files_then::FileError> {
        files_now::Host::read(self, path, offset, max_bytes).map_err(file_error_then)
    }
}

fn enrich_error_then(e: enrich_now::EnrichError) -> enrich_then::EnrichError {
    match e {
        enrich_now::EnrichError::Denied(m) => enrich_then::EnrichError::Denied(m),
        enrich_now::EnrichError::Io(m) => enrich_then::EnrichError::Io(m),
    }
}

impl enrich_then::Host for PluginState {
    fn sha256(&mut self, path: String) -> Result<Option<String>, enrich_then::EnrichError> {
        enrich_now::Host::sha256(self, path).map_err(enrich_error_then)
    }

    fn xattrs(
        &mut self,
        path: String,
    ) -> Result<Option<Vec<enrich_then::Xattr>>, enrich_then::EnrichError> {
        enrich_now::Host::xattrs(self, path)
            .map(|x| {
                x.map(|list| {
                    list.into_iter()
                        .map(|x| enrich_then::Xattr {
                            name: x.name,
                            value: x.value,
                        })
                        .collect()
                })
            })
            .map_err(enrich_error_then)
    }

    fn plist(&mut self, path: String) -> Result<Option<String>, enrich_then::EnrichError> {
        enrich_now::Host::plist(self, path).map_err(enrich_error_then)
    }
}
