//! `dispatchd`: the dispatch daemon. `dispatchd run` serves in the foreground; `dispatch up`
//! starts it in the background.

use std::process::ExitCode;

const USAGE: &str = "usage: dispatchd run\n\nRuns the dispatch daemon in the foreground. \
`dispatch up` starts it in the background; `dispatch down` stops it.\n\
Environment: DISPATCH_HOME, DISPATCH_SOCKET, DISPATCH_DB, DISPATCH_PIDFILE, DISPATCH_LOG \
(log filter, default info).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run"] => dispatch_daemon::main_run(),
        ["--version" | "-V"] => {
            println!("dispatchd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("dispatchd: unexpected arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
