//! Finding the Codex binary to run, in one documented order (ADR 0008):
//!
//! 1. `DISPATCH_CODEX_BIN` (environment), when set and non-empty;
//! 2. the configured binary (dispatch's `config.toml`, `[codex] bin`), when given;
//! 3. `codex` on `PATH`;
//! 4. the installed copy of the pinned version that `scripts/install-codex` puts under
//!    `${XDG_DATA_HOME:-$HOME/.local/share}/dispatch/codex/<version>/`.
//!
//! An explicit choice (1 or 2) that does not name an executable is an error, never a silent
//! fall-through to the next source.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::version::{CODEX_BIN_ENV, PINNED_CODEX_VERSION};

/// The one command that installs the pinned Codex CLI, for every hint that suggests it.
pub const CODEX_INSTALL_COMMAND: &str = concat!("npm install -g @openai/codex@", pinned!());

/// How to install the pinned Codex CLI, as a hint: the npm command and the script of a clone.
pub const CODEX_INSTALL_HINT: &str = concat!(
    "install the pinned Codex CLI: `scripts/install-codex` in a dispatch clone, or `npm install -g @openai/codex@",
    pinned!(),
    "`"
);

/// The native binary inside an npm prefix holding `@openai/codex` (Linux x86-64).
const BIN_IN_PREFIX: &str =
    "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex";

/// Where a Codex binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodexBinSource {
    /// `DISPATCH_CODEX_BIN`.
    Env,
    /// `config.toml`, `[codex] bin`.
    Config,
    /// `codex` found on `PATH`.
    Path,
    /// The pinned copy installed by `scripts/install-codex`.
    Installed,
}

impl CodexBinSource {
    /// A short label for summaries and logs, e.g. `installed copy`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Env => CODEX_BIN_ENV,
            Self::Config => "config.toml [codex] bin",
            Self::Path => "codex on PATH",
            Self::Installed => "installed copy",
        }
    }
}

impl std::fmt::Display for CodexBinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A resolved Codex binary and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexBin {
    /// The executable.
    pub path: PathBuf,
    /// Which step of the lookup found it.
    pub source: CodexBinSource,
}

impl CodexBin {
    /// How a user runs this binary from a shell: `codex` when it came from `PATH`, else its
    /// path (quoted when needed). For hints such as `<this> login`.
    pub fn command_name(&self) -> String {
        if self.source == CodexBinSource::Path {
            return "codex".to_owned();
        }
        shell_quote(&self.path.to_string_lossy())
    }
}

/// The inputs of the lookup; [`CodexLookup::from_env`] fills them from the process.
#[derive(Debug, Clone, Default)]
pub struct CodexLookup {
    /// The value of `DISPATCH_CODEX_BIN`.
    pub env_bin: Option<OsString>,
    /// The configured binary (`[codex] bin`).
    pub config_bin: Option<PathBuf>,
    /// The value of `PATH`.
    pub path: Option<OsString>,
    /// Where the pinned copy is installed (see [`installed_codex_bin`]).
    pub installed: Option<PathBuf>,
}

impl CodexLookup {
    /// The lookup for this process: its environment plus `config_bin` from the caller's
    /// configuration.
    pub fn from_env(config_bin: Option<PathBuf>) -> Self {
        let var = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
        Self {
            env_bin: var(CODEX_BIN_ENV),
            config_bin,
            path: var("PATH"),
            installed: installed_codex_bin(var("XDG_DATA_HOME"), var("HOME")),
        }
    }

    /// Resolves the binary in the documented order (see the module documentation).
    pub fn resolve(&self) -> Result<CodexBin, Error> {
        if let Some(bin) = self.env_bin.as_ref().filter(|b| !b.is_empty()) {
            let path = explicit(Path::new(bin), self.path.as_ref(), CODEX_BIN_ENV, true)?;
            return Ok(found(path, CodexBinSource::Env));
        }
        if let Some(bin) = self
            .config_bin
            .as_ref()
            .filter(|b| !b.as_os_str().is_empty())
        {
            let path = explicit(bin, self.path.as_ref(), "config.toml [codex] bin", false)?;
            return Ok(found(path, CodexBinSource::Config));
        }
        if let Some(path) = find_on_path(OsStr::new("codex"), self.path.as_ref()) {
            return Ok(found(path, CodexBinSource::Path));
        }
        if let Some(installed) = self.installed.as_ref().filter(|p| is_executable(p)) {
            return Ok(found(installed.clone(), CodexBinSource::Installed));
        }
        let installed = self.installed.as_ref().map_or_else(
            || "no installed copy (neither XDG_DATA_HOME nor HOME is set)".to_owned(),
            |p| format!("no installed copy at {}", p.display()),
        );
        Err(Error::CodexNotFound(format!(
            "{CODEX_BIN_ENV} is not set, config.toml has no [codex] bin, no `codex` is on PATH, \
             and {installed}"
        )))
    }
}

fn found(path: PathBuf, source: CodexBinSource) -> CodexBin {
    CodexBin { path, source }
}

/// A binary named explicitly by `origin`: a bare name is looked up on `PATH`; otherwise it
/// must be an executable file (a relative path only where `relative_ok`).
fn explicit(
    bin: &Path,
    path: Option<&OsString>,
    origin: &str,
    relative_ok: bool,
) -> Result<PathBuf, Error> {
    if bin.components().count() == 1 && !bin.is_absolute() {
        return find_on_path(bin.as_os_str(), path).ok_or_else(|| {
            Error::CodexNotFound(format!("{origin} = {} is not on PATH", bin.display()))
        });
    }
    if !relative_ok && !bin.is_absolute() {
        return Err(Error::CodexNotFound(format!(
            "{origin} = {} is a relative path; give an absolute path or a name on PATH",
            bin.display()
        )));
    }
    if is_executable(bin) {
        Ok(bin.to_path_buf())
    } else {
        Err(Error::CodexNotFound(format!(
            "{origin} = {} is not an executable file",
            bin.display()
        )))
    }
}

/// The npm prefix `scripts/install-codex` installs the pinned Codex into:
/// `$XDG_DATA_HOME/dispatch/codex/<version>` (an absolute `XDG_DATA_HOME`), else
/// `$HOME/.local/share/dispatch/codex/<version>`; `None` without either.
pub fn installed_codex_prefix(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let data = xdg_data_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local/share"))
        })?;
    Some(data.join("dispatch/codex").join(PINNED_CODEX_VERSION))
}

/// The native binary of the installed pinned copy (see [`installed_codex_prefix`]).
pub fn installed_codex_bin(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    installed_codex_prefix(xdg_data_home, home).map(|prefix| prefix.join(BIN_IN_PREFIX))
}

pub(crate) fn find_on_path(name: &OsStr, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Single-quotes `text` for a POSIX shell unless it is plainly safe.
fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@%,".contains(c));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn executable(path: &Path) -> PathBuf {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.to_path_buf()
    }

    /// A fake environment where every source has a binary of its own.
    struct World {
        _dir: tempfile::TempDir,
        env: PathBuf,
        config: PathBuf,
        on_path: PathBuf,
        path_dir: PathBuf,
        installed: PathBuf,
        data: PathBuf,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let installed =
            installed_codex_bin(Some(data.clone().into_os_string()), None).expect("installed");
        World {
            env: executable(&root.join("env/codex")),
            config: executable(&root.join("config/codex")),
            on_path: executable(&root.join("bin/codex")),
            path_dir: root.join("bin"),
            installed: executable(&installed),
            data,
            _dir: dir,
        }
    }

    impl World {
        fn lookup(&self) -> CodexLookup {
            CodexLookup {
                env_bin: Some(self.env.clone().into_os_string()),
                config_bin: Some(self.config.clone()),
                path: Some(self.path_dir.clone().into_os_string()),
                installed: installed_codex_bin(Some(self.data.clone().into_os_string()), None),
            }
        }
    }

    #[test]
    fn each_source_wins_in_the_documented_order() {
        let w = world();
        let mut lookup = w.lookup();
        let got = lookup.resolve().expect("env");
        assert_eq!((got.path, got.source), (w.env.clone(), CodexBinSource::Env));

        lookup.env_bin = Some(OsString::new()); // set but empty: ignored
        let got = lookup.resolve().expect("config");
        assert_eq!(
            (got.path, got.source),
            (w.config.clone(), CodexBinSource::Config)
        );

        lookup.config_bin = None;
        let got = lookup.resolve().expect("PATH");
        assert_eq!(
            (got.path, got.source),
            (w.on_path.clone(), CodexBinSource::Path)
        );

        lookup.path = Some("/nonexistent-dir".into());
        let got = lookup.resolve().expect("installed");
        assert_eq!(
            (got.path, got.source),
            (w.installed.clone(), CodexBinSource::Installed)
        );

        std::fs::remove_file(&w.installed).expect("rm");
        let Err(Error::CodexNotFound(why)) = lookup.resolve() else {
            panic!("nothing left to find")
        };
        assert!(why.contains(&w.installed.display().to_string()), "{why}");
    }

    #[test]
    fn an_explicit_choice_that_is_broken_is_an_error_not_a_fall_through() {
        let w = world();
        let mut lookup = w.lookup();
        lookup.env_bin = Some(w.data.join("missing").into_os_string());
        let Err(Error::CodexNotFound(why)) = lookup.resolve() else {
            panic!("a missing DISPATCH_CODEX_BIN is refused")
        };
        assert!(why.starts_with(CODEX_BIN_ENV), "{why}");

        lookup.env_bin = None;
        lookup.config_bin = Some(w.data.join("missing"));
        let Err(Error::CodexNotFound(why)) = lookup.resolve() else {
            panic!("a missing configured bin is refused")
        };
        assert!(why.contains("config.toml [codex] bin"), "{why}");

        lookup.config_bin = Some("relative/codex".into());
        let Err(Error::CodexNotFound(why)) = lookup.resolve() else {
            panic!("a relative configured path is refused")
        };
        assert!(why.contains("relative"), "{why}");

        // A bare name is looked up on PATH, for both.
        lookup.config_bin = Some("codex".into());
        let got = lookup.resolve().expect("bare config name");
        assert_eq!(
            (got.path, got.source),
            (w.on_path.clone(), CodexBinSource::Config)
        );
        lookup.env_bin = Some("codex".into());
        assert_eq!(
            lookup.resolve().expect("bare env name").source,
            CodexBinSource::Env
        );
    }

    #[test]
    fn the_installed_copy_lives_under_the_data_directory() {
        let prefix = |xdg: Option<&str>, home: Option<&str>| {
            installed_codex_prefix(xdg.map(Into::into), home.map(Into::into))
        };
        assert_eq!(
            prefix(Some("/d"), Some("/h")),
            Some(PathBuf::from(format!(
                "/d/dispatch/codex/{PINNED_CODEX_VERSION}"
            )))
        );
        assert_eq!(
            prefix(None, Some("/h")),
            Some(PathBuf::from(format!(
                "/h/.local/share/dispatch/codex/{PINNED_CODEX_VERSION}"
            )))
        );
        assert_eq!(
            prefix(Some("relative"), Some("/h")),
            prefix(None, Some("/h")),
            "a relative XDG_DATA_HOME is ignored, as the XDG spec says"
        );
        assert_eq!(prefix(None, None), None);
    }

    #[test]
    fn hints_name_the_binary_in_use_and_pin_the_version() {
        let on_path = CodexBin {
            path: "/usr/bin/codex".into(),
            source: CodexBinSource::Path,
        };
        assert_eq!(on_path.command_name(), "codex");
        let installed = CodexBin {
            path: "/home/me/.local/share/dispatch/codex/0.169.0/codex".into(),
            source: CodexBinSource::Installed,
        };
        assert_eq!(
            installed.command_name(),
            installed.path.display().to_string()
        );
        let spaced = CodexBin {
            path: "/my dir/it's/codex".into(),
            source: CodexBinSource::Config,
        };
        assert_eq!(spaced.command_name(), r"'/my dir/it'\''s/codex'");
        assert!(CODEX_INSTALL_COMMAND.ends_with(&format!("@openai/codex@{PINNED_CODEX_VERSION}")));
        assert!(CODEX_INSTALL_HINT.contains(CODEX_INSTALL_COMMAND));
        assert!(CODEX_INSTALL_HINT.contains("scripts/install-codex"));
    }
}
