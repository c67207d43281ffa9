//! The root command: the generated operation commands plus `completion` and `mcp`.

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use clap_complete::Shell;

use crate::generated::cli::{
    OPERATION_WORDS, operation_command, operation_commands, operation_summary,
};

const ABOUT: &str = "Orchestrate Codex lanes (threads) through the Codex App Server";

const MCP_ABOUT: &str =
    "Serve the operations as MCP tools on stdin/stdout (dispatch_<op>), by toolset";

const COMPLETION_ABOUT: &str = "Print shell completions";

const AFTER_HELP: &str = "Every command prints human output; --json prints the contract's \
output object (errors as {\"error\":{code,message,hint}}). `dispatch schema <command>` prints \
a command's input and output JSON Schema. Start with `dispatch doctor` and `dispatch up`.";

/// The whole `dispatch` command tree.
pub fn command() -> Command {
    root()
        .subcommands(operation_commands())
        .subcommand(completion_command())
        .subcommand(mcp_command())
}

/// The tree that parsing `args` (the whole command line, program name first) needs, so that a
/// call does not build the clap commands of every operation (most of a short call's work
/// before this):
/// - the first word after any `--json` names a command: the root with that command alone
///   (with all of a group's operations);
/// - it is `help`: the whole tree (`help` can name any command);
/// - anything else (no word, `--help`, `--version`, an unknown word or flag): the root with
///   every command as a summary (its name and `about` only), which is all the root's help,
///   version and errors (suggestions included) show.
///
/// Each parses the command line to the same matches, help text and errors as the whole tree
/// (`tests::the_pruned_tree_parses_and_explains_as_the_whole_one`).
pub fn command_for(args: &[String]) -> Command {
    let first = args.iter().skip(1).find(|arg| *arg != "--json");
    let named = match first.map(String::as_str) {
        Some("completion") => Some(completion_command()),
        Some("mcp") => Some(mcp_command()),
        Some("help") => return command(),
        Some(word) => operation_command(word),
        None => None,
    };
    match named {
        Some(sub) => root().subcommand(sub),
        None => summaries(),
    }
}

/// The root with every command as a summary: its name and `about`.
fn summaries() -> Command {
    root()
        .subcommands(OPERATION_WORDS.iter().filter_map(|w| operation_summary(w)))
        .subcommand(Command::new("completion").about(COMPLETION_ABOUT))
        .subcommand(Command::new("mcp").about(MCP_ABOUT))
}

/// The root command without its subcommands.
fn root() -> Command {
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
}

fn completion_command() -> Command {
    Command::new("completion").about(COMPLETION_ABOUT).arg(
        Arg::new("shell")
            .required(true)
            .value_parser(clap::value_parser!(Shell))
            .help("The shell to complete for"),
    )
}

fn mcp_command() -> Command {
    Command::new("mcp")
        .about(MCP_ABOUT)
        .after_help(mcp_toolsets_help())
        .arg(
            Arg::new("toolsets")
                .long("toolsets")
                .value_name("NAME[,NAME...]")
                .value_delimiter(',')
                .action(ArgAction::Append)
                .help("Toolsets to serve: names below, `all`, `default` (default: `[mcp] toolsets` in config.toml, else the default toolsets)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What parsing `args` with `cmd` gives: the matches (their values included), or the
    /// error's kind and its text, plain and styled (help and version are errors too).
    fn outcome(cmd: Command, args: &[String]) -> String {
        match cmd.try_get_matches_from(args) {
            // The root's matches differ only in the list of its valid subcommands, which
            // debug builds keep to check lookups: compare the subcommand's matches whole.
            Ok(matches) => format!(
                "ok json={} {:?}",
                matches.get_flag("json"),
                matches.subcommand()
            ),
            Err(err) => format!(
                "error {:?}\n{}\n{}",
                err.kind(),
                err.render(),
                err.render().ansi()
            ),
        }
    }

    /// Command lines for `path` (the words of a command of the tree): help, version, missing
    /// and extra values, every flag with and without a value, unknown and misspelt flags, and
    /// for a group unknown and misspelt subcommands and `help`.
    fn lines_for(path: &[String], cmd: &Command) -> Vec<Vec<String>> {
        let mut tails: Vec<Vec<&str>> = vec![
            vec![],
            vec!["--help"],
            vec!["-h"],
            vec!["--version"],
            vec!["-V"],
            vec!["--json"],
            vec!["--jsn"],
            vec!["--bogus"],
            vec!["x"],
            vec!["x", "y", "z"],
            vec!["x", "--json", "--help"],
            vec!["help"],
            vec!["help", "x"],
            vec!["--", "--json"],
        ];
        let longs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect();
        let subs: Vec<String> = cmd
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        let owned: Vec<Vec<String>> = longs
            .iter()
            .flat_map(|long| {
                let flag = format!("--{long}");
                let typo = format!("--{}", &long[..long.len() - 1]);
                vec![
                    vec![flag.clone()],
                    vec!["x".to_owned(), flag.clone(), "1".to_owned()],
                    vec![flag.clone(), "-1".to_owned(), "x".to_owned()],
                    vec![format!("{flag}=v"), "x".to_owned()],
                    vec![typo, "x".to_owned()],
                ]
            })
            .chain(subs.iter().flat_map(|sub| {
                vec![
                    vec![format!("{}x", &sub[..sub.len() - 1])],
                    vec!["help".to_owned(), sub.clone()],
                ]
            }))
            .collect();
        tails.extend(owned.iter().map(|t| t.iter().map(String::as_str).collect()));
        let mut lines = Vec::new();
        for tail in tails {
            let words = path.iter().map(String::as_str);
            let line: Vec<String> = std::iter::once("dispatch")
                .chain(words.clone())
                .chain(tail.iter().copied())
                .map(str::to_owned)
                .collect();
            lines.push(line);
            let json_first: Vec<String> = ["dispatch", "--json"]
                .into_iter()
                .chain(words)
                .chain(tail.iter().copied())
                .map(str::to_owned)
                .collect();
            lines.push(json_first);
        }
        lines
    }

    fn walk(path: &mut Vec<String>, cmd: &Command, lines: &mut Vec<Vec<String>>) {
        lines.extend(lines_for(path, cmd));
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_owned());
            walk(path, sub, lines);
            path.pop();
        }
    }

    /// The tree built for a command line parses it as the whole tree does: the same matches,
    /// and byte for byte the same help, version, errors and suggestions, for every command of
    /// the tree and the root (help, version, unknown and misspelt commands, flags first).
    #[test]
    fn the_pruned_tree_parses_and_explains_as_the_whole_one() {
        let whole = command();
        let mut lines = Vec::new();
        walk(&mut Vec::new(), &whole, &mut lines);
        for extra in [
            vec!["--json", "--json", "daemon", "status"],
            vec!["--json=true", "daemon", "status"],
            vec!["-x", "daemon", "status"],
            vec!["dameon", "status"],
            vec!["Daemon", "status"],
            vec!["", "status"],
            vec!["completion", "bash"],
            vec!["completion", "zsh", "--json"],
            vec!["completion", "nosh"],
            vec!["mcp", "--toolsets", "all"],
            vec!["mcp", "--toolsets", "lanes,threads", "--help"],
            vec!["--", "daemon", "status"],
            vec!["-h", "daemon"],
            vec!["--version", "daemon", "status"],
            vec!["help"],
            vec!["help", "help"],
            vec!["help", "daemon", "status"],
            vec!["help", "dameon"],
        ] {
            lines.push(
                std::iter::once("dispatch")
                    .chain(extra)
                    .map(str::to_owned)
                    .collect(),
            );
        }
        assert!(lines.len() > 1000, "{} lines", lines.len());
        for line in &lines {
            assert_eq!(
                outcome(command_for(line), line),
                outcome(command(), line),
                "{line:?}"
            );
        }
    }

    /// A command line that names a command builds the root with that command alone; one that
    /// names none builds the whole tree (for help, version and suggestions).
    #[test]
    fn only_the_named_command_is_built() {
        let line = |words: &[&str]| -> Vec<String> {
            std::iter::once("dispatch")
                .chain(words.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        let names = |cmd: Command| -> Vec<String> {
            cmd.get_subcommands()
                .map(|sub| sub.get_name().to_owned())
                .collect()
        };
        assert_eq!(names(command_for(&line(&["daemon", "status"]))), ["daemon"]);
        assert_eq!(
            names(command_for(&line(&["--json", "list", "--json"]))),
            ["list"]
        );
        assert_eq!(names(command_for(&line(&["mcp"]))), ["mcp"]);
        let all = names(command());
        assert!(all.len() > 40, "{all:?}");
        assert_eq!(names(command_for(&line(&["help", "list"]))), all);
        // Help, version and unknown words get every command, as a summary without arguments.
        for words in [&[][..], &["--help"], &["dameon"], &["-V"], &["--json"]] {
            let tree = command_for(&line(words));
            assert_eq!(names(tree.clone()), all, "{words:?}");
            assert!(
                tree.get_subcommands()
                    .all(|sub| sub.get_arguments().count() == 0
                        && sub.get_subcommands().count() == 0),
                "{words:?}"
            );
        }
    }
}
