//! The set-up scripts as a new user runs them: `scripts/install-codex` with a fresh home
//! directory under `/tmp` (where Codex warns on stderr that it cannot create PATH aliases) puts
//! the pinned Codex under the data directory and prints its path. Needs npm and the npm
//! registry (or npm's cache, which the test reuses so a second run costs seconds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// npm's cache of the real user, so the fresh home does not download Codex again.
fn npm_cache() -> Option<String> {
    let out = Command::new("npm")
        .args(["config", "get", "cache"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !cache.is_empty()).then_some(cache)
}

fn install_codex(home: &Path) -> std::process::Output {
    let mut cmd = Command::new(workspace_root().join("scripts/install-codex"));
    cmd.env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("DISPATCH_CODEX_BIN")
        .env("npm_config_prefer_offline", "true")
        .stdin(Stdio::null());
    if let Some(cache) = npm_cache() {
        cmd.env("npm_config_cache", cache);
    }
    cmd.output().expect("run scripts/install-codex")
}

#[test]
fn install_codex_works_with_a_fresh_home_under_tmp() {
    // Under /tmp on purpose, whatever TMPDIR says: that is where Codex prints its warning.
    let home = tempfile::Builder::new()
        .prefix("dispatch-install-home")
        .tempdir_in("/tmp")
        .expect("temp home");
    let out = install_codex(home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-codex failed:\n{stderr}");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let expected = home
        .path()
        .join(".local/share/dispatch/codex/0.169.0")
        .join("node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex");
    assert_eq!(Path::new(&printed), expected, "stderr:\n{stderr}");
    assert_eq!(
        codex_app_server::installed_codex_bin(None, Some(home.path().into())),
        Some(expected.clone()),
        "the script and dispatch agree on where the installed copy is"
    );
    let version = Command::new(&expected)
        .arg("--version")
        .env("HOME", home.path())
        .output()
        .expect("codex --version");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        "codex-cli 0.169.0"
    );

    // A second run finds the copy and installs nothing.
    let again = install_codex(home.path());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second run failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), printed);
    assert!(
        !stderr.contains("installing"),
        "nothing to install:\n{stderr}"
    );
}
