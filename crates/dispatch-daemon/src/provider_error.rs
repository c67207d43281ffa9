//! What a Codex turn error means for the user: its cause (authentication, network, rate
//! limit, provider) from `codexErrorInfo`, a message that names it, and whether dispatch must
//! end the turn instead of letting Codex retry.

use codex_app_server::protocol::TurnError;
use serde_json::Value;

/// Why a turn failed or is being retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The model provider refused the credentials (HTTP 401 or 403, `unauthorized`).
    Authentication {
        /// The HTTP status, when Codex reported one.
        status: Option<u64>,
    },
    /// The provider cannot be reached (connection failed, no HTTP status).
    Network,
    /// Rate or usage limits (HTTP 429, `rateLimitExceeded`, `usageLimitExceeded`).
    RateLimit,
    /// The provider answered with a server error or is overloaded.
    Provider,
    /// A turn that stopped because its App Server went away (set by dispatch).
    Interrupted,
    /// Anything else.
    Other,
}

impl Cause {
    /// The stored and shown name: `authentication`, `network`, `rate_limit`, `provider`,
    /// `interrupted`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Authentication { .. } => "authentication",
            Cause::Network => "network",
            Cause::RateLimit => "rate_limit",
            Cause::Provider => "provider",
            Cause::Interrupted => "interrupted",
            Cause::Other => "other",
        }
    }

    /// Whether this is an authentication failure.
    pub fn is_authentication(self) -> bool {
        matches!(self, Cause::Authentication { .. })
    }
}

/// The HTTP status inside `codexErrorInfo`, whatever variant carries it
/// (`{"httpConnectionFailed": {"httpStatusCode": 401}}` and the like).
fn http_status(info: &Value) -> Option<u64> {
    info.as_object()?
        .values()
        .find_map(|inner| inner.get("httpStatusCode")?.as_u64())
}

/// Classifies a Codex turn error.
pub fn classify(error: &TurnError) -> Cause {
    let Some(info) = &error.codex_error_info else {
        return Cause::Other;
    };
    match (info.as_str(), http_status(info)) {
        (Some("unauthorized"), status) => Cause::Authentication { status },
        (_, Some(status @ (401 | 403))) => Cause::Authentication {
            status: Some(status),
        },
        (Some("rateLimitExceeded" | "usageLimitExceeded"), _) | (_, Some(429)) => Cause::RateLimit,
        (Some("internalServerError" | "serverOverloaded"), _) => Cause::Provider,
        (_, Some(status)) if status >= 500 => Cause::Provider,
        // A stream or connection variant without a status: nothing answered.
        (None, None) if info.is_object() => Cause::Network,
        _ => Cause::Other,
    }
}

/// The message dispatch records for a Codex turn error: Codex's message with its details, and
/// for an authentication failure a message that says so.
pub fn message(error: &TurnError, cause: Cause) -> String {
    let details = error
        .additional_details
        .as_deref()
        .filter(|d| !d.is_empty() && *d != error.message);
    match cause {
        Cause::Authentication { status } => format!(
            "authentication failed at the model provider{}: {}",
            status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
            details.unwrap_or(&error.message)
        ),
        _ => match details {
            Some(details) => format!("{} ({details})", error.message),
            None => error.message.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error(info: Value, details: Option<&str>) -> TurnError {
        serde_json::from_value(json!({
            "message": "Reconnecting... 1/3",
            "codexErrorInfo": info,
            "additionalDetails": details,
        }))
        .expect("a turn error")
    }

    #[test]
    fn causes_come_from_codex_error_info() {
        let cases = [
            (
                json!({"responseStreamDisconnected": {"httpStatusCode": 401}}),
                Cause::Authentication { status: Some(401) },
            ),
            (
                json!({"httpConnectionFailed": {"httpStatusCode": 403}}),
                Cause::Authentication { status: Some(403) },
            ),
            (
                json!("unauthorized"),
                Cause::Authentication { status: None },
            ),
            (
                json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
                Cause::Network,
            ),
            (
                json!({"httpConnectionFailed": {"httpStatusCode": 429}}),
                Cause::RateLimit,
            ),
            (json!("usageLimitExceeded"), Cause::RateLimit),
            (json!("internalServerError"), Cause::Provider),
            (
                json!({"responseTooManyFailedAttempts": {"httpStatusCode": 502}}),
                Cause::Provider,
            ),
            (json!("contextWindowExceeded"), Cause::Other),
        ];
        for (info, cause) in cases {
            assert_eq!(classify(&error(info.clone(), None)), cause, "{info}");
        }
        assert_eq!(
            classify(&serde_json::from_value(json!({"message": "x"})).expect("error")),
            Cause::Other
        );
    }

    #[test]
    fn messages_name_authentication_and_keep_details() {
        let auth = error(
            json!({"responseStreamDisconnected": {"httpStatusCode": 401}}),
            Some("unexpected status 401 Unauthorized: Incorrect API key provided"),
        );
        assert_eq!(
            message(&auth, classify(&auth)),
            "authentication failed at the model provider (HTTP 401): unexpected status 401 \
             Unauthorized: Incorrect API key provided"
        );
        let network = error(
            json!({"responseStreamDisconnected": {"httpStatusCode": null}}),
            Some("Connection failed: error sending request"),
        );
        assert_eq!(
            message(&network, classify(&network)),
            "Reconnecting... 1/3 (Connection failed: error sending request)"
        );
    }
}
