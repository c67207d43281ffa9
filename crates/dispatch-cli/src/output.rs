//! Writing to stdout and stderr without panicking: a reader that went away (`dispatch ... |
//! head -0`) makes a write fail, and the command then ends quietly with its own exit status.

use std::io::Write;

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
