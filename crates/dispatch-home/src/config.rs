//! `config.toml`: the daemon's settings, the `[policy]`, `[codex]`, `[lanes]` and
//! `[app_server]` tables, and `[mcp]` for `dispatch mcp`; unknown keys are refused so a typo
//! never silently leaves a default in force.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings read from `DISPATCH_HOME/config.toml` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[policy]`.
    #[serde(default)]
    pub policy: Policy,
    /// `[codex]`.
    #[serde(default)]
    pub codex: CodexSettings,
    /// `[lanes]`.
    #[serde(default)]
    pub lanes: Lanes,
    /// `[app_server]`.
    #[serde(default)]
    pub app_server: AppServerSettings,
    /// `[mcp]`.
    #[serde(default)]
    pub mcp: McpSettings,
    /// `[defaults]`: launch settings for new lanes, checked (with file and line) by the
    /// daemon each time `new` or `config show` reads them.
    #[serde(default)]
    pub defaults: LaunchTable,
    /// `[presets.NAME]`: named launch settings, checked like `[defaults]`.
    #[serde(default)]
    pub presets: LaunchTable,
}

/// A launch table of `config.toml` (`[defaults]`, `[presets]`): accepted here as it is; the
/// daemon's launch layering reads and checks it, naming the file and line of a bad key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchTable;

impl<'de> Deserialize<'de> for LaunchTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(LaunchTable)
    }
}

/// `[mcp]`: what `dispatch mcp` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// The MCP toolsets to serve (names from `contract/mcp.json`, `all`, `default`); the
    /// default toolsets when absent. `dispatch mcp --toolsets` wins over it.
    pub toolsets: Option<Vec<String>>,
}

/// `[app_server]`: how much the daemon asks of the App Server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppServerSettings {
    /// Idle lanes whose threads stay loaded in the App Server (each costs it about 1.5 MB);
    /// beyond that the least recently used idle ones are unloaded, and loaded again when an
    /// operation needs them. Busy and waiting lanes are never unloaded. Default 64.
    /// With a pool, this is a total: each of the `processes` keeps at most its share
    /// (rounded up).
    #[serde(default = "default_max_loaded_idle")]
    pub max_loaded_idle: usize,
    /// How many `codex app-server` processes the daemon runs (1 to [`MAX_PROCESSES`], default
    /// 1). Each lane lives on one of them; new lanes go to the least loaded.
    #[serde(default = "default_processes", deserialize_with = "process_count")]
    pub processes: usize,
    /// Resident size, in MiB, above which an App Server process (its RSS plus its
    /// children's) is replaced by a fresh one once it is quiescent: Codex keeps every thread
    /// it ever loaded in memory, even after `thread/unsubscribe`, so this is what bounds its
    /// memory. Its lanes resume their threads on their next operation. 0 turns it off;
    /// default 512; at most [`MAX_RECYCLE_ABOVE_MIB`]. Linux only (read from `/proc`);
    /// elsewhere it is accepted and does nothing.
    #[serde(
        default = "default_recycle_above_mib",
        deserialize_with = "recycle_threshold"
    )]
    pub recycle_above_mib: u64,
}

/// The largest `[app_server] recycle_above_mib` (1 TiB).
pub const MAX_RECYCLE_ABOVE_MIB: u64 = 1 << 20;

/// The most App Server processes a daemon runs.
pub const MAX_PROCESSES: usize = 16;

impl Default for AppServerSettings {
    fn default() -> Self {
        AppServerSettings {
            max_loaded_idle: default_max_loaded_idle(),
            processes: default_processes(),
            recycle_above_mib: default_recycle_above_mib(),
        }
    }
}

/// A fresh App Server is about 80 MB and each thread it loaded costs about 1.5 MB, so 512
/// MiB is some 280 threads loaded since its start: a recycle is rare, and the memory stays
/// within the scale goal (600 MB for the App Server).
fn default_recycle_above_mib() -> u64 {
    512
}

fn recycle_threshold<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let mib = i64::deserialize(deserializer)?;
    match u64::try_from(mib) {
        Ok(mib) if mib <= MAX_RECYCLE_ABOVE_MIB => Ok(mib),
        _ => Err(serde::de::Error::custom(format!(
            "recycle_above_mib must be between 0 (off) and {MAX_RECYCLE_ABOVE_MIB}, not {mib}"
        ))),
    }
}

fn default_processes() -> usize {
    1
}

fn process_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let processes = usize::deserialize(deserializer)?;
    if !(1..=MAX_PROCESSES).contains(&processes) {
        return Err(serde::de::Error::custom(format!(
            "processes must be between 1 and {MAX_PROCESSES}, not {processes}"
        )));
    }
    Ok(processes)
}

fn default_max_loaded_idle() -> usize {
    64
}

/// `[codex]`: which Codex CLI the daemon runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodexSettings {
    /// The Codex binary: an absolute path, or a name looked up on `PATH`. Second in the lookup
    /// order, after `DISPATCH_CODEX_BIN` and before `codex` on `PATH` and the installed copy.
    pub bin: Option<PathBuf>,
}

/// `[lanes]`: how the daemon watches running turns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lanes {
    /// Seconds a running turn may go without any App Server event before the lane shows
    /// `stalled_since` and the daemon asks the App Server what became of the turn
    /// (default 120, at least 1).
    #[serde(default = "default_stall_after_s", deserialize_with = "at_least_one")]
    pub stall_after_s: u64,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            stall_after_s: default_stall_after_s(),
        }
    }
}

fn default_stall_after_s() -> u64 {
    120
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let seconds = u64::deserialize(deserializer)?;
    if seconds == 0 {
        return Err(serde::de::Error::custom("stall_after_s must be at least 1"));
    }
    Ok(seconds)
}

/// `[policy]`: what dispatch allows itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Allow operations that write turns or history on attached lanes (default false: they are
    /// observe-only).
    #[serde(default)]
    pub allow_attached_writes: bool,
    /// What happens to approval requests nobody has answered: `hold` (default: the lane waits
    /// for `dispatch respond`) or `decline` (refused at once). Nothing is ever accepted
    /// automatically.
    #[serde(default)]
    pub approvals: ApprovalPolicy,
}

/// `[policy] approvals`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// Keep the request pending until an operator or agent answers.
    #[default]
    Hold,
    /// Decline it at once; the turn goes on without the action.
    Decline,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path} is not a valid dispatch config: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, from the TOML parser.
        message: String,
    },
}

impl Config {
    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|err| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_means_defaults_and_the_policy_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        assert_eq!(Config::load(&path).expect("defaults"), Config::default());
        std::fs::write(&path, "[policy]\nallow_attached_writes = true\n").expect("write");
        assert!(
            Config::load(&path)
                .expect("config")
                .policy
                .allow_attached_writes
        );
        std::fs::write(&path, "[policy]\napprovals = \"decline\"\n").expect("write");
        assert_eq!(
            Config::load(&path).expect("config").policy.approvals,
            ApprovalPolicy::Decline
        );
        std::fs::write(&path, "[policy]\napprovals = \"accept\"\n").expect("write");
        assert!(
            Config::load(&path).is_err(),
            "accepting automatically is not a policy"
        );
        std::fs::write(&path, "[policy]\nallow_atached_writes = true\n").expect("write");
        let err = Config::load(&path).expect_err("a typo is refused");
        assert!(err.to_string().contains("allow_atached_writes"), "{err}");
    }

    #[test]
    fn launch_tables_are_accepted_for_the_daemon_to_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[policy]\nallow_attached_writes = true\n[defaults]\nmodel = \"m\"\n\
             [presets.review]\neffort = \"high\"\n",
        )
        .expect("write");
        let config = Config::load(&path).expect("the launch tables do not stop the daemon");
        assert!(config.policy.allow_attached_writes);
        std::fs::write(&path, "[default]\nmodel = \"m\"\n").expect("write");
        let err = Config::load(&path).expect_err("a typo of the table is refused");
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn the_stall_limit_defaults_to_two_minutes_and_refuses_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        assert_eq!(
            Config::load(&path).expect("defaults").lanes.stall_after_s,
            120
        );
        std::fs::write(&path, "[lanes]\nstall_after_s = 5\n").expect("write");
        assert_eq!(Config::load(&path).expect("config").lanes.stall_after_s, 5);
        std::fs::write(&path, "[lanes]\nstall_after_s = 0\n").expect("write");
        let err = Config::load(&path).expect_err("zero is refused");
        assert!(err.to_string().contains("at least 1"), "{err}");
    }

    #[test]
    fn the_app_server_pool_defaults_to_one_process_and_refuses_zero_or_too_many() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        assert_eq!(
            Config::load(&path).expect("defaults").app_server.processes,
            1
        );
        std::fs::write(&path, "[app_server]\nprocesses = 3\n").expect("write");
        assert_eq!(Config::load(&path).expect("config").app_server.processes, 3);
        for bad in ["0", "17", "-1"] {
            std::fs::write(&path, format!("[app_server]\nprocesses = {bad}\n")).expect("write");
            let err = Config::load(&path).expect_err("refused");
            assert!(err.to_string().contains("processes"), "{bad}: {err}");
        }
    }

    #[test]
    fn recycle_above_mib_defaults_to_512_and_refuses_negative_or_huge_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let settings = Config::load(&path).expect("defaults").app_server;
        assert_eq!(settings.recycle_above_mib, 512);
        std::fs::write(&path, "[app_server]\nrecycle_above_mib = 0\n").expect("write");
        let settings = Config::load(&path).expect("config").app_server;
        assert_eq!(settings.recycle_above_mib, 0);
        for bad in ["-1", "1048577", "\"big\""] {
            std::fs::write(&path, format!("[app_server]\nrecycle_above_mib = {bad}\n"))
                .expect("write");
            let err = Config::load(&path).expect_err("refused");
            assert!(
                err.to_string().contains("recycle_above_mib"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_mcp_toolsets_are_read_and_unknown_mcp_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        assert_eq!(Config::default().mcp.toolsets, None);
        std::fs::write(&path, "[mcp]\ntoolsets = [\"default\", \"threads\"]\n").expect("write");
        assert_eq!(
            Config::load(&path).expect("config").mcp.toolsets,
            Some(vec!["default".to_owned(), "threads".to_owned()])
        );
        std::fs::write(&path, "[mcp]\ntoolset = [\"all\"]\n").expect("write");
        let err = Config::load(&path).expect_err("a typo is refused");
        assert!(err.to_string().contains("toolset"), "{err}");
    }

    #[test]
    fn the_codex_binary_is_read_and_unknown_codex_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        assert_eq!(Config::default().codex.bin, None);
        std::fs::write(&path, "[codex]\nbin = \"/opt/codex/bin/codex\"\n").expect("write");
        assert_eq!(
            Config::load(&path).expect("config").codex.bin,
            Some(PathBuf::from("/opt/codex/bin/codex"))
        );
        std::fs::write(&path, "[codex]\nbinary = \"/opt/codex\"\n").expect("write");
        let err = Config::load(&path).expect_err("a typo is refused");
        assert!(err.to_string().contains("binary"), "{err}");
    }
}
