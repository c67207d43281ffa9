//! The Codex account and what it may do: `usage` (account, plan, rate limits, token usage;
//! e-mail masked, identifiers left out) and `permissions` (the permission profiles Codex
//! allows in a directory, which `new` checks its profile against).

use codex_app_server::protocol::{
    Account, GetAccountParams, GetAccountRateLimitsParams, GetAccountTokenUsageParams,
    PermissionProfileListParams, PermissionProfileSummary, RateLimitSnapshot,
};
use dispatch_contract::types::{
    PermissionProfile, PermissionsInput, PermissionsOutput, RateLimitWindow, UsageAccount,
    UsageInput, UsageOutput, UsageOutputStatus,
};
use dispatch_contract::{DispatchError, Handle, Hint, operations};
use serde_json::json;

use crate::convert::{now_ms, rfc3339, wire_name};
use crate::errors::app_server_error;
use crate::service::Service;

/// Profiles read at the most (pages of 100).
const MAX_PROFILES: usize = 1000;

/// `e-mail` with the local part masked to its first character: `a***@example.com`.
pub(crate) fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// The windows of a rate-limit snapshot, as `usage` shows them.
fn windows(snapshot: &RateLimitSnapshot) -> Vec<RateLimitWindow> {
    let limit = snapshot
        .limit_name
        .clone()
        .or_else(|| snapshot.limit_id.clone());
    [
        ("primary", &snapshot.primary),
        ("secondary", &snapshot.secondary),
    ]
    .into_iter()
    .filter_map(|(name, window)| {
        window.as_ref().map(|w| RateLimitWindow {
            limit: limit.clone(),
            window: name.to_owned(),
            used_percent: i64::from(w.used_percent),
            window_minutes: w.window_duration_mins,
            // Codex reports epoch seconds.
            resets_at: w.resets_at.map(|s| rfc3339(s.saturating_mul(1000))),
        })
    })
    .collect()
}

/// Every permission profile Codex lists for `cwd`.
pub(crate) async fn permission_profiles(
    server: &codex_app_server::AppServer,
    cwd: Option<&str>,
) -> Result<Vec<PermissionProfileSummary>, DispatchError> {
    let mut profiles = Vec::new();
    let mut cursor = None;
    loop {
        let page = server
            .call(&PermissionProfileListParams {
                cwd: cwd.map(str::to_owned),
                cursor: cursor.take(),
                limit: Some(100),
            })
            .await
            .map_err(app_server_error)?;
        let done = page.data.is_empty() || page.next_cursor.is_none();
        profiles.extend(page.data);
        if done || profiles.len() >= MAX_PROFILES {
            return Ok(profiles);
        }
        cursor = page.next_cursor;
    }
}

/// `invalid_input` unless `profile` is one Codex allows in `cwd`, naming the allowed ones.
pub(crate) async fn check_permission_profile(
    server: &codex_app_server::AppServer,
    cwd: Option<&str>,
    profile: &str,
) -> Result<(), DispatchError> {
    let profiles = permission_profiles(server, cwd).await?;
    if profiles.iter().any(|p| p.id == profile && p.allowed) {
        return Ok(());
    }
    let allowed: Vec<&str> = profiles
        .iter()
        .filter(|p| p.allowed)
        .map(|p| p.id.as_str())
        .collect();
    let what = if profiles.iter().any(|p| p.id == profile) {
        "is not allowed here"
    } else {
        "is unknown"
    };
    Err(DispatchError::invalid_input(format!(
        "permission profile `{profile}` {what}; allowed: {}",
        if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        }
    ))
    .with_hint(Hint::new("{0} lists the profiles").run(
        &operations::PERMISSIONS,
        json!({ "cwd": cwd.unwrap_or("<dir>") }),
    ))
    .with_details(json!({ "allowed": allowed })))
}

/// `permissions`.
impl Handle<PermissionsInput> for Service {
    async fn handle(&self, input: PermissionsInput) -> Result<PermissionsOutput, DispatchError> {
        let cwd = input.cwd.as_ref().map(|c| c.to_string());
        if let Some(dir) = &cwd {
            let path = std::path::Path::new(dir);
            if !path.is_absolute() || !path.is_dir() {
                return Err(DispatchError::invalid_input(format!(
                    "`cwd`: {dir} is not an existing directory (an absolute path)"
                )));
            }
        }
        let server = self.app_server().server()?;
        let profiles = permission_profiles(&server, cwd.as_deref()).await?;
        Ok(PermissionsOutput {
            cwd,
            profiles: profiles
                .into_iter()
                .map(|p| PermissionProfile {
                    id: p.id,
                    description: p.description,
                    allowed: p.allowed,
                })
                .collect(),
        })
    }
}

/// `usage`.
impl Handle<UsageInput> for Service {
    async fn handle(&self, _input: UsageInput) -> Result<UsageOutput, DispatchError> {
        let server = self.app_server().server()?;
        let read = server
            .call(&GetAccountParams {
                refresh_token: Some(false),
            })
            .await
            .map_err(app_server_error)?;
        let Some(account) = read.account else {
            return Ok(UsageOutput {
                status: UsageOutputStatus::SignedOut,
                account: None,
                rate_limits: Vec::new(),
                rate_limits_at: None,
                token_usage: None,
                hint: Some(
                    "Codex has no account: run `codex login` to sign in (a model provider \
                     configured with its own key needs none)"
                        .to_owned(),
                ),
            });
        };
        let account = match account {
            Account::Chatgpt {
                email, plan_type, ..
            } => UsageAccount {
                type_: "chatgpt".to_owned(),
                plan: Some(wire_name(&plan_type)),
                email: email.as_deref().map(mask_email),
            },
            other => UsageAccount {
                type_: match other {
                    Account::ApiKey => "apiKey",
                    Account::AmazonBedrock { .. } => "amazonBedrock",
                    _ => "gcp",
                }
                .to_owned(),
                plan: None,
                email: None,
            },
        };
        // Fresh windows when Codex answers; else the last ones it announced.
        let limits = match server
            .call(&GetAccountRateLimitsParams {
                exclude_reset_credit_details: Some(true),
                ..Default::default()
            })
            .await
        {
            Ok(read) => {
                let at_ms = now_ms();
                self.note_rate_limits(at_ms, read.rate_limits.clone());
                Some((at_ms, read.rate_limits))
            }
            Err(err) => {
                tracing::info!(%err, "reading the account's rate limits");
                self.rate_limits()
            }
        };
        let token_usage = match server.call(&GetAccountTokenUsageParams::default()).await {
            Ok(usage) => {
                let s = usage.summary;
                let mut fields = serde_json::Map::new();
                for (key, value) in [
                    ("lifetime_tokens", s.lifetime_tokens),
                    ("peak_daily_tokens", s.peak_daily_tokens),
                    ("current_streak_days", s.current_streak_days),
                    ("longest_streak_days", s.longest_streak_days),
                    ("longest_running_turn_sec", s.longest_running_turn_sec),
                ] {
                    if let Some(value) = value {
                        fields.insert(key.to_owned(), json!(value));
                    }
                }
                Some(fields)
            }
            Err(err) => {
                tracing::info!(%err, "reading the account's token usage");
                None
            }
        };
        Ok(UsageOutput {
            status: UsageOutputStatus::SignedIn,
            account: Some(account),
            rate_limits: limits.as_ref().map(|(_, l)| windows(l)).unwrap_or_default(),
            rate_limits_at: limits.map(|(at, _)| rfc3339(at)),
            token_usage,
            hint: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_email("nobody"), "***");
        assert_eq!(mask_email("é@x.org"), "é***@x.org");
    }
}
