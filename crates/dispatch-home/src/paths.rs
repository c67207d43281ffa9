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
    /// Resolves the layout from the process environment.
    pub fn from_env() -> Result<Paths, HomeError> {
        Self::from_lookup(|key| {
            std::env::var_os(key)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Resolves the layout with `lookup` standing in for the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<PathBuf>) -> Result<Paths, HomeError> {
        let home = match lookup("DISPATCH_HOME") {
            Some(home) => home,
            None => directories::BaseDirs::new()
                .ok_or(HomeError::NoHome)?
                .home_dir()
                .join(".dispatch"),
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
