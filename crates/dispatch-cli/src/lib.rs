//! The `dispatch` command-line interface: the generated command tree of every contract
//! operation, plus `completion` and `mcp`, with human and `--json` output.

pub mod args;
pub mod input;
pub mod output;
pub mod packet;
pub mod render;
pub mod root;

/// Files written by `cargo xtask gen`; never edit them by hand.
pub mod generated {
    pub mod cli;
}

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use dispatch_client::Runner;
use dispatch_contract::{DispatchError, Operation, RunsIn, Streaming, validate_cli_input};
use serde_json::Value;

use crate::input::{ProcessStdin, read_file_inputs, resolve_local_paths};
use crate::output::{Stream, write_line};

/// Runs `dispatch` with the process arguments; the binary's `main`. It leaves the parsed
/// command tree allocated (the process is about to end), so it is meant to run once.
pub fn main_with_args(raw: Vec<OsString>) -> ExitCode {
    let json = raw.iter().skip(1).any(|a| a == "--json");
    let raw = match args::utf8_args(raw) {
        Ok(raw) => raw,
        Err(err) => return report_error(&err, json),
    };
    let mut command = root::command_for(&raw);
    let parsed = command.try_get_matches_from_mut(&raw);
    // The command tree is not dropped: the process ends after this call, and freeing its
    // allocations one by one was ~10% of a `daemon status` call's instructions (ADR 0026).
    std::mem::forget(command);
    let matches = match parsed {
        Ok(matches) => matches,
        Err(err) => return clap_failure(err, json),
    };
    let (path, leaf) = root::subcommand_path(&matches);
    match path.as_slice() {
        ["completion"] => root::completion(leaf),
        ["mcp"] => dispatch_client::block_on(async {
            let runner = Runner::from_env()?;
            let enabled = root::mcp_toolsets(leaf, runner.paths())?;
            dispatch_mcp::serve_stdio(runner, enabled)
                .await
                .map_err(DispatchError::internal)?;
            Ok(ExitCode::SUCCESS)
        })
        .unwrap_or_else(|err| report_error(&err, json)),
        words => {
            let Some((op, fields)) = generated::cli::resolve(words) else {
                let err =
                    DispatchError::internal(format!("no operation for `{}`", words.join(" ")));
                return report_error(&err, json);
            };
            let input = args::input_from_matches(fields, leaf);
            run_operation(op, input, json).unwrap_or_else(|err| report_error(&err, json))
        }
    }
}

/// A streaming operation (`x-dispatch.streaming`, e.g. `watch`) from the CLI: events are
/// printed as they arrive (one JSON object per line with `--json`), by calling the operation
/// in its streaming mode until its bound is reached.
async fn run_stream(
    runner: &Runner,
    op: &'static Operation,
    stream: Streaming,
    input: Value,
    json: bool,
) -> Result<ExitCode, DispatchError> {
    // The input is validated: the bound is within the contract's range (the lint requires a
    // streaming operation to have one). Its call deadline (`Operation::call_timeout`) follows
    // what is left of it on every call below.
    let (bound_field, timeout, maximum) = match op.bound {
        Some(b) => (
            b.field,
            input[b.field].as_f64().unwrap_or(b.default),
            b.maximum,
        ),
        None => {
            return Err(DispatchError::internal(format!(
                "`{}` streams but its contract gives no bound",
                op.title
            )));
        }
    };
    let max_events = input[stream.limit].as_u64().unwrap_or(stream.limit_default);
    let deadline = std::time::Instant::now()
        + std::time::Duration::try_from_secs_f64(timeout.clamp(0.0, maximum)).unwrap_or_default();
    let mut seen = 0u64;
    let mut cursor = input.get(stream.after).cloned();
    loop {
        let remaining = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs_f64();
        let mut call = input.clone();
        call[stream.switch] = Value::Bool(true);
        call[bound_field] = serde_json::json!(remaining.max(0.001));
        call[stream.limit] = serde_json::json!(max_events - seen);
        if let Some(cursor) = &cursor {
            call[stream.after] = cursor.clone();
        }
        let output = runner.run(op, call).await?;
        for event in output[stream.events]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let line = if json {
                event.to_string()
            } else {
                render::watch_event(event)
            };
            if write_line(Stream::Stdout, &line).is_err() {
                // Nobody reads any more (`| head -1`): the stream is over.
                return Ok(ExitCode::SUCCESS);
            }
            seen += 1;
        }
        cursor = output.get(stream.cursor).cloned();
        let ended = output[stream.ended].as_str().unwrap_or("timeout");
        if ended != "batch" || seen >= max_events || std::time::Instant::now() >= deadline {
            let ended = if ended == "batch" {
                if seen >= max_events {
                    stream.limit
                } else {
                    "timeout"
                }
            } else {
                ended
            };
            let summary = serde_json::json!({ "ended": ended, "events": seen, "cursor": cursor });
            let line = if json {
                summary.to_string()
            } else {
                render::watch_end(&summary)
            };
            let _closed = write_line(Stream::Stdout, &line);
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Runs `op` from the command line: checks the CLI's form of the input (before reading any
/// file), reads the file inputs (`--text-file`, `-`), then runs the operation. A single call
/// to the daemon starts no async runtime (`Runner::run_blocking`); a stream runs on one.
fn run_operation(
    op: &'static Operation,
    input: Value,
    json: bool,
) -> Result<ExitCode, DispatchError> {
    // A bad argument is refused before any file or standard input is read, and before a
    // stream is started from its bounds. Otherwise the CLI's form is the input itself, which
    // the runner has checked (by the daemon, or here when the daemon cannot take it) before
    // anything is done.
    if !op.file_inputs.is_empty()
        || !op.packet_inputs.is_empty()
        || op.streaming.is_some()
        || op.runs_in == RunsIn::Client
    {
        validate_cli_input(op, &input)?;
    }
    let input = read_file_inputs(op, input, &mut ProcessStdin)?;
    let input = packet::read_packet_inputs(op, input)?;
    let input = resolve_local_paths(input)?;
    let runner = Runner::from_env()?;
    if let Some(stream) = op.streaming {
        return dispatch_client::block_on(run_stream(&runner, op, stream, input, json));
    }
    if json {
        // The daemon's answer goes to stdout as the text it wrote, never parsed into a tree:
        // only an operation whose exit status reads its output decodes it.
        let output = runner.run_text_blocking(op, input)?;
        let exit = generated::cli::exit_status(op, output.get());
        // A closed stdout (e.g. `| head`) is not an error worth reporting.
        let _closed = crate::output::write_json(output.get());
        return Ok(exit);
    }
    let output = runner.run_blocking(op, input)?;
    let shown = generated::cli::shown(op, &output);
    let exit = shown.exit;
    // A renderer's failure is reported as an error with its exit status; nothing is printed.
    let text = shown.text()?;
    let _closed = write_line(Stream::Stdout, &text);
    Ok(exit)
}

/// Prints `err` as the contract says: one line and a hint on stderr, or `{"error":..}` on
/// stdout with `--json`; exits with the code's exit code.
/// Control characters in the message and hint are escaped, and a closed stdout or stderr
/// ends quietly.
fn report_error(err: &DispatchError, json: bool) -> ExitCode {
    let _closed = if json {
        write_line(
            Stream::Stdout,
            &serde_json::to_string_pretty(&err.to_json()).unwrap_or_default(),
        )
    } else {
        write_line(
            Stream::Stderr,
            &format!(
                "dispatch: {}\nhint: {}",
                render::escape(&err.message),
                render::escape(&err.hint.to_string())
            ),
        )
    };
    err.code.exit_status()
}

/// Help and version go to stdout with exit 0; every other clap failure is `invalid_input`.
fn clap_failure(err: clap::Error, json: bool) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _closed = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            let _closed = err.print();
            dispatch_contract::ErrorCode::InvalidInput.exit_status()
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_owned();
            let usage = rendered
                .lines()
                .find(|l| l.starts_with("Usage:"))
                .map(str::to_owned);
            let mut dispatch_err = DispatchError::invalid_input(first);
            if let Some(usage) = usage {
                dispatch_err = dispatch_err.with_hint(format!("{usage}; add --help for details"));
            }
            report_error(&dispatch_err, json)
        }
    }
}
