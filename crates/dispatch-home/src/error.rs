//! [`HomeError`]: what can be wrong with the runtime layout, and how it appears on dispatch's
//! surfaces (a contract error code with a hint).

use std::path::PathBuf;

use dispatch_contract::{DispatchError, ErrorCode, error_chain};

/// A problem with the runtime layout.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No home directory to put `~/.dispatch` in, and no `DISPATCH_HOME`.
    #[error("cannot find a home directory for ~/.dispatch (HOME is not set); set DISPATCH_HOME")]
    NoHome,
    /// A directory or file could not be created, secured, read or removed.
    #[error("cannot use {path}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A directory of the layout exists but is not a directory.
    #[error("{what} {path} is not a directory")]
    NotADirectory {
        /// Which directory, e.g. `DISPATCH_HOME` or `the directory of DISPATCH_DB`.
        what: String,
        /// Its path.
        path: PathBuf,
    },
    /// A directory of the layout belongs to another user.
    #[error("{what} {path} belongs to uid {owner}, not to you (uid {uid}); dispatch refuses it")]
    ForeignOwner {
        /// Which directory.
        what: String,
        /// Its path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        uid: u32,
    },
    /// A directory of the layout is writable by its group or by others.
    #[error(
        "{what} {path} is writable by {who} (mode {mode:o}); dispatch refuses a directory others can write to"
    )]
    LooseMode {
        /// Which directory.
        what: String,
        /// Its path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// `group`, `others` or `group and others`.
        who: &'static str,
    },
    /// A file of the layout is a symbolic link.
    #[error("{path} is a symbolic link; dispatch does not follow links for its own files")]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A file of the layout is not a regular file (a directory, a FIFO, a device...).
    #[error("{path} is not a regular file; dispatch refuses to open it")]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// Something other than a socket is where the daemon's socket goes.
    #[error("{path} exists and is not a socket; dispatch leaves it alone")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// A file that is not a dispatch pidfile (not empty, no pid in it) is where the pidfile goes.
    #[error(
        "{path} is not a dispatch pidfile (it is not empty and holds no pid); dispatch leaves it alone"
    )]
    NotAPidfile {
        /// The pidfile path.
        path: PathBuf,
    },
}

impl From<HomeError> for DispatchError {
    fn from(err: HomeError) -> DispatchError {
        let (code, hint) = match &err {
            HomeError::NoHome => (
                ErrorCode::InvalidInput,
                Some("set DISPATCH_HOME (or HOME) to a directory of your own".to_owned()),
            ),
            HomeError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                (
                    ErrorCode::PermissionDenied,
                    Some(
                        "use a DISPATCH_HOME you can write to (unset it for ~/.dispatch)"
                            .to_owned(),
                    ),
                )
            }
            HomeError::Io { .. } => (ErrorCode::Internal, None),
            HomeError::NotADirectory { what, .. } => (
                ErrorCode::InvalidInput,
                Some(format!(
                    "point {} at a directory; dispatch creates a missing one",
                    variable(what)
                )),
            ),
            HomeError::ForeignOwner { what, .. } => (
                ErrorCode::PermissionDenied,
                Some(format!(
                    "run dispatch as the directory's owner, or point {} at a directory of your own",
                    variable(what)
                )),
            ),
            HomeError::LooseMode { path, .. } => (
                ErrorCode::PermissionDenied,
                Some(format!(
                    "check what is in it, then `chmod go-w {}`; or use another directory",
                    path.display()
                )),
            ),
            HomeError::Symlink { path } | HomeError::NotRegular { path } => (
                ErrorCode::PermissionDenied,
                Some(format!(
                    "move {} aside (check what it points to first); dispatch recreates its own files",
                    path.display()
                )),
            ),
            HomeError::NotASocket { .. } => (
                ErrorCode::InvalidInput,
                Some(
                    "point DISPATCH_SOCKET at a path of its own, or move the file away".to_owned(),
                ),
            ),
            HomeError::NotAPidfile { .. } => (
                ErrorCode::InvalidInput,
                Some(
                    "point DISPATCH_PIDFILE at a path of its own, or move the file away".to_owned(),
                ),
            ),
        };
        let err = DispatchError::new(code, error_chain(&err));
        match hint {
            Some(hint) => err.with_hint(hint),
            None => err,
        }
    }
}

/// The environment variable a directory description names (`DISPATCH_HOME` when none).
fn variable(what: &str) -> &str {
    ["DISPATCH_SOCKET", "DISPATCH_DB", "DISPATCH_PIDFILE"]
        .into_iter()
        .find(|var| what.contains(var))
        .unwrap_or("DISPATCH_HOME")
}
