//! Human output of the operations. Operations without a renderer of their own print their
//! output object as pretty JSON, so a new operation is usable before it gets one.

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

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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
        _ => serde_json::to_string_pretty(output).unwrap_or_default(),
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
            "{} total: {} idle, {} busy, {} waiting approval, {} error",
            text(&lanes["total"]),
            text(&lanes["idle"]),
            text(&lanes["busy"]),
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
        let outcome = match e["error_code"].as_str() {
            Some(code) => format!("error ({code})"),
            None => text(&e["outcome"]),
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
        if c["status"] != "ok"
            && let Some(hint) = c["hint"].as_str()
        {
            lines.push(format!("{:<24} hint: {hint}", ""));
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
                                .map(|(a, _)| a.clone())
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
