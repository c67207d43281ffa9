//! Launch configuration end to end, against the real codex 0.169.0 and the stub model
//! provider: a repository's `.dispatch/config.toml` with `[defaults]` and two presets over the
//! global `[defaults]`, `new --dry-run` (the plan, and nothing created), `new` (the thread
//! Codex runs has the planned settings, as the model request shows), a launch packet, and
//! every bad configuration refused as `invalid_input` naming the file and the key.

mod support;

use std::path::Path;

use responses_stub::Script;
use serde_json::Value;
use support::{Home, Stub};

/// A git repository (`git init`) with `.dispatch/config.toml` holding `config`.
fn repository(config: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("repo")
        .tempdir()
        .expect("tempdir");
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(dir.path())
        .status()
        .expect("git init");
    assert!(init.success());
    std::fs::create_dir_all(dir.path().join(".dispatch")).expect("mkdir");
    std::fs::write(dir.path().join(".dispatch/config.toml"), config).expect("config");
    dir
}

/// A daemon whose Codex talks to a stub, with the global `config.toml` holding `global`.
fn daemon(global: &str) -> (Home, Stub) {
    let stub = Stub::start(Script::new().default_reply("done"));
    let home = Home::new();
    home.use_model_provider(&stub.base_url());
    home.write_config(global);
    home.up();
    (home, stub)
}

/// The plan's settings as `key -> (value, source)`.
fn settings(plan: &Value) -> std::collections::BTreeMap<String, (Value, String)> {
    plan["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().expect("key").to_owned(),
                (
                    s["value"].clone(),
                    s["source"].as_str().expect("source").to_owned(),
                ),
            )
        })
        .collect()
}

/// What the App Server knows and dispatch recorded: unmanaged threads, lanes, the action log.
fn state(home: &Home) -> (Value, Value, usize) {
    let threads = home.json(&["list", "--unmanaged"]).ok_json()["lanes"].clone();
    let lanes = home.json(&["list", "--all"]).ok_json()["lanes"].clone();
    let log = home.json(&["daemon", "log", "--limit", "1000"]).ok_json()["entries"]
        .as_array()
        .map_or(0, Vec::len);
    (threads, lanes, log)
}

/// The developer-role texts of a model request.
fn developer_texts(request: &responses_stub::RecordedRequest) -> String {
    request
        .input()
        .iter()
        .filter(|item| item["role"] == "developer")
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a developer message of the request is exactly `text`.
fn developer_message(request: &responses_stub::RecordedRequest, text: &str) -> bool {
    request.input().iter().any(|item| {
        item["role"] == "developer"
            && item["content"] == serde_json::json!([{"type": "input_text", "text": text}])
    })
}

const REPO_CONFIG: &str = r#"[defaults]
developer_file = "dev.md"
approval_policy = "on-request"

[presets.a]
base_instructions = "BASE-FROM-PRESET-A"
approval_policy = "never"
title_prefix = "[{repo}] "

[presets.b]
developer_instructions = "DEV-FROM-PRESET-B"
text = "PROMPT-FROM-PRESET-B"
"#;

#[test]
fn presets_merge_into_the_plan_and_the_thread_codex_runs() {
    let (home, stub) = daemon("[defaults]\nmodel = \"gpt-6.1-sol\"\neffort = \"low\"\n");
    let repo = repository(REPO_CONFIG);
    std::fs::write(repo.path().join(".dispatch/dev.md"), "DEV-FROM-DEFAULTS").expect("dev.md");
    let cwd = repo.path().display().to_string();
    let config_file = repo.path().join(".dispatch/config.toml");
    let repo_source = format!("repo:{}", config_file.display());
    let global_source = format!("global:{}", home.file("config.toml").display());

    let before = state(&home);
    let args = [
        "new", "--name", "task", "--cwd", &cwd, "--preset", "a", "--preset", "b",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let planned = home.json(&dry).ok_json();
    assert_eq!(planned["lane"], Value::Null, "{planned}");
    let plan = &planned["plan"];
    let repo_name = repo.path().file_name().expect("name").to_string_lossy();
    assert_eq!(plan["title"], format!("[{repo_name}] task"), "{plan}");
    assert_eq!(plan["sends_turn"], true);
    assert_eq!(plan["worktree"], Value::Null);
    let got = settings(plan);
    let at = |preset: &str| format!("preset:{preset}@{}", config_file.display());
    assert_eq!(
        got["model"],
        (Value::from("gpt-6.1-sol"), global_source.clone())
    );
    assert_eq!(got["effort"], (Value::from("low"), global_source));
    assert_eq!(got["approval_policy"], (Value::from("never"), at("a")));
    assert_eq!(
        got["base_instructions"],
        (Value::from("BASE-FROM-PRESET-A"), at("a"))
    );
    assert_eq!(
        got["developer_instructions"],
        (Value::from("DEV-FROM-PRESET-B"), at("b"))
    );
    assert_eq!(got["text"], (Value::from("PROMPT-FROM-PRESET-B"), at("b")));
    assert_eq!(got["worktree"], (Value::from(false), "default".to_owned()));
    assert!(!got.contains_key("sandbox"), "{plan}");
    // The defaults' developer file lost to preset b: it is not among the files read.
    assert_eq!(plan["files"], serde_json::json!([]), "{plan}");
    // `config show` agrees, without the presets the repository's defaults win.
    let shown = home.json(&["config", "show", "--cwd", &cwd]).ok_json();
    let shown_settings = settings(&shown);
    assert_eq!(
        shown_settings["developer_instructions"].0,
        "DEV-FROM-DEFAULTS"
    );
    assert_eq!(shown_settings["developer_instructions"].1, repo_source);
    assert_eq!(shown["files"][0]["size"], 17, "{shown}");
    let human = home.run(&["config", "show", "--cwd", &cwd, "--preset", "a"]);
    assert!(human.stdout.contains("preset:a@"), "{}", human.stdout);

    // The dry run made nothing: no thread in the App Server, no lane, no log entry, no turn.
    assert_eq!(state(&home), before, "a dry run changes nothing");
    assert_eq!(stub.requests().len(), 0);

    let created = home.json(&args).ok_json();
    assert_eq!(created["message_accepted"], true, "{created}");
    assert_eq!(created["plan"], Value::Null);
    assert_eq!(created["lane"]["title"], format!("[{repo_name}] task"));
    stub.wait_for_requests(1);
    let request = &stub.requests()[0];
    assert_eq!(request.body["model"], "gpt-6.1-sol", "{}", request.body);
    assert_eq!(
        request.body["reasoning"]["effort"], "low",
        "{}",
        request.body
    );
    // Codex 0.169.0 sends base instructions as a developer message of their own.
    assert!(
        developer_message(request, "BASE-FROM-PRESET-A"),
        "the base instructions: {}",
        request.body
    );
    let developer = developer_texts(request);
    assert!(developer.contains("DEV-FROM-PRESET-B"), "{developer}");
    assert!(!developer.contains("DEV-FROM-DEFAULTS"), "{developer}");
    assert!(
        request
            .user_texts()
            .iter()
            .any(|t| t == "PROMPT-FROM-PRESET-B"),
        "{:?}",
        request.user_texts()
    );
    assert!(
        developer.contains("never"),
        "the approval policy: {developer}"
    );
}

#[test]
fn a_packets_files_land_in_their_fields() {
    let (home, stub) = daemon("");
    let work = tempfile::tempdir().expect("cwd");
    let packet = tempfile::tempdir().expect("packet");
    let write = |name: &str, text: &str| {
        std::fs::write(packet.path().join(name), text).expect("write");
    };
    write("dispatch.toml", "model = \"gpt-6.1-sol\"\n");
    write("prompt.md", "PROMPT-FROM-PACKET");
    write("developer.md", "DEV-FROM-PACKET");
    write("base.md", "BASE-FROM-PACKET");
    write(
        "output.schema.json",
        r#"{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}"#,
    );
    write("notes.txt", "NOT-READ");
    let dir = std::fs::canonicalize(packet.path()).expect("canonical");
    let cwd = work.path().display().to_string();
    let packet_arg = packet.path().display().to_string();
    let args = ["new", "--name", "p", "--cwd", &cwd, "--packet", &packet_arg];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let plan = home.json(&dry).ok_json()["plan"].clone();
    let source = format!("packet:{}", dir.display());
    let got = settings(&plan);
    for key in [
        "model",
        "text",
        "developer_instructions",
        "base_instructions",
        "output_schema",
    ] {
        assert_eq!(got[key].1, source, "{key}: {plan}");
    }
    assert_eq!(plan["files"].as_array().map(Vec::len), Some(5), "{plan}");
    assert!(
        plan["warnings"].to_string().contains("notes.txt"),
        "an unknown file is reported: {plan}"
    );
    assert!(!plan.to_string().contains("NOT-READ"));
    assert_eq!(stub.requests().len(), 0);

    let created = home.json(&args).ok_json();
    assert_eq!(created["message_accepted"], true, "{created}");
    stub.wait_for_requests(1);
    let request = &stub.requests()[0];
    assert!(
        request
            .user_texts()
            .iter()
            .any(|t| t == "PROMPT-FROM-PACKET"),
        "{:?}",
        request.user_texts()
    );
    assert!(developer_texts(request).contains("DEV-FROM-PACKET"));
    assert!(developer_message(request, "BASE-FROM-PACKET"));
    assert_eq!(
        request.body["text"]["format"]["schema"]["required"],
        serde_json::json!(["answer"]),
        "the output schema reaches the turn: {}",
        request.body["text"]
    );
}

/// `new --dry-run` in `cwd` with `extra`, which must fail with `invalid_input` whose message
/// names every one of `names`.
fn refused(home: &Home, cwd: &Path, extra: &[&str], names: &[&str]) {
    let cwd = cwd.display().to_string();
    let mut args = vec!["new", "--name", "x", "--cwd", &cwd, "--dry-run"];
    args.extend_from_slice(extra);
    let body = home.json(&args).error("invalid_input");
    let message = body["message"].as_str().unwrap_or_default();
    for name in names {
        assert!(message.contains(name), "{name} in {body}");
    }
    assert!(
        body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "a fix: {body}"
    );
}

#[test]
fn every_bad_configuration_is_invalid_input_naming_the_file_and_key() {
    let (home, _stub) = daemon("");
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "[defaults]\nmodle = \"x\"\n",
            &[],
            &["config.toml:2", "modle"],
        ),
        (
            "[presets.a]\nsandbox = \"read-only\"\npermission_profile = \":workspace\"\n",
            &["--preset", "a"],
            &["config.toml:3", "permission_profile", "sandbox"],
        ),
        (
            "[defaults]\ndeveloper_file = \"missing.md\"\n",
            &[],
            &["config.toml:2", "developer_file"],
        ),
        (
            "[defaults]\nbase_file = \"../../../../../../etc/hostname\"\n",
            &[],
            &["config.toml:2", "base_file", "outside the repository"],
        ),
        (
            "[policy]\nallow_attached_writes = true\n",
            &[],
            &["config.toml:1", "policy"],
        ),
        (
            "[presets.a]\nmodel = \"m\"\n",
            &["--preset", "b"],
            &["preset `b`", "config.toml"],
        ),
    ];
    for (config, extra, names) in cases {
        let repo = repository(config);
        refused(&home, repo.path(), extra, names);
    }
    // A bad global `[defaults]` is refused the same way, naming the global file.
    std::fs::write(home.file("config.toml"), "[defaults]\nsandbox = \"open\"\n").expect("write");
    let work = tempfile::tempdir().expect("cwd");
    let global = home.file("config.toml").display().to_string();
    refused(
        &home,
        work.path(),
        &[],
        &[&format!("{global}:2"), "sandbox"],
    );
    let shown = home
        .json(&[
            "config",
            "show",
            "--cwd",
            &work.path().display().to_string(),
        ])
        .error("invalid_input");
    assert!(shown["message"].to_string().contains("sandbox"), "{shown}");
}
