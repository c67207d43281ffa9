//! The root command: the generated operation commands plus `completion` and `mcp`.

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use clap_complete::Shell;

use crate::generated::cli::operation_commands;

const ABOUT: &str = "Orchestrate Codex lanes (threads) through the Codex App Server";

const AFTER_HELP: &str = "Every command prints human output; --json prints the contract's \
output object (errors as {\"error\":{code,message,hint}}). `dispatch schema <command>` prints \
a command's input and output JSON Schema. Start with `dispatch doctor` and `dispatch up`.";

/// The whole `dispatch` command tree.
pub fn command() -> Command {
    Command::new("dispatch")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(AFTER_HELP)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print the output object (or the error) as JSON"),
        )
        .subcommands(operation_commands())
        .subcommand(
            Command::new("completion")
                .about("Print shell completions")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(Shell))
                        .help("The shell to complete for"),
                ),
        )
        .subcommand(
            Command::new("mcp")
                .about("Serve every operation as an MCP tool on stdin/stdout (dispatch_<op>)"),
        )
}

/// The command words down to the leaf, and the leaf's matches.
pub fn subcommand_path(matches: &ArgMatches) -> (Vec<&str>, &ArgMatches) {
    let mut words = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        words.push(name);
        current = sub;
    }
    (words, current)
}

/// `dispatch completion <shell>`.
pub fn completion(matches: &ArgMatches) -> ExitCode {
    let Some(shell) = matches.get_one::<Shell>("shell").copied() else {
        return dispatch_contract::ErrorCode::InvalidInput.exit_status();
    };
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dispatch", &mut script);
    // A closed stdout ends quietly.
    let _closed = crate::output::write_bytes(&script);
    ExitCode::SUCCESS
}
