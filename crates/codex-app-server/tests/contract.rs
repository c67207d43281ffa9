//! The protocol types are generated from the pinned JSON Schema
//! (`contract/codex-protocol/codex-app-server.schema.json`); freshness is checked by
//! `dispatch-codegen`'s tests. These tests check that the generated bindings cover every
//! method of its `x-codex-methods`, pairing each with the schema's params and result types.

mod common;

use std::collections::BTreeSet;

use codex_app_server::protocol::*;
use serde_json::Value;

fn schema() -> Value {
    let path =
        common::workspace_root().join("contract/codex-protocol/codex-app-server.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("schema JSON")
}

fn methods(schema: &Value, kind: &str) -> BTreeSet<String> {
    schema["x-codex-methods"][kind]
        .as_object()
        .unwrap_or_else(|| panic!("x-codex-methods.{kind}"))
        .keys()
        .cloned()
        .collect()
}

fn set(methods: &[&str]) -> BTreeSet<String> {
    methods.iter().map(|m| (*m).to_owned()).collect()
}

fn short_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Records `P`'s method and checks its types against the schema entry.
fn pair(schema: &Value, kind: &str, method: &str, params: &str, result: &str) -> Option<String> {
    let entry = &schema["x-codex-methods"][kind][method];
    (entry["params"] != params || entry["result"] != result).then(|| {
        format!(
            "{method}: schema says {} -> {}, code says {params} -> {result}",
            entry["params"], entry["result"]
        )
    })
}

fn client<P: ClientMethod>(
    schema: &Value,
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    seen.insert(P::METHOD.to_owned());
    problems.extend(pair(
        schema,
        "clientRequests",
        P::METHOD,
        short_name::<P>(),
        short_name::<P::Response>(),
    ));
}

fn server<P: ServerMethod>(
    schema: &Value,
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    seen.insert(P::METHOD.to_owned());
    problems.extend(pair(
        schema,
        "serverRequests",
        P::METHOD,
        short_name::<P>(),
        short_name::<P::Response>(),
    ));
}

#[test]
fn every_client_request_is_bound_to_its_schema_types() {
    let schema = schema();
    assert_eq!(
        set(CLIENT_REQUEST_METHODS),
        methods(&schema, "clientRequests")
    );
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    client::<InitializeParams>(&schema, &mut seen, &mut problems);
    client::<ThreadStartParams>(&schema, &mut seen, &mut problems);
    client::<ThreadResumeParams>(&schema, &mut seen, &mut problems);
    client::<ThreadReadParams>(&schema, &mut seen, &mut problems);
    client::<ThreadListParams>(&schema, &mut seen, &mut problems);
    client::<ThreadSetNameParams>(&schema, &mut seen, &mut problems);
    client::<ThreadArchiveParams>(&schema, &mut seen, &mut problems);
    client::<ThreadUnarchiveParams>(&schema, &mut seen, &mut problems);
    client::<ThreadGoalSetParams>(&schema, &mut seen, &mut problems);
    client::<ThreadGoalGetParams>(&schema, &mut seen, &mut problems);
    client::<ThreadGoalClearParams>(&schema, &mut seen, &mut problems);
    client::<TurnStartParams>(&schema, &mut seen, &mut problems);
    client::<TurnSteerParams>(&schema, &mut seen, &mut problems);
    client::<TurnInterruptParams>(&schema, &mut seen, &mut problems);
    client::<ModelListParams>(&schema, &mut seen, &mut problems);
    client::<ConfigReadParams>(&schema, &mut seen, &mut problems);
    client::<GetAccountParams>(&schema, &mut seen, &mut problems);
    client::<GetAccountRateLimitsParams>(&schema, &mut seen, &mut problems);
    client::<GetAccountTokenUsageParams>(&schema, &mut seen, &mut problems);
    client::<PermissionProfileListParams>(&schema, &mut seen, &mut problems);
    client::<ThreadTurnsListParams>(&schema, &mut seen, &mut problems);
    client::<ThreadItemsListParams>(&schema, &mut seen, &mut problems);
    client::<ThreadLoadedListParams>(&schema, &mut seen, &mut problems);
    client::<ThreadUnsubscribeParams>(&schema, &mut seen, &mut problems);
    client::<ThreadInjectItemsParams>(&schema, &mut seen, &mut problems);
    client::<ThreadForkParams>(&schema, &mut seen, &mut problems);
    client::<ThreadRevertParams>(&schema, &mut seen, &mut problems);
    client::<ThreadCompactStartParams>(&schema, &mut seen, &mut problems);
    client::<ThreadDeleteParams>(&schema, &mut seen, &mut problems);
    client::<ReviewStartParams>(&schema, &mut seen, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        seen,
        methods(&schema, "clientRequests"),
        "a client request of the schema is not checked here"
    );
}

#[test]
fn every_server_request_is_bound_to_its_schema_types() {
    let schema = schema();
    assert_eq!(
        set(SERVER_REQUEST_METHODS),
        methods(&schema, "serverRequests")
    );
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    server::<CommandExecutionRequestApprovalParams>(&schema, &mut seen, &mut problems);
    server::<FileChangeRequestApprovalParams>(&schema, &mut seen, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        seen,
        methods(&schema, "serverRequests"),
        "a server request of the schema is not checked here"
    );
}

#[test]
fn every_server_notification_has_a_variant() {
    let schema = schema();
    let pinned = methods(&schema, "serverNotifications");
    assert_eq!(set(SERVER_NOTIFICATION_METHODS), pinned);
    for method in &pinned {
        let parsed = ServerNotification::from_parts(method.clone(), Value::Null);
        assert_eq!(parsed.method(), method);
    }
    // Minimal params from the schema parse into their typed variant.
    let parsed = ServerNotification::from_parts(
        "item/agentMessage/delta".into(),
        serde_json::json!({"threadId": "t", "turnId": "u", "itemId": "i", "delta": "d"}),
    );
    assert!(
        matches!(&parsed, ServerNotification::AgentMessageDelta(d) if d.delta == "d"),
        "{parsed:?}"
    );
    assert_eq!(parsed.thread_id(), Some("t"));
}

#[test]
fn the_schema_is_the_pinned_version() {
    assert_eq!(
        schema()["x-codex-version"],
        codex_app_server::PINNED_CODEX_VERSION
    );
    assert_eq!(SCHEMA_CODEX_VERSION, codex_app_server::PINNED_CODEX_VERSION);
}
