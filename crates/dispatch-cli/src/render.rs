//! Human output of the operations. Operations without a renderer of their own print their
//! output object as pretty JSON, so a new operation is usable before it gets one.
//!
//! Every string a renderer prints goes through [`escape`] (or [`block`] for multi-line
//! message text): titles, handles, paths, messages and errors come from users and models, and
//! a control character in them must not reach the terminal as one. `--json` output is not
//! rendered here and stays exact.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::process::ExitCode;

use comfy_table::{Table, presets::NOTHING};
use dispatch_contract::Operation;
use serde_json::Value;

/// A borderless table with its trailing padding trimmed.
fn plain(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1), the
/// Unicode line and paragraph separators, and the bidirectional overrides and isolates.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        other => {
            let _infallible = write!(out, "\\u{{{:x}}}", u32::from(other));
        }
    }
}

/// `s` on one line, safe for a terminal: every control character (newlines and escape
/// sequences included) is shown escaped, as `\n` or `\u{1b}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Multi-line text (a message in `tail`), safe for a terminal: newlines and tabs are kept,
/// every continuation line is indented by `indent` so no line of the text can pass for a
/// line of dispatch's own output, and every other control character is escaped.
pub fn block(s: &str, indent: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(indent);
            }
            '\t' => out.push('\t'),
            c if unsafe_char(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as human text: `-` for null, strings escaped.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => escape(s).into_owned(),
        other => other.to_string(),
    }
}

/// A string field, escaped, or `default` when it is not a string.
fn text_or(value: &Value, default: &str) -> String {
    value
        .as_str()
        .map_or_else(|| default.to_owned(), |s| escape(s).into_owned())
}

/// Pretty JSON for the terminal: serde_json escapes C0 controls in strings but leaves DEL,
/// C1 and the other characters of [`unsafe_char`] raw; they become `\u` escapes (still JSON).
fn json_text(output: &Value) -> String {
    let pretty = serde_json::to_string_pretty(output).unwrap_or_default();
    let mut out = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        if unsafe_char(c) && c != '\n' {
            let _infallible = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The human rendering of `output`.
pub fn human(op: &Operation, output: &Value) -> String {
    match op.id {
        "up" => up(output),
        "down" => down(output),
        "daemon_status" => daemon_status(output),
        "daemon_log" => daemon_log(output),
        "doctor" => doctor(output),
        "registry_migrate" => registry_migrate(output),
        "models" => models(output),
        "new" => new(output),
        "get" => get(output),
        "list" => list_lanes(output),
        "tail" => tail(output),
        "send" => send(output),
        "stop" => stop(output),
        "goal_set" | "goal_get" => goal(output),
        "goal_clear" => goal_clear(output),
        "requests" => requests(output),
        "respond" => respond(output),
        "attach" => attach(output),
        "sync" => sync(output),
        "rename" | "archive" | "restore" => thread_meta(op.id, output),
        "search" => search(output),
        "assets" => assets(output),
        _ => json_text(output),
    }
}

/// The exit code of a successful call: `doctor` exits 1 when a check fails.
pub fn exit_code(op: &Operation, output: &Value) -> ExitCode {
    if op.id == "doctor" && output["status"] == "fail" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn up(o: &Value) -> String {
    let verb = if o["status"] == "started" {
        "started"
    } else {
        "already running"
    };
    format!(
        "dispatchd {verb} (pid {}) on {}",
        text(&o["pid"]),
        text(&o["socket"])
    )
}

fn down(o: &Value) -> String {
    let mut lines = vec![match o["status"].as_str() {
        Some("stopped") => format!("dispatchd stopped (pid {})", text(&o["pid"])),
        Some("killed") => format!(
            "dispatchd did not exit in time and was killed (pid {})",
            text(&o["pid"])
        ),
        _ => "dispatchd is not running".to_owned(),
    }];
    if let Some(cleaned) = o["cleaned"].as_array() {
        lines.extend(cleaned.iter().map(|p| format!("removed stale {}", text(p))));
    }
    lines.join("\n")
}

fn daemon_status(o: &Value) -> String {
    let app = &o["app_server"];
    let lanes = &o["lanes"];
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.add_row(vec![
        "daemon".into(),
        format!(
            "pid {}, up {} s, version {}",
            text(&o["pid"]),
            text(&o["uptime_s"]),
            text(&o["version"])
        ),
    ]);
    table.add_row(vec!["socket".into(), text(&o["socket"])]);
    table.add_row(vec![
        "registry".into(),
        format!("schema {}", text(&o["schema_version"])),
    ]);
    table.add_row(vec![
        "app server".into(),
        format!(
            "{} (pid {}, version {}, restarts {})",
            text(&app["state"]),
            text(&app["pid"]),
            text(&app["version"]),
            text(&app["restarts"])
        ),
    ]);
    table.add_row(vec![
        "lanes".into(),
        format!(
            "{} total: {} idle, {} busy, {} retrying, {} waiting approval, {} error",
            text(&lanes["total"]),
            text(&lanes["idle"]),
            text(&lanes["busy"]),
            text(&lanes["retrying"]),
            text(&lanes["waiting_approval"]),
            text(&lanes["error"])
        ),
    ]);
    plain(&table)
}

fn daemon_log(o: &Value) -> String {
    let entries = o["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if entries.is_empty() {
        return "the action log is empty".into();
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(vec!["AT", "OP", "LANE", "OUTCOME", "DETAIL"]);
    for e in entries {
        let outcome = match &e["error_code"] {
            Value::Null => text(&e["outcome"]),
            code => format!("error ({})", text(code)),
        };
        table.add_row(vec![
            text(&e["at"]),
            text(&e["op"]),
            text(&e["lane"]),
            outcome,
            text(&e["detail"]),
        ]);
    }
    plain(&table)
}

fn doctor(o: &Value) -> String {
    let mut lines = Vec::new();
    for c in o["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        lines.push(format!(
            "{:<5} {:<18} {}",
            text(&c["status"]),
            text(&c["name"]),
            text(&c["summary"])
        ));
        if c["status"] != "ok" && c["hint"].is_string() {
            lines.push(format!("{:<24} hint: {}", "", text(&c["hint"])));
        }
    }
    lines.push(format!("doctor: {}", text(&o["status"])));
    lines.join("\n")
}

fn registry_migrate(o: &Value) -> String {
    match o["status"].as_str() {
        Some("created") => format!(
            "created {} at schema {}",
            text(&o["path"]),
            text(&o["to_version"])
        ),
        Some("migrated") => format!(
            "migrated {} from schema {} to {} (backup {})",
            text(&o["path"]),
            text(&o["from_version"]),
            text(&o["to_version"]),
            text(&o["backup"])
        ),
        _ => format!(
            "{} is up to date (schema {})",
            text(&o["path"]),
            text(&o["to_version"])
        ),
    }
}

fn list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn models(o: &Value) -> String {
    if o["catalog_state"] == "empty" {
        return format!("no model catalog yet\nhint: {}", text(&o["hint"]));
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(vec![
        "MODEL",
        "NAME",
        "EFFORTS (DEFAULT)",
        "INPUT",
        "SERVICE TIERS",
    ]);
    for m in o["models"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = if m["is_default"] == true {
            format!("{} *", text(&m["id"]))
        } else {
            text(&m["id"])
        };
        let tiers = m["service_tiers"]
            .as_array()
            .map(|tiers| {
                tiers
                    .iter()
                    .map(|t| {
                        let alias = m["aliases"].as_object().and_then(|a| {
                            a.iter()
                                .find(|(_, id)| **id == t["id"])
                                .map(|(a, _)| escape(a).into_owned())
                        });
                        match alias {
                            Some(alias) => format!("{} ({alias})", text(&t["id"])),
                            None => text(&t["id"]),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        table.add_row(vec![
            id,
            text(&m["display_name"]),
            format!("{} ({})", list(&m["efforts"]), text(&m["default_effort"])),
            list(&m["input_modalities"]),
            tiers,
        ]);
    }
    format!(
        "{}\ndefault model: {} (* = catalog default); {} catalog fetched {}",
        plain(&table),
        text(&o["default_model"]),
        text(&o["source"]),
        text(&o["fetched_at"])
    )
}

fn lane_line(l: &Value) -> String {
    let title = text_or(&l["title"], "(untitled)");
    let handle = l["handle"]
        .as_str()
        .map(|h| format!(" @{}", escape(h)))
        .unwrap_or_default();
    format!(
        "{} {title}{handle} [{}]",
        text(&l["ref"]),
        text(&l["status"])
    )
}

fn turn_line(t: &Value) -> String {
    if t.is_null() {
        return "no turn yet".into();
    }
    let mut line = format!("{} {}", text(&t["id"]), text(&t["status"]));
    if let Some(ms) = t["duration_ms"].as_i64() {
        line.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    if t["error"].is_string() {
        line.push_str(&format!(": {}", text(&t["error"])));
    }
    line
}

fn new(o: &Value) -> String {
    let lane = &o["lane"];
    let mut lines = vec![
        format!("created lane {}", lane_line(lane)),
        format!("thread {}", text(&lane["id"])),
    ];
    if o["goal_set"] == true {
        lines.push("goal set: Codex works on it until it is complete".into());
    }
    match o["message_accepted"].as_bool() {
        Some(true) => lines.push(format!(
            "message accepted (turn {}); follow it with `dispatch get {}` or `dispatch watch {}`",
            text(&o["turn_id"]),
            text(&lane["ref"]),
            text(&lane["ref"])
        )),
        Some(false) => lines.push("the first message was not accepted".into()),
        None => {}
    }
    lines.extend(warnings(o));
    lines.join("\n")
}

/// The `warnings` of a write, one `warning: ...` line each.
fn warnings(o: &Value) -> Vec<String> {
    o["warnings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| format!("warning: {}", text(w)))
        .collect()
}

fn get(o: &Value) -> String {
    let l = &o["lane"];
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.add_row(vec!["lane".into(), lane_line(l)]);
    table.add_row(vec!["thread".into(), text(&l["id"])]);
    let writable = if l["writable"] == true {
        format!("{}, writable", text(&l["ownership"]))
    } else {
        format!(
            "{}, read-only: {}",
            text(&l["ownership"]),
            text(&l["write_locked_reason"])
        )
    };
    table.add_row(vec!["ownership".into(), writable]);
    table.add_row(vec!["cwd".into(), text(&l["cwd"])]);
    table.add_row(vec!["model".into(), text_or(&l["model"], "Codex default")]);
    table.add_row(vec!["latest turn".into(), turn_line(&l["latest_turn"])]);
    if let Some(attempts) = l["retry"]["attempts"].as_u64() {
        table.add_row(vec![
            "retrying".into(),
            format!(
                "attempt {attempts}, last error at {}: {}",
                text(&l["retry"]["at"]),
                text(&l["retry"]["last_error"])
            ),
        ]);
    }
    if !l["stalled_since"].is_null() {
        table.add_row(vec![
            "stalled".into(),
            format!("no App Server event since {}", text(&l["stalled_since"])),
        ]);
    }
    if !l["hint"].is_null() {
        table.add_row(vec!["hint".into(), text(&l["hint"])]);
    }
    if !l["goal"].is_null() {
        table.add_row(vec![
            "goal".into(),
            format!(
                "{} ({})",
                text(&l["goal"]["objective"]),
                text(&l["goal"]["status"])
            ),
        ]);
    }
    let c = &o["counts"];
    table.add_row(vec![
        "counts".into(),
        format!(
            "{} turns, {} items, {} events, {} errors",
            text(&c["turns"]),
            text(&c["items"]),
            text(&c["events"]),
            text(&c["errors"])
        ),
    ]);
    let mut out = plain(&table);
    let running_turn = l["latest_turn"]["id"]
        .as_str()
        .filter(|_| l["latest_turn"]["status"] == "in_progress");
    for e in o["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(5)
    {
        // "retrying" only while the turn it was said of still runs.
        let retry = match (e["will_retry"] == true, e["turn_id"].as_str()) {
            (true, Some(turn)) if Some(turn) == running_turn => " (Codex is retrying)",
            (true, _) => " (Codex retried; that turn has ended)",
            (false, _) => "",
        };
        out.push_str(&format!(
            "\nerror {}: {}{retry}",
            text(&e["at"]),
            text(&e["message"])
        ));
    }
    out
}

fn list_lanes(o: &Value) -> String {
    let lanes = o["lanes"].as_array().map(Vec::as_slice).unwrap_or_default();
    if lanes.is_empty() {
        return "no lanes".into();
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(vec![
        "REF",
        "STATUS",
        "TITLE",
        "HANDLE",
        "OWNER",
        "LATEST TURN",
        "UPDATED",
    ]);
    for l in lanes {
        table.add_row(vec![
            text(&l["ref"]),
            text(&l["status"]),
            text(&l["title"]),
            l["handle"]
                .as_str()
                .map(|h| format!("@{}", escape(h)))
                .unwrap_or_else(|| "-".into()),
            text(&l["ownership"]),
            text_or(&l["latest_turn"]["status"], "-"),
            text(&l["updated_at"]),
        ]);
    }
    plain(&table)
}

fn tail(o: &Value) -> String {
    let items = o["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return format!("lane {} has no items yet", text(&o["lane"]["ref"]));
    }
    items
        .iter()
        .map(|i| {
            let body = match i["text"].as_str() {
                Some(body) => block(body, "    "),
                None => text(&i["text"]),
            };
            format!("[{}] {body}", text(&i["type"]))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn send(o: &Value) -> String {
    let how = if o["steered"] == true {
        "added to the running turn"
    } else {
        "accepted, new turn"
    };
    let mut lines = vec![format!(
        "message {how} {} on lane {}; follow it with `dispatch get {}`",
        text(&o["turn_id"]),
        text(&o["lane"]["ref"]),
        text(&o["lane"]["ref"])
    )];
    lines.extend(warnings(o));
    lines.join("\n")
}

fn stop(o: &Value) -> String {
    if o["interrupted"] == true {
        format!(
            "interrupting turn {} of lane {}",
            text(&o["turn_id"]),
            text(&o["lane"]["ref"])
        )
    } else {
        format!("lane {} has no running turn", text(&o["lane"]["ref"]))
    }
}

fn goal(o: &Value) -> String {
    match o["goal"].as_object() {
        Some(g) => format!(
            "lane {} goal: {} ({})",
            text(&o["lane"]["ref"]),
            g.get("objective").map(text).unwrap_or_default(),
            g.get("status").map(text).unwrap_or_default()
        ),
        None => format!("lane {} has no goal", text(&o["lane"]["ref"])),
    }
}

fn goal_clear(o: &Value) -> String {
    if o["cleared"] == true {
        format!("goal of lane {} cleared", text(&o["lane"]["ref"]))
    } else {
        format!("lane {} had no goal", text(&o["lane"]["ref"]))
    }
}

fn requests(o: &Value) -> String {
    let requests = o["requests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if requests.is_empty() {
        return "no pending requests".into();
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(vec!["ID", "LANE", "KIND", "ASKS", "DECISIONS"]);
    for r in requests {
        table.add_row(vec![
            text(&r["id"]),
            text(&r["lane"]["ref"]),
            text(&r["kind"]),
            text(&r["summary"]),
            list(&r["available_decisions"]),
        ]);
    }
    format!(
        "{}\nanswer with `dispatch respond <id> accept|decline`",
        plain(&table)
    )
}

fn respond(o: &Value) -> String {
    format!(
        "request {} answered `{}` (lane {})",
        text(&o["request_id"]),
        text(&o["decision"]),
        text(&o["lane"]["ref"])
    )
}

/// One watched event as a human line.
pub fn watch_event(e: &Value) -> String {
    let summary = e["summary"]
        .as_str()
        .map(|s| format!(" {}", escape(s)))
        .unwrap_or_default();
    format!("{} {}{summary}", text(&e["at"]), text(&e["method"]))
}

/// The closing line of a human `watch`: why it ended, how many events it printed, and the
/// cursor to continue from with `--after`.
pub fn watch_end(summary: &Value) -> String {
    let ended = text(&summary["ended"]);
    let events = text(&summary["events"]);
    match &summary["cursor"] {
        Value::Null => format!("watch ended ({ended}) after {events} events"),
        cursor => {
            let cursor = text(cursor);
            format!(
                "watch ended ({ended}) after {events} events at cursor {cursor}; continue with --after {cursor}"
            )
        }
    }
}

fn attach(o: &Value) -> String {
    let verb = if o["already_attached"] == true {
        "already attached as"
    } else {
        "attached as"
    };
    format!(
        "{verb} lane {} (observe-only unless [policy] allow_attached_writes)",
        lane_line(&o["lane"])
    )
}

fn sync(o: &Value) -> String {
    format!(
        "synced lane {}: {} turns, {} new items, {} updated",
        text(&o["lane"]["ref"]),
        text(&o["turns"]),
        text(&o["items_added"]),
        text(&o["items_updated"])
    )
}

fn thread_meta(op: &str, o: &Value) -> String {
    let who = match o["ref"].as_str() {
        Some(r) => format!("lane {}", escape(r)),
        None => format!("thread {}", text(&o["id"])),
    };
    match op {
        "rename" => format!("{who} is now titled {}", text(&o["title"])),
        "archive" => format!("{who} archived"),
        _ => format!("{who} restored"),
    }
}

fn search(o: &Value) -> String {
    let hits = o["hits"].as_array().map(Vec::as_slice).unwrap_or_default();
    if hits.is_empty() {
        return "no matches".into();
    }
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(vec!["REF", "SCOPE", "TITLE", "MATCH"]);
    for h in hits {
        table.add_row(vec![
            h["ref"]
                .as_str()
                .map(|r| escape(r).into_owned())
                .unwrap_or_else(|| text(&h["id"])),
            text(&h["scope"]),
            text(&h["title"]),
            text(&h["snippet"]),
        ]);
    }
    plain(&table)
}

fn assets(o: &Value) -> String {
    let files = o["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    let out = o["out"].as_str().map(escape);
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| match out {
            Some(_) => format!("{:<11} {}", text(&f["status"]), text(&f["path"])),
            None => format!("{} ({} bytes)", text(&f["path"]), text(&f["bytes"])),
        })
        .collect();
    lines.push(match &out {
        Some(dir) => format!("dispatch {} agent assets are in {dir}", text(&o["version"])),
        None => format!(
            "dispatch {} agent assets; `dispatch assets --out DIR` writes them",
            text(&o["version"])
        ),
    });
    lines.join("\n")
}
