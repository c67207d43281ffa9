//! Which Codex binary `doctor` and the daemon run, and that both say where it came from: the
//! documented order is `DISPATCH_CODEX_BIN`, `[codex] bin` in config.toml, `codex` on PATH,
//! then the installed pinned copy (ADR 0008). A fake `codex` printing a wrong version sits
//! first on PATH throughout, as an old global install would.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Home, Run};

fn check<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no `{name}` check in {doctor}"))
}

/// A home whose commands see a fake, old `codex` first on PATH and a private data directory
/// (`XDG_DATA_HOME`) where the installed copy may be put.
struct World {
    home: Home,
    dir: tempfile::TempDir,
    path: OsString,
}

impl World {
    fn new() -> World {
        let home = Home::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let fake_dir = dir.path().join("fake-bin");
        std::fs::create_dir_all(&fake_dir).expect("mkdir");
        let fake = fake_dir.join("codex");
        support::executable::write_executable(&fake, "#!/bin/sh\necho 'codex-cli 0.1.0'\n");
        let bin_dir = support::dispatch_bin()
            .parent()
            .map(Path::to_path_buf)
            .expect("bin dir");
        let path = std::env::join_paths([fake_dir, bin_dir, "/usr/bin".into(), "/bin".into()])
            .expect("PATH");
        World { home, dir, path }
    }

    fn fake(&self) -> PathBuf {
        self.dir.path().join("fake-bin/codex")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Puts the real pinned Codex where `scripts/install-codex` would (a symlink).
    fn install_copy(&self) -> PathBuf {
        let at = codex_app_server::installed_codex_bin(Some(self.data().into()), None)
            .expect("installed path");
        std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(support::codex_bin(), &at).expect("symlink");
        at
    }

    /// Without PATH's fake: only the dispatch binaries and the system directories.
    fn drop_fake_from_path(&mut self) {
        let bin_dir = support::dispatch_bin()
            .parent()
            .map(Path::to_path_buf)
            .expect("bin dir");
        self.path =
            std::env::join_paths([bin_dir, "/usr/bin".into(), "/bin".into()]).expect("PATH");
    }

    /// `dispatch args... --json`, with `DISPATCH_CODEX_BIN` only when `env_bin` is given.
    fn json(&self, args: &[&str], env_bin: Option<&Path>) -> Run {
        let mut cmd = self.home.command(&support::dispatch_bin());
        cmd.args(args)
            .arg("--json")
            .env("PATH", &self.path)
            .env("XDG_DATA_HOME", self.data())
            .env_remove("DISPATCH_CODEX_BIN");
        if let Some(bin) = env_bin {
            cmd.env("DISPATCH_CODEX_BIN", bin);
        }
        cmd.output().expect("run dispatch").into()
    }

    fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.home.path()).expect("home");
        std::fs::write(self.home.file("config.toml"), text).expect("config.toml");
    }

    fn codex_check(&self, env_bin: Option<&Path>) -> Value {
        let doctor = self.json(&["doctor", "--no-app-server"], env_bin).json();
        check(&doctor, "codex_cli").clone()
    }

    fn up_and_down(&self, env_bin: Option<&Path>, source: &str) {
        let up = self.json(&["up"], env_bin);
        assert_eq!(up.code, 0, "up with the binary from {source}: {up:?}");
        let status = self.json(&["daemon", "status"], env_bin).ok_json();
        assert_eq!(status["app_server"]["version"], "0.169.0", "{status}");
        let log = std::fs::read_to_string(self.home.file("dispatchd.log")).expect("log");
        let started = log
            .lines()
            .rev()
            .find(|l| l.contains("starting the App Server"));
        assert!(
            started.is_some_and(|l| l.contains(&format!("source={source}"))),
            "the daemon logs where its Codex came from ({source}):\n{log}"
        );
        self.json(&["down"], env_bin).ok_json();
    }
}

fn summary(check: &Value) -> &str {
    check["summary"].as_str().unwrap_or_default()
}

#[test]
fn the_environment_variable_wins_over_everything() {
    let w = World::new();
    w.install_copy();
    w.write_config(&format!(
        "[codex]\nbin = {:?}\n",
        w.fake().display().to_string()
    ));
    let real = support::codex_bin();
    let cli = w.codex_check(Some(&real));
    assert_eq!(cli["status"], "ok", "{cli}");
    assert_eq!(
        summary(&cli),
        format!("codex 0.169.0 at {} (DISPATCH_CODEX_BIN)", real.display())
    );
    w.up_and_down(Some(&real), "DISPATCH_CODEX_BIN");
}

#[test]
fn the_configured_binary_wins_over_path_and_the_installed_copy() {
    let w = World::new();
    w.install_copy();
    let real = support::codex_bin();
    w.write_config(&format!(
        "[codex]\nbin = {:?}\n",
        real.display().to_string()
    ));
    let cli = w.codex_check(None);
    assert_eq!(cli["status"], "ok", "{cli}");
    assert_eq!(
        summary(&cli),
        format!(
            "codex 0.169.0 at {} (config.toml [codex] bin)",
            real.display()
        )
    );
    w.up_and_down(None, "config.toml [codex] bin");
}

#[test]
fn codex_on_path_wins_over_the_installed_copy_and_doctor_says_how_to_switch() {
    let w = World::new();
    let installed = w.install_copy();
    let cli = w.codex_check(None);
    assert_eq!(cli["status"], "fail", "{cli}");
    assert_eq!(
        summary(&cli),
        format!(
            "codex 0.1.0 at {} (codex on PATH), older than the minimum 0.169.0",
            w.fake().display()
        )
    );
    let hint = cli["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("npm install -g @openai/codex@0.169.0")
            && hint.contains(&format!("bin = \"{}\"", installed.display())),
        "the hint pins the version and names the installed copy: {hint}"
    );
    let up = w.json(&["up"], None);
    assert_eq!(up.code, 8, "the fake cannot run an App Server: {up:?}");
    let body = up.error("app_server_unavailable");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("codex on PATH")),
        "{body}"
    );
}

#[test]
fn the_installed_copy_is_found_last_and_named_in_the_login_hint() {
    let mut w = World::new();
    w.drop_fake_from_path();
    let none = w.codex_check(None);
    assert_eq!(none["status"], "fail", "{none}");
    assert!(
        summary(&none).contains("no installed copy at"),
        "every place looked is named: {none}"
    );
    assert!(
        none["hint"]
            .as_str()
            .is_some_and(|h| h.contains("npm install -g @openai/codex@0.169.0")
                && h.contains("scripts/install-codex")),
        "{none}"
    );
    let up = w.json(&["up"], None);
    let body = up.error("app_server_unavailable");
    assert!(
        body["hint"]
            .as_str()
            .is_some_and(|h| h.contains("npm install -g @openai/codex@0.169.0")),
        "up's hint pins the version: {body}"
    );

    let installed = w.install_copy();
    let doctor = w.json(&["doctor", "--no-app-server"], None).json();
    let cli = check(&doctor, "codex_cli");
    assert_eq!(cli["status"], "ok", "{cli}");
    assert_eq!(
        summary(cli),
        format!("codex 0.169.0 at {} (installed copy)", installed.display())
    );
    let auth = check(&doctor, "codex_auth");
    assert_eq!(
        auth["status"], "warn",
        "the test's CODEX_HOME has no credentials"
    );
    assert!(
        auth["hint"]
            .as_str()
            .is_some_and(|h| h.contains(&format!("`{} login`", installed.display()))),
        "codex is not on PATH, so the hint names the binary: {auth}"
    );
    w.up_and_down(None, "installed copy");
}
