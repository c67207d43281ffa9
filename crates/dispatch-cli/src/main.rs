//! `dispatch`: the command-line interface of dispatch.

fn main() -> std::process::ExitCode {
    dispatch_cli::main_with_args(std::env::args_os().collect())
}
