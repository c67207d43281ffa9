//! Writing a `CODEX_HOME/config.toml` that points Codex at the stub (the offline e2e recipe).

use std::path::{Path, PathBuf};

use crate::StubError;

/// The settings of the generated `config.toml` a test may want to vary.
///
/// The provider block (`model_provider = "mock"`, `wire_api = "responses"`), `plugins = false`
/// and analytics off are always written: they keep Codex on the loopback stub. By default
/// there are no retries, so failures fail fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexConfig {
    /// `model`: any name works; an unknown one adds a `warning` notification each turn.
    pub model: String,
    /// `approval_policy`: `never` or `on-request` (`untrusted` in config.toml makes
    /// codex 0.169.0 exit at start; pass it on `thread/start` instead).
    pub approval_policy: String,
    /// `sandbox_mode`: `read-only`, `workspace-write` or `danger-full-access`.
    pub sandbox_mode: String,
    /// `request_max_retries` and `stream_max_retries` of the provider (default 0: a failure
    /// fails the turn at once).
    pub retries: u32,
    /// `[features] unbounded_connection_retries` (default false). When true, an unreachable
    /// provider makes Codex retry for ever ("Reconnecting... waiting for network").
    pub unbounded_connection_retries: bool,
    /// Raw TOML appended verbatim at the end (after the tables above), for one-off keys.
    pub extra_toml: String,
}

impl Default for CodexConfig {
    fn default() -> Self {
        Self {
            model: "mock-model".into(),
            approval_policy: "never".into(),
            sandbox_mode: "read-only".into(),
            retries: 0,
            unbounded_connection_retries: false,
            extra_toml: String::new(),
        }
    }
}

impl CodexConfig {
    /// The `config.toml` text for a provider at `base_url` (e.g. `http://127.0.0.1:PORT/v1`).
    pub fn render(&self, base_url: &str) -> String {
        let mut out = format!(
            "model = {model}\n\
             model_provider = \"mock\"\n\
             approval_policy = {approval}\n\
             sandbox_mode = {sandbox}\n\
             \n\
             [model_providers.mock]\n\
             name = \"mock\"\n\
             base_url = {base_url}\n\
             wire_api = \"responses\"\n\
             request_max_retries = {retries}\n\
             stream_max_retries = {retries}\n\
             \n\
             [features]\n\
             plugins = false\n\
             unbounded_connection_retries = {unbounded}\n\
             \n\
             [analytics]\n\
             enabled = false\n",
            model = toml_string(&self.model),
            approval = toml_string(&self.approval_policy),
            sandbox = toml_string(&self.sandbox_mode),
            base_url = toml_string(base_url),
            retries = self.retries,
            unbounded = self.unbounded_connection_retries,
        );
        if !self.extra_toml.is_empty() {
            out.push('\n');
            out.push_str(&self.extra_toml);
            if !self.extra_toml.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Write `codex_home/config.toml` for a provider at `base_url`, creating `codex_home` if
/// needed. Returns the path of the file written.
pub fn write_codex_config(
    codex_home: &Path,
    base_url: &str,
    config: &CodexConfig,
) -> Result<PathBuf, StubError> {
    let path = codex_home.join("config.toml");
    std::fs::create_dir_all(codex_home)
        .and_then(|()| std::fs::write(&path, config.render(base_url)))
        .map_err(|source| StubError::WriteConfig {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// A TOML basic string literal.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_recipe() {
        let text = CodexConfig::default().render("http://127.0.0.1:1234/v1");
        assert!(text.contains("base_url = \"http://127.0.0.1:1234/v1\""));
        assert!(text.contains("model_provider = \"mock\""));
        assert!(text.contains("plugins = false"));
        assert!(text.contains("unbounded_connection_retries = false"));
        assert!(text.contains("[analytics]\nenabled = false"));
        assert!(text.contains("request_max_retries = 0"));
        assert!(text.contains("approval_policy = \"never\""));
        assert!(text.contains("sandbox_mode = \"read-only\""));
    }

    #[test]
    fn escapes_strings() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn writes_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let path =
            write_codex_config(&home, "http://x/v1", &CodexConfig::default()).expect("write");
        let text = std::fs::read_to_string(path).expect("read");
        assert!(text.contains("http://x/v1"));
    }
}
