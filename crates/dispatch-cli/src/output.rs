//! Writing to stdout and stderr without panicking: a reader that went away (`dispatch ... |
//! head -0`) makes a write fail, and the command then ends quietly with its own exit status.
//!
//! A `--json` output is written as the compact JSON text the daemon answered (one line) when
//! stdout is a pipe or a file, and pretty-printed (same keys, same order) for a terminal.

use std::io::{IsTerminal, Write};

/// Where a line goes.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Standard output: results.
    Stdout,
    /// Standard error: human error messages.
    Stderr,
}

/// Writes `text` and a newline to `stream` and flushes it; the error (a closed pipe, most
/// likely) is returned for callers that stop producing output, never printed.
pub fn write_line(stream: Stream, text: &str) -> std::io::Result<()> {
    match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{text}")?;
            err.flush()
        }
    }
}

/// Writes `bytes` as they are to standard output; see [`write_line`].
pub fn write_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes the JSON `text` of an output and a newline to standard output: as it is when
/// stdout is not a terminal, pretty-printed with the same members in the same order when it
/// is; see [`write_line`].
pub fn write_json(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        let pretty = pretty(text);
        writeln!(out, "{pretty}")?;
    } else {
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `text` pretty-printed; text that is not JSON is returned as it is.
pub fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}
