//! Helpers shared by the integration tests.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_app_server::{CODEX_BIN_ENV, Event, Subscription};

/// Generous bound on one event of a turn. The first turn in a brand-new CODEX_HOME has
/// been seen taking ~60 s to deliver `turn/completed`.
pub const TURN_BOUND: Duration = Duration::from_secs(120);
/// Bound on events that come promptly.
pub const SHORT_BOUND: Duration = Duration::from_secs(20);

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The real Codex binary: `$DISPATCH_CODEX_BIN`, else the pinned copy
/// `scripts/install-codex` installs under the data directory. Panics (fails the test) when
/// neither exists.
pub fn codex_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(CODEX_BIN_ENV).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{CODEX_BIN_ENV}={} does not exist; run scripts/install-codex",
            bin.display()
        );
        return bin;
    }
    let bin = codex_app_server::installed_codex_bin(
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    );
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "the real Codex binary is missing: run scripts/install-codex \
             (or set {CODEX_BIN_ENV} to a codex-cli 0.169.0 binary)"
        ),
    }
}

/// A fresh directory under the workspace `target/` (not the system temp dir, where
/// Codex refuses to create its helper links).
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let parent = workspace_root().join("target/codex-test-scratch");
    std::fs::create_dir_all(&parent).expect("create scratch parent");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .expect("scratch dir")
}

/// Receive events until `pred` matches; return every event seen (the match last).
/// Fails the test after `bound`, listing what was seen.
pub async fn collect_until(
    sub: &mut Subscription,
    bound: Duration,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(bound, async {
        while let Some(event) = sub.recv().await {
            let done = pred(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    match result {
        Ok(true) => seen,
        Ok(false) => panic!(
            "subscription closed before {what}; saw {:?}",
            methods(&seen)
        ),
        Err(_) => panic!("no {what} within {bound:?}; saw {:?}", methods(&seen)),
    }
}

/// The methods of `events` (`<lagged>` for lag markers).
pub fn methods(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.method().unwrap_or("<lagged>").to_owned())
        .collect()
}

#[path = "../../../test-support/executable.rs"]
mod executable;

/// Write an executable shell script `name` in `dir` ([`executable::write_executable`]).
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    executable::write_executable(&path, &format!("#!/bin/sh\n{body}"));
    path
}

/// Whether process `pid` still exists (a zombie counts as existing).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid a fake script wrote at its start (it has run by the time the client
/// reports anything about it).
pub fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("the fake wrote its pid")
        .trim()
        .parse()
        .expect("a pid")
}
