//! [`Paths`]: every file of the runtime layout, resolved once from the environment.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::HomeError;
use crate::files::{check_private_dir, parent_dir};

/// The files of a dispatch installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `DISPATCH_HOME` (default `~/.dispatch`).
    pub home: PathBuf,
    /// The daemon's Unix socket (`DISPATCH_SOCKET`, default `<home>/dispatchd.sock`).
    pub socket: PathBuf,
    /// The registry (`DISPATCH_DB`, default `<home>/registry.db`).
    pub db: PathBuf,
    /// The daemon's pidfile (`DISPATCH_PIDFILE`, default `<home>/dispatchd.pid`).
    pub pidfile: PathBuf,
    /// The daemon's log file (`<home>/dispatchd.log`).
    pub log: PathBuf,
    /// The global config file (`<home>/config.toml`).
    pub config: PathBuf,
}

impl Paths {
    /// Resolves the layout from the process environment: `DISPATCH_HOME`, else `~/.dispatch`
    /// with the home directory from `HOME` or, when `HOME` is unset or empty, from the user
    /// database (`getpwuid_r`, i.e. NSS). The daemon's resolution.
    pub fn from_env() -> Result<Paths, HomeError> {
        Self::from_lookup(env_var)
    }

    /// Resolves the layout from environment variables alone: `DISPATCH_HOME`, else
    /// `$HOME/.dispatch`; with neither it is [`HomeError::NoHome`]. It never asks the user
    /// database: the `dispatch` CLI is linked statically (ADR 0026), and a static glibc that
    /// looks a user up loads the system's NSS modules, which crash a static process when their
    /// glibc is not the one it was linked with (or even when it is, for `nss_systemd`).
    pub fn from_env_vars() -> Result<Paths, HomeError> {
        Self::from_vars(env_var)
    }

    /// Resolves the layout with `lookup` standing in for the environment; the home directory
    /// for `~/.dispatch` comes from the process's `HOME` or the user database, as in
    /// [`Paths::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<PathBuf>) -> Result<Paths, HomeError> {
        Self::resolve(lookup, || {
            directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf())
        })
    }

    /// Resolves the layout with `lookup` standing in for the environment, `HOME` included, as
    /// in [`Paths::from_env_vars`].
    pub fn from_vars(lookup: impl Fn(&str) -> Option<PathBuf>) -> Result<Paths, HomeError> {
        let user_home = lookup("HOME");
        Self::resolve(lookup, || user_home)
    }

    /// The layout under `DISPATCH_HOME`, else under `.dispatch` in `user_home`.
    fn resolve(
        lookup: impl Fn(&str) -> Option<PathBuf>,
        user_home: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Paths, HomeError> {
        let home = match lookup("DISPATCH_HOME") {
            Some(home) => home,
            None => user_home().ok_or(HomeError::NoHome)?.join(".dispatch"),
        };
        Ok(Paths {
            socket: lookup("DISPATCH_SOCKET").unwrap_or_else(|| home.join("dispatchd.sock")),
            db: lookup("DISPATCH_DB").unwrap_or_else(|| home.join("registry.db")),
            pidfile: lookup("DISPATCH_PIDFILE").unwrap_or_else(|| home.join("dispatchd.pid")),
            log: home.join("dispatchd.log"),
            config: home.join("config.toml"),
            home,
        })
    }

    /// Creates the home directory and the directories of the overridden files, owner-only
    /// (0700) when dispatch creates them, then checks that each belongs to this user and is
    /// not writable by group or others (refusing it otherwise), and tightens the home
    /// directory to 0700.
    pub fn prepare(&self) -> Result<(), HomeError> {
        for (dir, what) in self.directories() {
            create_private_dir(&dir)?;
            check_private_dir(&dir, &what)?;
        }
        std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| HomeError::Io {
                path: self.home.clone(),
                source,
            },
        )
    }

    /// Checks the directories [`Paths::prepare`] checks, without creating or changing
    /// anything; a missing directory is fine.
    pub fn check(&self) -> Result<(), HomeError> {
        for (dir, what) in self.directories() {
            if dir.exists() {
                check_private_dir(&dir, &what)?;
            }
        }
        Ok(())
    }

    /// The directories dispatch writes into, each named for messages: the home, then the
    /// directory of each file an override moved out of it.
    fn directories(&self) -> Vec<(PathBuf, String)> {
        let mut dirs = vec![(self.home.clone(), "DISPATCH_HOME".to_owned())];
        for (file, var) in [
            (&self.socket, "DISPATCH_SOCKET"),
            (&self.db, "DISPATCH_DB"),
            (&self.pidfile, "DISPATCH_PIDFILE"),
        ] {
            let dir = parent_dir(file);
            if !dirs.iter().any(|(known, _)| *known == dir) {
                dirs.push((dir, format!("the directory of {var}")));
            }
        }
        dirs
    }
}

/// A variable of the process environment; an empty one counts as unset.
fn env_var(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn create_private_dir(dir: &Path) -> Result<(), HomeError> {
    // Anything already there (a directory, or a file `check_private_dir` then refuses).
    if std::fs::metadata(dir).is_ok() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| HomeError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_live_in_dispatch_home_and_overrides_win() {
        let paths = Paths::from_lookup(|key| match key {
            "DISPATCH_HOME" => Some("/h".into()),
            "DISPATCH_DB" => Some("/data/r.db".into()),
            _ => None,
        })
        .expect("paths");
        assert_eq!(paths.socket, PathBuf::from("/h/dispatchd.sock"));
        assert_eq!(paths.pidfile, PathBuf::from("/h/dispatchd.pid"));
        assert_eq!(paths.log, PathBuf::from("/h/dispatchd.log"));
        assert_eq!(paths.db, PathBuf::from("/data/r.db"));
    }

    #[test]
    fn from_vars_takes_the_home_from_home_and_never_from_the_user_database() {
        let paths = Paths::from_vars(|key| (key == "HOME").then(|| "/u".into())).expect("paths");
        assert_eq!(paths.home, PathBuf::from("/u/.dispatch"));
        assert_eq!(paths.socket, PathBuf::from("/u/.dispatch/dispatchd.sock"));
        let paths = Paths::from_vars(|key| match key {
            "HOME" => Some("/u".into()),
            "DISPATCH_HOME" => Some("/h".into()),
            _ => None,
        })
        .expect("paths");
        assert_eq!(paths.home, PathBuf::from("/h"));
        let neither = Paths::from_vars(|_| None);
        assert!(matches!(neither, Err(HomeError::NoHome)), "{neither:?}");
    }

    #[test]
    fn prepare_makes_the_home_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("nested/home");
        let paths = Paths::from_lookup(|key| (key == "DISPATCH_HOME").then(|| home.clone()))
            .expect("paths");
        paths.prepare().expect("prepare");
        let mode = std::fs::metadata(&home).expect("home").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
