//! The agent assets: the skills, the Codex plugin bundle and the marketplace file are valid
//! and consistent with each other and with the workspace version; the binary embeds exactly
//! the repository's files, `dispatch assets --out DIR` writes them faithfully, `doctor` checks
//! them, and the real Codex CLI installs the written plugin.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::Home;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not valid JSON: {err}", path.display()))
}

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("Cargo.toml parses");
    manifest["workspace"]["package"]["version"]
        .as_str()
        .expect("[workspace.package] version")
        .to_owned()
}

/// Every file under `dir` (dotfiles included), by path relative to `base`, with its bytes.
fn files_under(base: &Path, dir: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![base.join(dir)];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned();
                found.insert(relative, std::fs::read(&path).expect("read file"));
            }
        }
    }
    found
}

/// What the assets are in the repository: `skills/`, `plugins/dispatch/` and the marketplace.
fn repo_assets() -> BTreeMap<String, Vec<u8>> {
    let root = repo();
    let mut all = files_under(&root, "skills");
    all.extend(files_under(&root, "plugins/dispatch"));
    let marketplace = ".agents/plugins/marketplace.json";
    all.insert(
        marketplace.into(),
        std::fs::read(root.join(marketplace)).expect("marketplace.json"),
    );
    all
}

/// Resolves a `./` path of a manifest against `base`.
fn relative(base: &Path, value: &Value) -> PathBuf {
    let path = value.as_str().expect("a path string");
    let inner = path
        .strip_prefix("./")
        .unwrap_or_else(|| panic!("`{path}` must start with ./"));
    assert!(
        !inner.split('/').any(|p| p == ".."),
        "`{path}` leaves its root"
    );
    base.join(inner)
}

#[test]
fn the_manifests_are_valid_and_point_at_files_that_exist() {
    let root = repo();
    let version = workspace_version();
    let plugin_root = root.join("plugins/dispatch");
    let plugin = json_file(&plugin_root.join(".codex-plugin/plugin.json"));
    assert_eq!(plugin["name"], "dispatch");
    assert_eq!(
        plugin["version"],
        version.as_str(),
        "the plugin's version is the workspace's"
    );
    assert!(
        plugin["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert!(plugin["keywords"].as_array().is_some_and(|k| !k.is_empty()));
    for field in ["displayName", "shortDescription", "category"] {
        assert!(
            plugin["interface"][field]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "interface.{field}"
        );
    }
    let skills = relative(&plugin_root, &plugin["skills"]);
    for skill in ["dispatch", "dm"] {
        assert!(
            skills.join(skill).join("SKILL.md").is_file(),
            "{skill} is in the bundle"
        );
    }
    let mcp_path = relative(&plugin_root, &plugin["mcpServers"]);
    assert_eq!(
        json_file(&mcp_path),
        json!({"mcpServers": {"dispatch": {"command": "dispatch", "args": ["mcp"]}}})
    );

    let marketplace = json_file(&root.join(".agents/plugins/marketplace.json"));
    assert!(marketplace["name"].is_string());
    let listed = marketplace["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "dispatch"))
        .expect("the marketplace lists the plugin");
    assert_eq!(listed["source"]["source"], "local");
    assert_eq!(listed["source"]["path"], "./plugins/dispatch");
    // Local sources resolve against the directory that holds `.agents/`.
    let source = relative(&root, &listed["source"]["path"]);
    assert!(source.join(".codex-plugin/plugin.json").is_file());
    assert_eq!(listed["version"], version.as_str());
    assert!(
        listed["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[test]
fn the_plugin_skills_are_the_skills() {
    let root = repo();
    let originals = files_under(&root, "skills");
    let copies: BTreeMap<String, Vec<u8>> = files_under(&root.join("plugins/dispatch"), "skills");
    assert!(originals.len() >= 2, "{:?}", originals.keys());
    assert_eq!(
        copies.keys().collect::<Vec<_>>(),
        originals.keys().collect::<Vec<_>>(),
        "plugins/dispatch/skills/ holds the same files as skills/"
    );
    for (path, content) in &originals {
        assert!(
            copies[path] == *content,
            "plugins/dispatch/{path} differs from {path}: copy skills/ into plugins/dispatch/skills/"
        );
    }
    for (path, content) in &originals {
        let text = String::from_utf8_lossy(content);
        let front = text
            .strip_prefix("---\n")
            .and_then(|rest| rest.split_once("\n---\n"))
            .map(|(front, _)| front)
            .unwrap_or_else(|| panic!("{path} has no front matter"));
        let dir = Path::new(path)
            .parent()
            .and_then(Path::file_name)
            .expect("skills/<name>/SKILL.md")
            .to_string_lossy();
        assert!(
            front.lines().any(|l| l == format!("name: {dir}")),
            "{path}: name"
        );
        assert!(
            front
                .lines()
                .any(|l| l.starts_with("description: ") && l.len() > 40),
            "{path}: description"
        );
    }
}

#[test]
fn the_binary_embeds_exactly_the_repository_assets() {
    let home = Home::new();
    let listed = home.json(&["assets"]).ok_json();
    assert_eq!(listed["version"], workspace_version().as_str());
    assert_eq!(listed["out"], Value::Null);
    let embedded: BTreeMap<String, u64> = listed["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            assert_eq!(f["status"], "embedded");
            (
                f["path"].as_str().expect("path").to_owned(),
                f["bytes"].as_u64().expect("bytes"),
            )
        })
        .collect();
    let in_repo: BTreeMap<String, u64> = repo_assets()
        .into_iter()
        .map(|(path, content)| (path, content.len() as u64))
        .collect();
    assert_eq!(
        embedded, in_repo,
        "every file of skills/, plugins/dispatch/ and the marketplace is embedded \
         (ASSETS in crates/dispatch-client/src/assets.rs), and nothing else"
    );
    let human = home.run(&["assets"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains("skills/dm/SKILL.md ("),
        "{}",
        human.stdout
    );
}

#[test]
fn assets_out_writes_the_repository_files_and_guards_changed_ones() {
    let home = Home::new();
    let out = tempfile::tempdir().expect("out");
    let dir = out.path().join("nested/assets");
    let dir_arg = dir.to_str().expect("utf-8");
    let written = home.json(&["assets", "--out", dir_arg]).ok_json();
    assert_eq!(written["out"], dir_arg);
    assert!(
        written["files"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["status"] == "written"))
    );
    let expected = repo_assets();
    let mut on_disk = files_under(&dir, "skills");
    on_disk.extend(files_under(&dir, "plugins"));
    on_disk.extend(files_under(&dir, ".agents"));
    assert!(
        on_disk == expected,
        "the written files are the repository's: {:?} vs {:?}",
        on_disk.keys(),
        expected.keys()
    );

    let again = home.json(&["assets", "--out", dir_arg]).ok_json();
    assert!(
        again["files"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["status"] == "unchanged")),
        "{again}"
    );

    let plugin = dir.join("plugins/dispatch/.codex-plugin/plugin.json");
    std::fs::write(&plugin, "{}").expect("edit");
    let refused = home.json(&["assets", "--out", dir_arg]);
    assert_eq!(refused.code, 2, "{refused:?}");
    let body = refused.error("invalid_input");
    assert_eq!(
        body["details"]["conflicts"],
        json!(["plugins/dispatch/.codex-plugin/plugin.json"])
    );
    assert!(body["hint"].as_str().is_some_and(|h| h.contains("--force")));
    assert_eq!(std::fs::read_to_string(&plugin).expect("kept"), "{}");

    let forced = home
        .json(&["assets", "--out", dir_arg, "--force"])
        .ok_json();
    let status: BTreeMap<&str, &str> = forced["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["status"].as_str()?)))
        .collect();
    assert_eq!(
        status["plugins/dispatch/.codex-plugin/plugin.json"],
        "overwritten"
    );
    assert_eq!(status["skills/dm/SKILL.md"], "unchanged");
    assert_eq!(
        std::fs::read(&plugin).expect("restored"),
        expected["plugins/dispatch/.codex-plugin/plugin.json"]
    );
}

#[test]
fn doctor_reports_the_agent_assets_ok() {
    let home = Home::new();
    let doctor = home.json(&["doctor", "--no-app-server"]).json();
    let check = doctor["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "agent_assets"))
        .unwrap_or_else(|| panic!("no agent_assets check: {doctor}"))
        .clone();
    assert_eq!(check["status"], "ok", "{check}");
    let summary = check["summary"].as_str().expect("summary");
    assert!(
        summary.contains(&workspace_version()) && summary.contains("dispatch, dm"),
        "{summary}"
    );
}

/// Runs the real Codex CLI with its own CODEX_HOME and HOME (no user state, no network).
fn codex(codex_home: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new(support::codex_bin())
        .args(args)
        .env("CODEX_HOME", codex_home)
        .env("HOME", home)
        .output()
        .expect("run codex");
    assert!(
        out.status.success(),
        "codex {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_real_codex_installs_the_written_plugin() {
    let home = Home::new();
    let scratch = tempfile::tempdir().expect("scratch");
    let marketplace = scratch.path().join("marketplace");
    let codex_home = scratch.path().join("codex-home");
    let user_home = scratch.path().join("home");
    for dir in [&codex_home, &user_home] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    let root = marketplace.to_str().expect("utf-8");
    home.json(&["assets", "--out", root]).ok_json();

    codex(
        &codex_home,
        &user_home,
        &["plugin", "marketplace", "add", root],
    );
    codex(
        &codex_home,
        &user_home,
        &["plugin", "add", "dispatch@dispatch"],
    );
    let version = workspace_version();
    let listed = codex(&codex_home, &user_home, &["plugin", "list"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with("dispatch@dispatch"))
        .unwrap_or_else(|| panic!("codex does not list the plugin:\n{listed}"));
    assert!(
        line.contains("installed") && line.contains(&version),
        "{line}"
    );
    let installed = codex_home.join(format!("plugins/cache/dispatch/dispatch/{version}"));
    assert!(
        installed.join("skills/dm/SKILL.md").is_file(),
        "the skills were copied"
    );

    let servers: Value =
        serde_json::from_str(&codex(&codex_home, &user_home, &["mcp", "list", "--json"]))
            .expect("codex mcp list --json");
    let server = servers
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "dispatch"))
        .unwrap_or_else(|| panic!("the plugin's MCP server is not configured: {servers}"));
    assert_eq!(server["transport"]["command"], "dispatch");
    assert_eq!(server["transport"]["args"], json!(["mcp"]));
}
