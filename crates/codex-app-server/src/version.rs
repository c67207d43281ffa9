//! The Codex version: the pinned one, parsing, and asking a binary for its own.

use std::path::Path;
use std::time::Duration;

use crate::Error;

/// The Codex CLI version dispatch is built and tested against.
pub const PINNED_CODEX_VERSION: &str = pinned!();

/// The environment variable naming the Codex binary to run.
pub const CODEX_BIN_ENV: &str = "DISPATCH_CODEX_BIN";

/// A Codex version, `MAJOR.MINOR.PATCH[-PRE]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodexVersion {
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Patch.
    pub patch: u64,
    /// Pre-release suffix (after `-`), if any.
    pub pre: Option<String>,
}

impl CodexVersion {
    /// Parse `0.169.0` or `0.170.0-alpha.2`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_owned())),
            Some(_) => return None,
            None => (text, None),
        };
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// From the `userAgent` of `initialize`, e.g.
    /// `dispatch/0.169.0 (Debian 12.0.0; x86_64) xterm (dispatch; 0.1.0)`: the token
    /// after the first `/`.
    pub fn from_user_agent(user_agent: &str) -> Option<Self> {
        let (_, rest) = user_agent.split_once('/')?;
        Self::parse(rest.split_whitespace().next()?)
    }

    /// From the output of `codex --version`, e.g. `codex-cli 0.169.0`.
    pub fn from_version_output(output: &str) -> Option<Self> {
        let line = output.lines().find(|l| !l.trim().is_empty())?;
        Self::parse(line.split_whitespace().last()?)
    }

    /// Whether this is [`PINNED_CODEX_VERSION`].
    pub fn is_pinned(&self) -> bool {
        self.to_string() == PINNED_CODEX_VERSION
    }
}

impl std::fmt::Display for CodexVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// Run `bin --version` (bounded by `timeout`) and parse its output.
pub async fn codex_version(bin: &Path, timeout: Duration) -> Result<CodexVersion, Error> {
    let fail = |detail: String| Error::Version {
        bin: bin.to_path_buf(),
        detail,
    };
    let mut command = tokio::process::Command::new(bin);
    command
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(fail(format!(
            "{}: {}",
            crate::ExitReason::from_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    CodexVersion::from_version_output(&stdout)
        .ok_or_else(|| fail(format!("unexpected output {:?}", stdout.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = CodexVersion::from_user_agent("x/0.169.0 (Debian 12.0.0; x86_64) xterm (x; 1)")
            .expect("ua");
        assert_eq!(v.to_string(), "0.169.0");
        assert!(v.is_pinned());
        let v = CodexVersion::from_version_output("codex-cli 0.170.0-alpha.2\n").expect("out");
        assert_eq!(v.pre.as_deref(), Some("alpha.2"));
        assert!(!v.is_pinned());
        assert!(CodexVersion::parse("1.2").is_none());
        assert!(CodexVersion::parse("1.2.3.4").is_none());
        assert!(CodexVersion::from_user_agent("no-slash").is_none());
    }
}
