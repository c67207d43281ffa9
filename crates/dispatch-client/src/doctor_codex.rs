//! `doctor`'s Codex checks: the CLI and its version, the auth footprint (presence only), and
//! an App Server `initialize` smoke.

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_app_server::{
    AppServer, CODEX_INSTALL_COMMAND, CODEX_INSTALL_HINT, CodexBin, CodexBinSource, CodexLookup,
    CodexVersion, PINNED_CODEX_VERSION, SpawnOptions, codex_version,
};
use dispatch_contract::types::{CheckStatus, DoctorCheck};
use dispatch_contract::{ErrorCode, Hint};
use dispatch_home::{Config, Paths};

use super::check;

/// The oldest Codex CLI dispatch supports.
pub const MINIMUM_CODEX_VERSION: &str = "0.169.0";

fn triple(v: &CodexVersion) -> (u64, u64, u64) {
    (v.major, v.minor, v.patch)
}

/// `codex_cli`: the binary the daemon would run (the same lookup, with `config.toml`), where
/// it was found, and its version against the minimum supported. Returns the binary for the
/// other checks.
pub async fn cli(paths: &Paths) -> (DoctorCheck, Option<CodexBin>) {
    let fail = |summary: String, hint: &str| {
        (
            check(
                "codex_cli",
                CheckStatus::Fail,
                summary,
                Some(Hint::from(hint.to_owned())),
            ),
            None,
        )
    };
    let configured = match Config::load(&paths.config) {
        Ok(config) => config.codex.bin,
        Err(err) => {
            return fail(
                format!("{}: {err}", ErrorCode::InvalidInput.as_str()),
                "fix or remove config.toml (the daemon refuses to start with it); `[codex] bin` takes the path of a codex binary",
            );
        }
    };
    let lookup = CodexLookup::from_env(configured);
    let bin = match lookup.resolve() {
        Ok(bin) => bin,
        Err(err) => {
            return fail(
                format!("{}: {err}", ErrorCode::AppServerUnavailable.as_str()),
                &format!(
                    "{CODEX_INSTALL_HINT}; or name a binary with DISPATCH_CODEX_BIN or `[codex] bin` in config.toml"
                ),
            );
        }
    };
    let at = format!("{} ({})", bin.path.display(), bin.source);
    let found = match codex_version(&bin.path, Duration::from_secs(10)).await {
        Ok(version) => version,
        Err(err) => {
            return (
                check(
                    "codex_cli",
                    CheckStatus::Fail,
                    format!("{at} does not report a version: {err}"),
                    Some(not_pinned_hint(&bin, &lookup, "reinstall it")),
                ),
                Some(bin),
            );
        }
    };
    let minimum = CodexVersion::parse(MINIMUM_CODEX_VERSION).map(|v| triple(&v));
    let pinned = CodexVersion::parse(PINNED_CODEX_VERSION).map(|v| triple(&v));
    let summary = format!("codex {found} at {at}");
    let result = if minimum.is_some_and(|min| triple(&found) < min) {
        check(
            "codex_cli",
            CheckStatus::Fail,
            format!("{summary}, older than the minimum {MINIMUM_CODEX_VERSION}"),
            Some(not_pinned_hint(
                &bin,
                &lookup,
                &format!("upgrade it: `{CODEX_INSTALL_COMMAND}`"),
            )),
        )
    } else if pinned.is_some_and(|p| triple(&found) > p) {
        check(
            "codex_cli",
            CheckStatus::Warn,
            format!("{summary}, newer than the tested {PINNED_CODEX_VERSION}"),
            Some(not_pinned_hint(
                &bin,
                &lookup,
                "it likely works; report protocol differences",
            )),
        )
    } else {
        check("codex_cli", CheckStatus::Ok, summary, None)
    };
    (result, Some(bin))
}

/// The hint for a binary that is not the pinned version: `first`, then how to use the pinned
/// copy instead (its path when it is installed, else how to install it).
fn not_pinned_hint(bin: &CodexBin, lookup: &CodexLookup, first: &str) -> Hint {
    let installed = lookup
        .installed
        .as_ref()
        .filter(|p| p.is_file() && **p != bin.path);
    let switch = match (bin.source, installed) {
        (CodexBinSource::Env, _) => {
            "or point DISPATCH_CODEX_BIN at codex-cli ".to_owned() + PINNED_CODEX_VERSION
        }
        (_, Some(installed)) => format!(
            "or use the installed pinned copy: `[codex] bin = \"{}\"` in config.toml",
            installed
                .display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        ),
        (_, None) => {
            "or install the pinned copy with `scripts/install-codex` and name it in `[codex] bin` of config.toml".to_owned()
        }
    };
    Hint::from(format!("{first}; {switch}"))
}

fn codex_home() -> Option<PathBuf> {
    std::env::var_os("CODEX_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            // `HOME` only, never the user database (NSS): the CLI is linked statically (ADR 0026).
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".codex"))
        })
}

/// `codex_auth`: whether Codex has credentials stored. Only presence is looked at; the file
/// is never opened. The hint names `bin`, the binary dispatch runs, so it can be followed when
/// `codex` is not on PATH.
pub fn auth(bin: Option<&CodexBin>) -> DoctorCheck {
    let Some(home) = codex_home() else {
        return check(
            "codex_auth",
            CheckStatus::Warn,
            "neither CODEX_HOME nor HOME is set".into(),
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
            Some(Hint::from(format!(
                "run `{} login` before using a provider that needs them (API-key and local providers do not)",
                bin.map_or_else(|| "codex".to_owned(), CodexBin::command_name)
            ))),
        )
    }
}

/// `app_server`: starts `codex app-server`, completes `initialize`, and stops it.
pub async fn app_server(bin: Option<&CodexBin>) -> DoctorCheck {
    let Some(bin) = bin else {
        return check(
            "app_server",
            CheckStatus::Fail,
            format!(
                "{}: no usable Codex CLI to start",
                ErrorCode::AppServerUnavailable.as_str()
            ),
            Some(Hint::from(CODEX_INSTALL_HINT)),
        );
    };
    let options = SpawnOptions::new(&bin.path)
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
            Some(Hint::from(format!(
                "run `{} app-server` by hand to see why; check CODEX_HOME/config.toml",
                bin.command_name()
            ))),
        ),
    }
}
