//! Fake executables for the tests of `codex-app-server`, `dispatch-daemon` and
//! `dispatch-cli`: one source file that each test tree includes (`#[path]`), since test code
//! cannot be shared between crates otherwise.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `body` to `path` as an executable (mode 755).
///
/// A child process writes it, never this one: tests run on parallel threads, and a process
/// another test forks while this one holds the file open for writing keeps that writer open
/// until its own exec, so executing the file fails with "Text file busy" (ETXTBSY).
pub fn write_executable(path: &Path, body: &str) {
    let mut writer = Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn the executable's writer");
    let mut stdin = writer.stdin.take().expect("the writer's stdin");
    stdin
        .write_all(body.as_bytes())
        .expect("write the executable");
    drop(stdin);
    assert!(
        writer.wait().expect("the writer").success(),
        "write {}",
        path.display()
    );
}
