//! `dispatchd`: the dispatch daemon. `dispatchd run` serves in the foreground; `dispatch up`
//! starts it in the background.

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: dispatchd run\n\nRuns the dispatch daemon in the foreground. \
`dispatch up` starts it in the background; `dispatch down` stops it.\n\
Environment: DISPATCH_HOME, DISPATCH_SOCKET, DISPATCH_DB, DISPATCH_PIDFILE, DISPATCH_LOG \
(log filter, default info).";

fn main() -> ExitCode {
    // Lossy: an argument that is not UTF-8 is no known argument, and must not panic.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run"] => dispatch_daemon::main_run(),
        ["--version" | "-V"] => {
            let _closed = writeln!(std::io::stdout(), "dispatchd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            let _closed = writeln!(std::io::stdout(), "{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            let _closed = writeln!(
                std::io::stderr(),
                "dispatchd: unexpected arguments {args:?}\n{USAGE}"
            );
            dispatch_contract::ErrorCode::InvalidInput.exit_status()
        }
    }
}
