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
                .about("Serve the operations as MCP tools on stdin/stdout (dispatch_<op>), by toolset")
                .after_help(mcp_toolsets_help())
                .arg(
                    Arg::new("toolsets")
                        .long("toolsets")
                        .value_name("NAME[,NAME...]")
                        .value_delimiter(',')
                        .action(ArgAction::Append)
                        .help("Toolsets to serve: names below, `all`, `default` (default: `[mcp] toolsets` in config.toml, else the default toolsets)"),
                ),
        )
}

/// `dispatch mcp --help`'s table of the toolsets (`contract/mcp.json`).
fn mcp_toolsets_help() -> String {
    let mut text = String::from("Toolsets (* served by default):");
    for set in dispatch_mcp::TOOLSETS {
        let mark = if set.default { "*" } else { " " };
        text.push_str(&format!("\n  {mark} {:<14} {}", set.name, set.description));
    }
    text
}

/// The toolsets `dispatch mcp` serves: `--toolsets` if given, else `[mcp] toolsets` of
/// `config.toml`, else the defaults. A bad name or a config that does not load is
/// `invalid_input`, before anything is served.
pub fn mcp_toolsets(
    matches: &ArgMatches,
    paths: &dispatch_home::Paths,
) -> Result<dispatch_mcp::Enabled, dispatch_contract::DispatchError> {
    if let Some(names) = matches.get_many::<String>("toolsets") {
        let names: Vec<&String> = names.collect();
        return dispatch_mcp::Enabled::parse(&names);
    }
    let config = dispatch_home::Config::load(&paths.config).map_err(|err| {
        dispatch_contract::DispatchError::invalid_input(err.to_string())
            .with_hint("fix or remove the file; `[mcp] toolsets` takes a list of toolset names (dispatch mcp --help lists them)")
    })?;
    match config.mcp.toolsets {
        Some(names) => dispatch_mcp::Enabled::parse(&names),
        None => Ok(dispatch_mcp::Enabled::defaults()),
    }
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
