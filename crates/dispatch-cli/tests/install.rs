//! The set-up scripts as a new user runs them. `scripts/install-codex` with a fresh home
//! directory under `/tmp` (where Codex warns on stderr that it cannot create PATH aliases) puts
//! the pinned Codex under the data directory and prints its path; it needs npm and the npm
//! registry (or npm's cache, which the test reuses so a second run costs seconds).
//! `scripts/install`, with and without a `codex` on PATH, leaves a dispatch that a new shell
//! (no DISPATCH_CODEX_BIN) can use: doctor with no `fail`, `down` then `up`.

mod support;

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

#[test]
fn the_scripts_pin_the_version_dispatch_pins() {
    for script in ["scripts/install", "scripts/install-codex"] {
        let text = std::fs::read_to_string(workspace_root().join(script)).expect("read script");
        let pinned = format!(
            "CODEX_VERSION=\"{}\"",
            codex_app_server::PINNED_CODEX_VERSION
        );
        assert!(text.contains(&pinned), "{script} must set {pinned}");
    }
}

/// A machine for `scripts/install`: a fresh home under /tmp, a PATH of the few tools the
/// script needs (so no `codex` of the test machine leaks in), a `cargo` that "installs" the
/// binaries under test instead of building them (the release build is not what is tested), and
/// the pinned Codex already at its installed place (`install_codex_...` tests that part).
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::Builder::new()
            .prefix("dispatch-install-machine")
            .tempdir_in("/tmp")
            .expect("temp machine");
        let machine = Machine { dir };
        let tools = machine.path("tools");
        std::fs::create_dir_all(&tools).expect("tools");
        let test_path = std::env::var_os("PATH").unwrap_or_default();
        for tool in [
            "bash", "sh", "env", "dirname", "mkdir", "grep", "uname", "cp", "mv", "cat",
        ] {
            let found = std::env::split_paths(&test_path)
                .map(|dir| dir.join(tool))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("`{tool}` is not on PATH"));
            std::os::unix::fs::symlink(found, tools.join(tool)).expect("symlink tool");
        }
        let cargo = tools.join("cargo");
        // Like cargo, it replaces the binaries by renaming (the daemon may be running).
        let mut script = String::from("#!/bin/sh\nset -e\nmkdir -p \"$CARGO_INSTALL_ROOT/bin\"\n");
        for bin in [support::dispatch_bin(), support::dispatchd_bin()] {
            let name = bin
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            script.push_str(&format!(
                "cp {} \"$CARGO_INSTALL_ROOT/bin/.{name}.new\"\nmv -f \"$CARGO_INSTALL_ROOT/bin/.{name}.new\" \"$CARGO_INSTALL_ROOT/bin/{name}\"\n",
                bin.display()
            ));
        }
        support::executable::write_executable(&cargo, &script);
        let installed =
            codex_app_server::installed_codex_bin(None, Some(machine.path("home").into()))
                .expect("installed path");
        std::fs::create_dir_all(installed.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(support::codex_bin(), &installed).expect("seed the copy");
        machine
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command with only this machine's environment (a new login shell), `extra` first on
    /// PATH.
    fn command(&self, program: &Path, extra: Option<&Path>) -> Command {
        let mut dirs: Vec<PathBuf> = extra.into_iter().map(Path::to_path_buf).collect();
        dirs.push(self.path("cargo-root/bin"));
        dirs.push(self.path("tools"));
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", self.path("home"))
            .env("PATH", std::env::join_paths(dirs).expect("PATH"))
            .env("CARGO_INSTALL_ROOT", self.path("cargo-root"))
            .env("DISPATCH_HOME", self.path("dispatch-home"))
            .stdin(Stdio::null());
        cmd
    }

    fn install(&self, extra: Option<&Path>) -> String {
        let out = self
            .command(&workspace_root().join("scripts/install"), extra)
            .output()
            .expect("run scripts/install");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "scripts/install failed:\n{}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    fn dispatch(&self, args: &[&str], extra: Option<&Path>) -> support::Run {
        self.command(&self.path("cargo-root/bin/dispatch"), extra)
            .args(args)
            .arg("--json")
            .output()
            .expect("run dispatch")
            .into()
    }

    /// What a new shell sees: doctor has no `fail` and names the Codex it found; `down` then
    /// `up` works. Returns doctor's `codex_cli` summary.
    fn new_shell_works(&self, extra: Option<&Path>) -> String {
        let doctor = self.dispatch(&["doctor"], extra).json();
        let checks = doctor["checks"].as_array().expect("checks");
        let failed: Vec<_> = checks.iter().filter(|c| c["status"] == "fail").collect();
        assert!(failed.is_empty(), "no check fails in a new shell: {doctor}");
        for check in checks {
            let allowed = check["status"] == "ok" || check["name"] == "codex_auth";
            assert!(allowed, "only the missing credential warns: {check}");
        }
        self.dispatch(&["down"], extra).ok_json();
        self.dispatch(&["up"], extra).ok_json();
        let status = self.dispatch(&["daemon", "status"], extra).ok_json();
        assert_eq!(status["app_server"]["version"], "0.169.0", "{status}");
        checks
            .iter()
            .find(|c| c["name"] == "codex_cli")
            .and_then(|c| c["summary"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let dispatch = self.path("cargo-root/bin/dispatch");
        let _stopped = self.command(&dispatch, None).arg("down").output();
    }
}

#[test]
fn scripts_install_leaves_a_dispatch_a_new_shell_can_use_without_codex_on_path() {
    let machine = Machine::new();
    let said = machine.install(None);
    assert!(
        said.contains("== install: building"),
        "says its steps:\n{said}"
    );
    assert!(said.contains("dispatch finds it there by itself"), "{said}");
    let codex = machine.new_shell_works(None);
    assert!(codex.ends_with("(installed copy)"), "{codex}");
    assert!(
        !machine.path("dispatch-home/config.toml").exists(),
        "nothing to record"
    );
}

#[test]
fn scripts_install_pins_the_tested_codex_when_another_is_on_path() {
    let machine = Machine::new();
    let old = machine.path("old-codex");
    std::fs::create_dir_all(&old).expect("mkdir");
    support::executable::write_executable(
        &old.join("codex"),
        "#!/bin/sh
echo 'codex-cli 0.1.0'
",
    );
    let said = machine.install(Some(&old));
    assert!(
        said.contains("recorded the pinned copy as [codex] bin"),
        "{said}"
    );
    let codex = machine.new_shell_works(Some(&old));
    assert!(codex.ends_with("(config.toml [codex] bin)"), "{codex}");
    // Re-running keeps the operator's (here: the earlier run's) [codex] table as it is.
    let config =
        std::fs::read_to_string(machine.path("dispatch-home/config.toml")).expect("config");
    let said = machine.install(Some(&old));
    assert!(said.contains("keeping the [codex] table"), "{said}");
    assert_eq!(
        std::fs::read_to_string(machine.path("dispatch-home/config.toml")).expect("config"),
        config
    );
}

#[test]
fn scripts_install_says_what_is_done_when_a_step_fails() {
    let machine = Machine::new();
    // A `codex` on PATH that claims the pinned version but cannot serve: `up` fails.
    let broken = machine.path("broken-codex");
    std::fs::create_dir_all(&broken).expect("mkdir");
    support::executable::write_executable(
        &broken.join("codex"),
        "#!/bin/sh
echo 'codex-cli 0.169.0'
",
    );
    let out = machine
        .command(&workspace_root().join("scripts/install"), Some(&broken))
        .output()
        .expect("run scripts/install");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("install: FAILED (exit 8) while restarting the daemon")
            && stderr.contains("already done:")
            && stderr.contains("dispatch and dispatchd are installed in")
            && stderr.contains("re-run scripts/install"),
        "{stderr}"
    );
}
