//! `cargo xtask link-order [--bin-dir DIR]` and `cargo xtask link-order --check [--bin-dir DIR]`:
//! the symbol ordering files the release link of `dispatch` and `dispatchd` uses (ADR 0023).
//!
//! Generating: the release binaries (built here unless `--bin-dir` names them) run a fixed
//! scenario under Valgrind's callgrind, twice (a new registry, then an existing one):
//! `dispatch up` (so the daemon starts under it too, with the real App Server from
//! `DISPATCH_CODEX_BIN`), `daemon status`, `list`, `--help`, `--version`, a `dispatch mcp`
//! session (tool list, `dispatch_daemon_status`), `down`. Every function of the two binaries that ran is written, sorted, to
//! `crates/dispatch-cli/link-order/<binary>.txt`; the linker (rust-lld's
//! `--symbol-ordering-file`, passed by `crates/dispatch-cli/build.rs` in release builds) puts
//! those functions first and together, so that starting the daemon or a CLI call touches a
//! few hundred KiB of code instead of pages spread over the whole binary.
//!
//! Checking: the symbols are Rust's mangled names, whose hashes change when a dependency or a
//! function changes; names the linker does not find are skipped without a word. `--check`
//! counts how many of the listed names are in the built binaries (`nm`) and fails below
//! [`MIN_FOUND_PERCENT`]; `cargo xtask bench` prints the same count after the benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::target_dir::release_dir;

/// The binaries that get an ordering file.
pub const BINARIES: [&str; 2] = ["dispatch", "dispatchd"];

/// Below this share of listed symbols found in a binary, the file is stale.
const MIN_FOUND_PERCENT: usize = 90;

/// The CLI calls of the scenario, after `up` and before `down`.
const CALLS: &[&[&str]] = &[
    &["daemon", "status", "--json"],
    &["daemon", "status"],
    &["list", "--json"],
    &["list"],
    &["--help"],
    &["--version"],
];

/// What the scenario says to `dispatch mcp` before closing its input: the handshake, the tool
/// list, and one tool call.
const MCP_SESSION: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"link-order","version":"0"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"dispatch_daemon_status","arguments":{}}}"#,
    "\n",
);

/// Where the ordering file of `binary` lives.
pub fn order_file(root: &Path, binary: &str) -> PathBuf {
    root.join("crates/dispatch-cli/link-order")
        .join(format!("{binary}.txt"))
}

/// `cargo xtask link-order ARGS`.
pub fn run(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let (check, bin_dir) = match args {
        [] => (false, None),
        ["--check"] => (true, None),
        ["--bin-dir", dir] => (false, Some(PathBuf::from(dir))),
        ["--check", "--bin-dir", dir] | ["--bin-dir", dir, "--check"] => {
            (true, Some(PathBuf::from(dir)))
        }
        _ => bail!("usage: cargo xtask link-order [--check] [--bin-dir DIR]"),
    };
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None if check => release_dir(root),
        None => build_release(root)?,
    };
    if check {
        let mut stale = Vec::new();
        for binary in BINARIES {
            let (found, listed) = coverage(root, &bin_dir.join(binary), binary)?;
            println!("{binary}: {found} of {listed} ordered symbols found");
            if stale_at(found, listed) {
                stale.push(binary);
            }
        }
        ensure!(
            stale.is_empty(),
            "the link order of {} is stale; run `cargo xtask link-order` and commit the result",
            stale.join(", ")
        );
        return Ok(());
    }
    generate(root, &bin_dir)
}

/// Whether an ordering file of which `found` of `listed` names are in its binary is stale
/// (below [`MIN_FOUND_PERCENT`]).
pub fn stale_at(found: usize, listed: usize) -> bool {
    found * 100 < listed * MIN_FOUND_PERCENT
}

fn build_release(root: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "dispatch-cli"])
        .current_dir(root)
        .status()
        .context("running cargo build --release")?;
    ensure!(status.success(), "the release build failed ({status})");
    Ok(release_dir(root))
}

fn generate(root: &Path, bin_dir: &Path) -> anyhow::Result<()> {
    let bin_dir = std::path::absolute(bin_dir).context("the binaries' directory")?;
    let codex = std::env::var_os("DISPATCH_CODEX_BIN")
        .filter(|v| !v.is_empty())
        .context(
            "set DISPATCH_CODEX_BIN to the pinned Codex CLI (scripts/install-codex prints it)",
        )?;
    let valgrind_ok = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        valgrind_ok,
        "valgrind is needed (its callgrind tool lists the functions that ran)"
    );
    let dir = std::env::temp_dir().join(format!("dispatch-link-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let profiles = dir.join("callgrind");
    std::fs::create_dir_all(&profiles).context("creating the scratch directory")?;
    std::fs::create_dir_all(dir.join("codex")).context("creating CODEX_HOME")?;
    let result = run_scenario(&dir, &bin_dir, &codex, &profiles)
        .and_then(|()| write_files(root, &bin_dir, &profiles));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn valgrind_args(profiles: &Path, name: &str) -> Vec<String> {
    vec![
        "-q".into(),
        "--tool=callgrind".into(),
        "--demangle=no".into(),
        "--compress-strings=no".into(),
        "--compress-pos=no".into(),
        format!("--callgrind-out-file={}/{name}.%p", profiles.display()),
    ]
}

fn run_scenario(
    dir: &Path,
    bin_dir: &Path,
    codex: &std::ffi::OsStr,
    profiles: &Path,
) -> anyhow::Result<()> {
    // `dispatch up` starts this wrapper as the daemon, so that the daemon runs under callgrind.
    let wrapper = dir.join("dispatchd-under-callgrind");
    let mut script = String::from("#!/bin/sh\nexec valgrind");
    for arg in valgrind_args(profiles, "dispatchd") {
        script.push_str(&format!(" '{arg}'"));
    }
    script.push_str(&format!(
        " '{}' \"$@\"\n",
        bin_dir.join("dispatchd").display()
    ));
    std::fs::write(&wrapper, script).context("writing the daemon wrapper")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .context("making the daemon wrapper executable")?;
    let dispatch = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new("valgrind");
        cmd.args(valgrind_args(profiles, "dispatch"))
            .arg(bin_dir.join("dispatch"))
            .args(args)
            .env("DISPATCH_HOME", dir.join("home"))
            .env("CODEX_HOME", dir.join("codex"))
            .env("DISPATCH_CODEX_BIN", codex)
            .env("DISPATCH_DAEMON_BIN", &wrapper)
            .env("HOME", dir)
            .env_remove("DISPATCH_SOCKET")
            .env_remove("DISPATCH_DB")
            .env_remove("DISPATCH_PIDFILE")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null());
        let what = format!("dispatch {}", args.join(" "));
        let mut child = cmd.spawn().with_context(|| format!("running {what}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(text.as_bytes())
                .with_context(|| format!("writing to {what}"))?;
            // Dropping the pipe is the end of input.
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for {what}"))?;
        ensure!(status.success(), "{what} failed ({status})");
        anyhow::Ok(())
    };
    // Twice: the first daemon creates and migrates the registry, the second opens an existing
    // one, which is what a daemon does every other time.
    for round in 0..2 {
        dispatch(&["up", "--json"], None)?;
        let calls = CALLS
            .iter()
            .try_for_each(|args| dispatch(args, None))
            .and_then(|()| dispatch(&["mcp"], Some(MCP_SESSION)));
        // The daemon writes its profile when it exits, so it is stopped even after a failed
        // call.
        let down = dispatch(&["down"], None);
        calls
            .and(down)
            .with_context(|| format!("round {}", round + 1))?;
    }
    Ok(())
}

/// The functions of the binary at `path` that ran, from every callgrind profile in `profiles`
/// (one per process), those that ran in more processes first (e.g. what every CLI call runs
/// before what only `mcp` runs), then by name.
fn functions_that_ran(profiles: &Path, binary: &Path) -> anyhow::Result<Vec<String>> {
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    let suffix = format!(
        "/{}",
        binary.file_name().and_then(|n| n.to_str()).unwrap_or("")
    );
    for entry in std::fs::read_dir(profiles).context("reading the profiles")? {
        let path = entry.context("reading the profiles")?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut ours = false;
        let mut here = BTreeSet::new();
        for line in text.lines() {
            if let Some(object) = line.strip_prefix("ob=") {
                ours = object.ends_with(&suffix);
            } else if let Some(name) = line.strip_prefix("fn=")
                && ours
            {
                // callgrind marks recursion levels as `name'2`; the symbol is `name`. Unnamed
                // code (`0x...`) and callgrind's own entries (`(below main)`) are no symbols.
                let name = name.split('\'').next().unwrap_or(name);
                if !name.is_empty() && !name.starts_with("0x") && !name.contains([' ', '(']) {
                    here.insert(name.to_owned());
                }
            }
        }
        for name in here {
            *runs.entry(name).or_default() += 1;
        }
    }
    let mut functions: Vec<(usize, String)> = runs.into_iter().map(|(n, c)| (c, n)).collect();
    functions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(functions.into_iter().map(|(_, name)| name).collect())
}

fn write_files(root: &Path, bin_dir: &Path, profiles: &Path) -> anyhow::Result<()> {
    for binary in BINARIES {
        let functions = functions_that_ran(profiles, &bin_dir.join(binary))?;
        ensure!(
            !functions.is_empty(),
            "no function of {binary} ran under callgrind; is it built with symbols?"
        );
        let mut text = format!(
            "# Functions of `{binary}` the linker puts first (ADR 0023): what ran while the daemon\n\
             # started and served `daemon status`, `list`, `--help`, `--version`, `mcp` and `down`;\n\
             # those that ran in more of the scenario's processes first.\n\
             # Generated by `cargo xtask link-order`; checked by `cargo xtask link-order --check`.\n"
        );
        for name in &functions {
            text.push_str(name);
            text.push('\n');
        }
        let path = order_file(root, binary);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{binary}: {} functions -> {}",
            functions.len(),
            path.display()
        );
    }
    Ok(())
}

/// How many of the symbols listed for `binary` the built file at `path` defines, and how many
/// are listed.
pub fn coverage(root: &Path, path: &Path, binary: &str) -> anyhow::Result<(usize, usize)> {
    let listed_text = std::fs::read_to_string(order_file(root, binary))
        .with_context(|| format!("reading the link order of {binary}"))?;
    let listed: BTreeSet<&str> = listed_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let out = Command::new("nm")
        .args(["--defined-only", "--format=posix"])
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running nm on {}", path.display()))?;
    ensure!(out.status.success(), "nm {} failed", path.display());
    let symbols = String::from_utf8_lossy(&out.stdout);
    let defined: BTreeSet<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let found = listed.iter().filter(|s| defined.contains(*s)).count();
    Ok((found, listed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the named functions of the binary asked for are taken, without callgrind's
    /// recursion marks; other objects, callees' lines, unnamed code and callgrind's own
    /// entries are not; the more processes ran a function, the earlier it comes.
    #[test]
    fn the_functions_of_one_binary_are_read_from_a_callgrind_profile() {
        let dir = std::env::temp_dir().join(format!("xtask-link-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let profile = "# callgrind format\nversion: 1\n\
            ob=/usr/lib/x86_64-linux-gnu/libc.so.6\nfn=malloc\n1 2\n\
            ob=/x/release/dispatchd\nfn=_ZN4main17h0E\n1 2\ncob=/usr/lib/libc.so.6\n\
            cfn=free\ncalls=1 0\n1 2\nfn=_ZN3rec17h1E'2\n1 1\nfn=0x0000000001247da4\n1 1\n\
            fn=(below main)\n1 1\nob=/x/release/dispatch\nfn=_ZN3cli17h2E\n1 1\n";
        std::fs::write(dir.join("dispatchd.1"), profile).expect("a profile");
        let second = "ob=/x/release/dispatch\nfn=_ZN5often17h3E\n1 1\n";
        std::fs::write(dir.join("dispatch.2"), second).expect("a profile");
        let third = "ob=/x/release/dispatch\nfn=_ZN5often17h3E\n1 1\nfn=_ZN1a17h4E\n1 1\n";
        std::fs::write(dir.join("dispatch.3"), third).expect("a profile");
        let daemon = functions_that_ran(&dir, Path::new("/y/dispatchd")).expect("read");
        let cli = functions_that_ran(&dir, Path::new("/y/dispatch")).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(daemon, ["_ZN3rec17h1E", "_ZN4main17h0E"]);
        // What ran in two processes comes before what ran in one, then by name.
        assert_eq!(cli, ["_ZN5often17h3E", "_ZN1a17h4E", "_ZN3cli17h2E"]);
    }
}
