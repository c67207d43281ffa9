//! Snapshots of `dispatch --help` and of every subcommand's `--help`, as the real binary
//! prints them: the CLI surface as users read it.

use clap::Command;

fn paths(cmd: &Command, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        prefix.push(sub.get_name().to_owned());
        paths(sub, prefix, out);
        prefix.pop();
    }
}

#[test]
fn every_help_text_matches_its_snapshot() {
    let mut all = Vec::new();
    paths(&dispatch_cli::root::command(), &mut Vec::new(), &mut all);
    assert!(all.len() > 8, "the command tree lost commands: {all:?}");
    for path in all {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(&path)
            .arg("--help")
            .env("COLUMNS", "100")
            .output()
            .expect("run dispatch --help");
        assert!(out.status.success(), "`{path:?} --help` failed");
        let name = std::iter::once("dispatch".to_owned())
            .chain(path)
            .collect::<Vec<_>>()
            .join("_");
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}
