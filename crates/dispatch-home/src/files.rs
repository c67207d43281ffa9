//! Trusting the runtime layout: directories that belong to this user alone, private files
//! opened without following symbolic links, and stale files removed only when they are what
//! dispatch itself leaves behind.
//!
//! The threat is a layout someone else can write to (a foreign or group-writable
//! `DISPATCH_HOME`, an override pointing into `/tmp`), or a path that was replaced by a link
//! or by an unrelated file: a daemon run by root would otherwise truncate, append to or
//! delete whatever the link names.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::HomeError;

/// How [`open_private`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; the file must exist.
    Read,
    /// Read and write, created (0600) if missing, never truncated.
    ReadWrite,
    /// Append, created (0600) if missing.
    Append,
}

/// Checks that `dir` is a directory owned by this process's effective uid and not writable by
/// its group or others. `what` names it in the error (e.g. `DISPATCH_HOME`).
pub(crate) fn check_private_dir(dir: &Path, what: &str) -> Result<(), HomeError> {
    let meta = std::fs::metadata(dir).map_err(|source| HomeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(HomeError::NotADirectory {
            what: what.to_owned(),
            path: dir.to_path_buf(),
        });
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(HomeError::ForeignOwner {
            what: what.to_owned(),
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "others",
        (true, true) => "its group and others",
    };
    Err(HomeError::LooseMode {
        what: what.to_owned(),
        path: dir.to_path_buf(),
        mode,
        who,
    })
}

/// What is at `path`, without following a link: `None` when nothing is.
fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>, HomeError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HomeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Refuses a symbolic link or anything but a regular file at `path`; nothing there is fine.
pub fn refuse_unsafe_file(path: &Path) -> Result<(), HomeError> {
    match lstat(path)? {
        Some(meta) if meta.file_type().is_symlink() => Err(HomeError::Symlink {
            path: path.to_path_buf(),
        }),
        Some(meta) if !meta.is_file() => Err(HomeError::NotRegular {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Opens one of dispatch's own files (pidfile, log) with `O_NOFOLLOW`, creating it with mode
/// 0600 when `access` allows: a symbolic link is refused, never followed, and so is anything
/// that is not a regular file.
pub fn open_private(path: &Path, access: Access) -> Result<File, HomeError> {
    refuse_unsafe_file(path)?;
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::ReadWrite => options.read(true).write(true).create(true).truncate(false),
        Access::Append => options.append(true).create(true),
    };
    let file = options
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(Errno::LOOP.raw_os_error()) {
                HomeError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                HomeError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    // The path may have changed between the look and the open; the open file is what counts.
    let meta = file.metadata().map_err(|source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(HomeError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Reads a pidfile's content: `Ok(None)` when it is empty, `Ok(Some(pid))` when it holds a pid,
/// [`HomeError::NotAPidfile`] otherwise.
pub(crate) fn read_pid(file: &mut File, path: &Path) -> Result<Option<u32>, HomeError> {
    // A pid and a newline; anything much longer is not a pidfile.
    let mut text = String::new();
    let read = file.by_ref().take(64).read_to_string(&mut text);
    let text = match read {
        Ok(_) => text,
        Err(err) if err.kind() == ErrorKind::InvalidData => {
            return Err(HomeError::NotAPidfile {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(HomeError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<u32>() {
        Ok(pid) if pid > 0 && text.len() < 64 => Ok(Some(pid)),
        _ => Err(HomeError::NotAPidfile {
            path: path.to_path_buf(),
        }),
    }
}

/// Removes a dead daemon's socket: only a socket is removed. Returns whether one was; nothing
/// at the path is `Ok(false)`; anything else there is [`HomeError::NotASocket`] and is left.
pub fn remove_stale_socket(path: &Path) -> Result<bool, HomeError> {
    match lstat(path)? {
        None => Ok(false),
        Some(meta) if meta.file_type().is_socket() => remove(path),
        Some(_) => Err(HomeError::NotASocket {
            path: path.to_path_buf(),
        }),
    }
}

/// Removes a dead daemon's pidfile: only a regular file that is empty or holds a pid. Returns
/// whether it removed one; anything else at the path is an error and is left.
pub fn remove_stale_pidfile(path: &Path) -> Result<bool, HomeError> {
    let mut file = match open_private(path, Access::Read) {
        Ok(file) => file,
        Err(HomeError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(false);
        }
        Err(err) => return Err(err),
    };
    read_pid(&mut file, path)?;
    remove(path)
}

fn remove(path: &Path) -> Result<bool, HomeError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(HomeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The directory a file of the layout lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious").expect("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for access in [Access::Read, Access::ReadWrite, Access::Append] {
            let err = open_private(&link, access).expect_err("a link");
            assert!(matches!(err, HomeError::Symlink { .. }), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");
    }

    #[test]
    fn a_fifo_or_directory_is_not_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_private(dir.path(), Access::Append).expect_err("a directory");
        assert!(matches!(err, HomeError::NotRegular { .. }), "{err}");
    }

    #[test]
    fn only_sockets_and_pidfiles_are_removed_as_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "keep me").expect("write");
        assert!(matches!(
            remove_stale_socket(&file),
            Err(HomeError::NotASocket { .. })
        ));
        assert!(matches!(
            remove_stale_pidfile(&file),
            Err(HomeError::NotAPidfile { .. })
        ));
        assert!(file.exists());

        let socket = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        drop(listener);
        assert!(remove_stale_socket(&socket).expect("remove"));
        assert!(!remove_stale_socket(&socket).expect("gone"));

        let pidfile = dir.path().join("d.pid");
        std::fs::write(&pidfile, "1234\n").expect("write");
        assert!(remove_stale_pidfile(&pidfile).expect("remove"));
        assert!(!remove_stale_pidfile(&pidfile).expect("gone"));
    }

    #[test]
    fn a_group_writable_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o770))
            .expect("chmod");
        let err = check_private_dir(dir.path(), "DISPATCH_HOME").expect_err("loose");
        assert!(
            matches!(
                err,
                HomeError::LooseMode {
                    who: "its group",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        check_private_dir(dir.path(), "DISPATCH_HOME").expect("owner-only writes");
    }
}
