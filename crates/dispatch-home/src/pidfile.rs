//! The daemon singleton: an exclusively locked pidfile held for the daemon's whole life.
//! The lock, not the file's existence, says whether a daemon lives: a killed daemon's lock is
//! released by the kernel, so a leftover file is recognisably stale.

use std::fs::{File, TryLockError};
use std::io::{ErrorKind, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::HomeError;
use crate::files::{Access, open_private, read_pid};

/// The daemon's held pidfile. Dropping it releases the lock.
#[derive(Debug)]
pub struct Pidfile {
    file: File,
    path: PathBuf,
}

/// What a look at the pidfile found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonProbe {
    /// A daemon holds the lock; its pid as written in the file (if readable).
    Running {
        /// The daemon's process id.
        pid: Option<u32>,
    },
    /// The file exists but nobody holds its lock: a daemon died without cleaning up.
    Stale {
        /// The pid the dead daemon wrote.
        pid: Option<u32>,
    },
    /// No pidfile.
    Absent,
}

impl Pidfile {
    /// Takes the lock and writes this process's pid. `Ok(None)` when another daemon holds it.
    ///
    /// The file is opened without following a symbolic link, and a file that is neither empty
    /// nor holds a pid is refused ([`HomeError::NotAPidfile`]) rather than overwritten.
    pub fn acquire(path: &Path) -> Result<Option<Pidfile>, HomeError> {
        let io = |source: std::io::Error| HomeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = open_private(path, Access::ReadWrite)?;
        // A `probe` holds a shared lock for an instant; only a lock that stays taken means
        // another daemon.
        let mut attempts = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(err)) => return Err(io(err)),
            }
        }
        read_pid(&mut file, path)?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Some(Pidfile {
            file,
            path: path.to_path_buf(),
        }))
    }

    /// Removes the file, then releases the lock (also when the removal fails).
    pub fn remove(self) -> std::io::Result<()> {
        let removed = std::fs::remove_file(&self.path);
        drop(self.file);
        removed
    }
}

/// Looks at the pidfile without disturbing a live daemon. A symbolic link, or a file that is
/// not a pidfile, is an error.
pub fn probe(path: &Path) -> Result<DaemonProbe, HomeError> {
    let mut file = match open_private(path, Access::Read) {
        Ok(file) => file,
        Err(HomeError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            return Ok(DaemonProbe::Absent);
        }
        Err(err) => return Err(err),
    };
    let pid = read_pid(&mut file, path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(DaemonProbe::Stale { pid }),
        Err(TryLockError::WouldBlock) => Ok(DaemonProbe::Running { pid }),
        Err(TryLockError::Error(source)) => Err(HomeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Waits until nobody holds the pidfile's lock (the daemon exited), at most `timeout`.
/// Returns whether it was released in time.
pub async fn wait_released(path: &Path, timeout: Duration) -> bool {
    let path = path.to_path_buf();
    let waiter = std::thread::spawn(move || -> Result<(), HomeError> {
        let file: File = match open_private(&path, Access::Read) {
            Ok(file) => file,
            Err(HomeError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        file.lock_shared()
            .map_err(|source| HomeError::Io { path, source })
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _receiver_gone = tx.send(waiter.join().map(|r| r.is_ok()).unwrap_or(false));
    });
    matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)))
}

/// Sends SIGTERM to `pid`; a process that is already gone is not an error (it is what the
/// signal asks for: a daemon that agreed to stop exits by itself, maybe between a probe and
/// this signal).
pub fn signal_terminate(pid: u32) -> std::io::Result<()> {
    send(pid, rustix::process::Signal::TERM)
}

/// Sends SIGKILL to `pid`; a process that is already gone is not an error.
pub fn signal_kill(pid: u32) -> std::io::Result<()> {
    send(pid, rustix::process::Signal::KILL)
}

fn send(pid: u32, signal: rustix::process::Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pid"))?;
    match rustix::process::kill_process(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => Err(std::io::Error::from(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pidfile_probes_running_and_a_released_one_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.pid");
        assert_eq!(probe(&path).expect("probe"), DaemonProbe::Absent);
        let held = Pidfile::acquire(&path).expect("acquire").expect("free");
        assert_eq!(
            probe(&path).expect("probe"),
            DaemonProbe::Running {
                pid: Some(std::process::id())
            }
        );
        assert!(Pidfile::acquire(&path).expect("second acquire").is_none());
        drop(held);
        assert_eq!(
            probe(&path).expect("probe"),
            DaemonProbe::Stale {
                pid: Some(std::process::id())
            }
        );
    }

    #[test]
    fn a_file_that_is_not_a_pidfile_is_neither_overwritten_nor_probed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "my notes\n").expect("write");
        let err = Pidfile::acquire(&path).expect_err("not a pidfile");
        assert!(matches!(err, HomeError::NotAPidfile { .. }), "{err}");
        assert!(matches!(probe(&path), Err(HomeError::NotAPidfile { .. })));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "my notes\n");

        let empty = dir.path().join("empty.pid");
        std::fs::write(&empty, "").expect("write");
        let held = Pidfile::acquire(&empty).expect("acquire").expect("free");
        drop(held);
    }

    #[test]
    fn a_symlinked_pidfile_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, "precious\n").expect("write");
        let link = dir.path().join("d.pid");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = Pidfile::acquire(&link).expect_err("a link");
        assert!(matches!(err, HomeError::Symlink { .. }), "{err}");
        assert!(matches!(probe(&link), Err(HomeError::Symlink { .. })));
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "precious\n"
        );
    }

    /// A daemon that stops by itself (`daemon stop-if-idle`) can exit between `down`'s probe
    /// and its signal: signalling a process that is gone is what the signal asked for.
    #[test]
    fn signalling_a_process_that_already_exited_succeeds() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("reaped");
        signal_terminate(pid).expect("gone: nothing to stop");
        signal_kill(pid).expect("gone: nothing to kill");
    }

    #[tokio::test]
    async fn wait_released_returns_when_the_lock_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.pid");
        let held = Pidfile::acquire(&path).expect("acquire").expect("free");
        assert!(!wait_released(&path, Duration::from_millis(50)).await);
        held.remove().expect("remove");
        assert!(wait_released(&path, Duration::from_secs(5)).await);
    }
}
