//! `doctor`'s Codex checks: the CLI and its version, the auth footprint (presence only), and
//! an App Server `initialize` smoke.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_app_server::{
    AppServer, CodexVersion, PINNED_CODEX_VERSION, SpawnOptions, codex_version, resolve_codex_bin,
};
use dispatch_contract::ErrorCode;
use dispatch_contract::types::{CheckStatus, DoctorCheck};

use super::check;

const INSTALL_HINT: &str = "install the Codex CLI (`npm install -g @openai/codex@0.169.0`) or set DISPATCH_CODEX_BIN to its binary";

/// The oldest Codex CLI dispatch supports.
pub const MINIMUM_CODEX_VERSION: &str = "0.169.0";

fn triple(v: &CodexVersion) -> (u64, u64, u64) {
    (v.major, v.minor, v.patch)
}

/// `codex_cli`: found, and its version against the minimum supported. Returns the binary for
/// the smoke check.
pub async fn cli() -> (DoctorCheck, Option<PathBuf>) {
    let bin = match resolve_codex_bin() {
        Ok(bin) => bin,
        Err(err) => {
            return (
                check(
                    "codex_cli",
                    CheckStatus::Fail,
                    format!("{}: {err}", ErrorCode::AppServerUnavailable.as_str()),
                    Some(INSTALL_HINT.into()),
                ),
                None,
            );
        }
    };
    let found = match codex_version(&bin, Duration::from_secs(10)).await {
        Ok(version) => version,
        Err(err) => {
            return (
                check(
                    "codex_cli",
                    CheckStatus::Fail,
                    format!("{} does not report a version: {err}", bin.display()),
                    Some(
                        "reinstall the Codex CLI or point DISPATCH_CODEX_BIN at a working one"
                            .into(),
                    ),
                ),
                None,
            );
        }
    };
    let minimum = CodexVersion::parse(MINIMUM_CODEX_VERSION).map(|v| triple(&v));
    let pinned = CodexVersion::parse(PINNED_CODEX_VERSION).map(|v| triple(&v));
    let at = bin.display();
    let result = if minimum.is_some_and(|min| triple(&found) < min) {
        check(
            "codex_cli",
            CheckStatus::Fail,
            format!("{at} is codex-cli {found}, older than the minimum {MINIMUM_CODEX_VERSION}"),
            Some("upgrade: npm install -g @openai/codex@0.169.0".into()),
        )
    } else if pinned.is_some_and(|p| triple(&found) > p) {
        check(
            "codex_cli",
            CheckStatus::Warn,
            format!("{at} is codex-cli {found}, newer than the tested {PINNED_CODEX_VERSION}"),
            Some(
                "it likely works; report protocol differences, or pin @openai/codex@0.169.0".into(),
            ),
        )
    } else {
        check(
            "codex_cli",
            CheckStatus::Ok,
            format!("{at} is codex-cli {found}"),
            None,
        )
    };
    (result, Some(bin))
}

fn codex_home() -> Option<PathBuf> {
    std::env::var_os("CODEX_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".codex")))
}

/// `codex_auth`: whether Codex has credentials stored. Only presence is looked at; the file
/// is never opened.
pub fn auth() -> DoctorCheck {
    let Some(home) = codex_home() else {
        return check(
            "codex_auth",
            CheckStatus::Warn,
            "no CODEX_HOME and no home directory".into(),
            Some("set CODEX_HOME".into()),
        );
    };
    let auth = home.join("auth.json");
    if Path::new(&auth).is_file() {
        check(
            "codex_auth",
            CheckStatus::Ok,
            format!("{} is present (contents not read)", auth.display()),
            None,
        )
    } else {
        check(
            "codex_auth",
            CheckStatus::Warn,
            format!("no credentials in {}", home.display()),
            Some(
                "run `codex login` before using a provider that needs them (API-key and local providers do not)".into(),
            ),
        )
    }
}

/// `app_server`: starts `codex app-server`, completes `initialize`, and stops it.
pub async fn app_server(bin: Option<&Path>) -> DoctorCheck {
    let Some(bin) = bin else {
        return check(
            "app_server",
            CheckStatus::Fail,
            format!(
                "{}: no usable Codex CLI to start",
                ErrorCode::AppServerUnavailable.as_str()
            ),
            Some(INSTALL_HINT.into()),
        );
    };
    let options = SpawnOptions::new(bin)
        .client_info("dispatch-doctor", env!("CARGO_PKG_VERSION"))
        .initialize_timeout(Duration::from_secs(15));
    match AppServer::spawn(options).await {
        Ok(server) => {
            let took = server.handshake_duration().unwrap_or_default();
            let version = server
                .version()
                .map_or_else(|| "unknown".to_owned(), ToString::to_string);
            server.shutdown().await;
            check(
                "app_server",
                CheckStatus::Ok,
                format!(
                    "initialize answered in {} ms (codex {version})",
                    took.as_millis()
                ),
                None,
            )
        }
        Err(err) => check(
            "app_server",
            CheckStatus::Fail,
            format!(
                "{}: the App Server did not initialize: {err}",
                ErrorCode::AppServerUnavailable.as_str()
            ),
            Some("run `codex app-server` by hand to see why; check CODEX_HOME/config.toml".into()),
        ),
    }
}
