//! The agent assets built into the binary: the skills, the Codex plugin bundle and the
//! marketplace file that lists it (the repository's `skills/`, `plugins/dispatch/` and
//! `.agents/plugins/marketplace.json`). `dispatch assets` lists or writes them; `doctor`
//! checks that they parse and that the plugin's version is this binary's.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dispatch_contract::types::{AssetFile, AssetFileStatus, AssetsOutput};
use dispatch_contract::{DispatchError, Hint, operations};
use serde_json::{Value, json};

/// The version the assets belong to: this binary's, which the plugin manifest must carry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path relative to the repository root (and to `dispatch assets --out DIR`).
    pub path: &'static str,
    /// The file's content.
    pub content: &'static str,
}

/// Embeds the repository file at `$path` (relative to the workspace root).
macro_rules! asset {
    ($path:literal) => {
        Asset {
            path: $path,
            content: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $path)),
        }
    };
}

/// Every embedded file, sorted by path.
pub const ASSETS: &[Asset] = &[
    asset!(".agents/plugins/marketplace.json"),
    asset!("plugins/dispatch/.codex-plugin/plugin.json"),
    asset!("plugins/dispatch/.mcp.json"),
    asset!("plugins/dispatch/skills/dispatch/SKILL.md"),
    asset!("plugins/dispatch/skills/dm/SKILL.md"),
    asset!("skills/dispatch/SKILL.md"),
    asset!("skills/dm/SKILL.md"),
];

/// Where the plugin bundle lives, relative to the repository root.
const PLUGIN_ROOT: &str = "plugins/dispatch";

fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `dispatch assets`: lists the embedded files, or writes them under `out`.
pub fn run(out: Option<&str>, force: bool) -> Result<AssetsOutput, DispatchError> {
    let Some(out) = out else {
        return Ok(AssetsOutput {
            version: VERSION.to_owned(),
            out: None,
            files: ASSETS
                .iter()
                .map(|a| file(a, AssetFileStatus::Embedded))
                .collect(),
        });
    };
    let dir = std::env::current_dir()
        .map(|cwd| cwd.join(out))
        .map_err(|err| {
            DispatchError::invalid_input(format!(
                "`out`: cannot resolve {out} (no current directory: {err})"
            ))
            .with_hint("pass an absolute path")
        })?;
    let files = write_all(&dir, force)?;
    Ok(AssetsOutput {
        version: VERSION.to_owned(),
        out: Some(dir.display().to_string()),
        files,
    })
}

fn file(asset: &Asset, status: AssetFileStatus) -> AssetFile {
    AssetFile {
        path: asset.path.to_owned(),
        bytes: asset.content.len() as u64,
        status,
    }
}

fn cannot_write(path: &Path, err: &std::io::Error) -> DispatchError {
    DispatchError::invalid_input(format!("`out`: cannot write {}: {err}", path.display()))
        .with_hint(
            Hint::new("choose a directory you can write to ({0})")
                .run(&operations::ASSETS, json!({ "out": "<dir>" })),
        )
}

/// What writing `asset` under `dir` would do, judged before anything is written.
fn plan(dir: &Path, asset: &Asset) -> Result<(PathBuf, AssetFileStatus), DispatchError> {
    let target = dir.join(asset.path);
    let status = match std::fs::read(&target) {
        Ok(existing) if existing == asset.content.as_bytes() => AssetFileStatus::Unchanged,
        Ok(_) => AssetFileStatus::Overwritten,
        Err(err) if err.kind() == ErrorKind::NotFound => AssetFileStatus::Written,
        Err(err) => {
            return Err(DispatchError::invalid_input(format!(
                "`out`: cannot read {}: {err}",
                target.display()
            ))
            .with_hint(
                Hint::new("choose another directory ({0})")
                    .run(&operations::ASSETS, json!({ "out": "<dir>" })),
            ));
        }
    };
    Ok((target, status))
}

/// Writes every asset under `dir`. A differing file refuses the whole write unless `force`.
fn write_all(dir: &Path, force: bool) -> Result<Vec<AssetFile>, DispatchError> {
    let planned = ASSETS
        .iter()
        .map(|a| plan(dir, a).map(|(target, status)| (a, target, status)))
        .collect::<Result<Vec<_>, _>>()?;
    let conflicts: Vec<&str> = planned
        .iter()
        .filter(|(_, _, status)| *status == AssetFileStatus::Overwritten)
        .map(|(a, _, _)| a.path)
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(DispatchError::invalid_input(format!(
            "`out`: {} existing file(s) under {} differ from this dispatch's assets: {}; nothing was written",
            conflicts.len(),
            dir.display(),
            conflicts.join(", ")
        ))
        .with_hint(
            Hint::new("overwrite them ({0}), or choose another directory ({1})")
                .run(
                    &operations::ASSETS,
                    json!({ "out": dir.display().to_string(), "force": true }),
                )
                .run(&operations::ASSETS, json!({ "out": "<dir>" })),
        )
        .with_details(json!({ "conflicts": conflicts })));
    }
    let mut files = Vec::with_capacity(planned.len());
    for (asset, target, status) in planned {
        if status != AssetFileStatus::Unchanged {
            write_file(&target, asset.content)?;
        }
        files.push(file(asset, status));
    }
    Ok(files)
}

/// Writes `content` to `target` through a temporary sibling, so a reader never sees half a
/// file. The temporary file gets a fresh random name and is created exclusively
/// (`O_CREAT|O_EXCL`), so nothing already in the directory (a symbolic link under a
/// predictable name) is ever followed or overwritten; the rename then replaces `target`
/// itself, never what a link there points to.
fn write_file(target: &Path, content: &str) -> Result<(), DispatchError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|err| cannot_write(parent, &err))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".dispatch-tmp")
        // The umask applies, as for any file the user writes.
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(parent)
        .map_err(|err| cannot_write(parent, &err))?;
    temp.write_all(content.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|err| cannot_write(temp.path(), &err))?;
    // A failed persist drops (and so removes) the temporary file.
    temp.persist(target)
        .map(drop)
        .map_err(|err| cannot_write(target, &err.error))
}

/// The YAML front matter of a skill, as `key: value` lines (the subset skills use).
fn front_matter(text: &str) -> Result<Vec<(&str, &str)>, String> {
    let body = text
        .strip_prefix("---\n")
        .ok_or("does not start with a `---` front matter line")?;
    let end = body
        .find("\n---\n")
        .ok_or("has no closing `---` front matter line")?;
    body[..end]
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_once(": ")
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("front matter line `{line}` is not `key: value`"))
        })
        .collect()
}

/// Whether YAML reads `value` as a plain one-line string: no leading indicator character,
/// no `: ` and no ` #` inside.
fn plain_scalar(value: &str) -> bool {
    const INDICATORS: &[char] = &[
        '[', ']', '{', '}', '>', '|', '*', '&', '!', '%', '@', '`', '\'', '"', '#', '?', ':', '-',
        ',',
    ];
    !value.starts_with(INDICATORS) && !value.contains(": ") && !value.contains(" #")
}

/// Checks one skill: front matter with a `name` equal to its directory and a one-line
/// `description` (Codex limits: 64 and 1024 characters).
fn check_skill(asset: &Asset) -> Result<String, String> {
    let fields = front_matter(asset.content)?;
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("has no `{key}` in its front matter"))
    };
    let name = get("name")?;
    let description = get("description")?;
    let dir = Path::new(asset.path)
        .parent()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name != dir {
        return Err(format!("is named `{name}` but lives in `{dir}/`"));
    }
    if name.chars().count() > 64 || description.chars().count() > 1024 {
        return Err("has a name over 64 or a description over 1024 characters".into());
    }
    if let Some(value) = [name, description].into_iter().find(|v| !plain_scalar(v)) {
        return Err(format!(
            "has a front matter value YAML would not read as plain text: `{value}`"
        ));
    }
    Ok(name.to_owned())
}

fn json_asset(path: &str) -> Result<Value, String> {
    let asset = asset(path).ok_or_else(|| format!("{path} is not embedded"))?;
    serde_json::from_str(asset.content).map_err(|err| format!("{path} is not valid JSON: {err}"))
}

/// Resolves a `./`-relative path of the plugin manifest to a repository path.
fn plugin_path(field: &str, value: &Value) -> Result<String, String> {
    let relative = value
        .as_str()
        .and_then(|v| v.strip_prefix("./"))
        .filter(|v| !v.is_empty() && !v.split('/').any(|part| part == ".."))
        .ok_or_else(|| format!("plugin.json `{field}` is not a `./` path inside the plugin"))?;
    Ok(format!("{PLUGIN_ROOT}/{}", relative.trim_end_matches('/')))
}

fn check_plugin() -> Result<(), String> {
    let manifest = json_asset("plugins/dispatch/.codex-plugin/plugin.json")?;
    if manifest["name"] != "dispatch" {
        return Err("plugin.json does not name the plugin `dispatch`".into());
    }
    if manifest["version"] != VERSION {
        return Err(format!(
            "plugin.json has version {}, this dispatch is {VERSION}",
            manifest["version"]
        ));
    }
    let skills = plugin_path("skills", &manifest["skills"])?;
    let bundled: Vec<&Asset> = ASSETS
        .iter()
        .filter(|a| a.path.starts_with(&format!("{skills}/")))
        .collect();
    if bundled.is_empty() {
        return Err(format!(
            "plugin.json `skills` names {skills}, which holds no skill"
        ));
    }
    for copy in bundled {
        let original = copy
            .path
            .strip_prefix(&format!("{PLUGIN_ROOT}/"))
            .and_then(asset);
        if original.is_none_or(|o| o.content != copy.content) {
            return Err(format!(
                "{} differs from the skill under skills/",
                copy.path
            ));
        }
    }
    let mcp_path = plugin_path("mcpServers", &manifest["mcpServers"])?;
    let mcp = json_asset(&mcp_path)?;
    let server = &mcp["mcpServers"]["dispatch"];
    if server["command"] != "dispatch" || server["args"] != json!(["mcp"]) {
        return Err(format!("{mcp_path} does not run `dispatch mcp`"));
    }
    let marketplace = json_asset(".agents/plugins/marketplace.json")?;
    let listed = marketplace["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == "dispatch"))
        .ok_or("marketplace.json does not list the dispatch plugin")?;
    if listed["source"]["path"] != format!("./{PLUGIN_ROOT}") || listed["version"] != VERSION {
        return Err(format!(
            "marketplace.json lists the plugin at {} version {}, expected ./{PLUGIN_ROOT} version {VERSION}",
            listed["source"]["path"], listed["version"]
        ));
    }
    Ok(())
}

/// Checks every embedded asset; on success, a one-line summary of what is embedded.
pub fn check() -> Result<String, String> {
    let mut skills = Vec::new();
    for skill in ASSETS.iter().filter(|a| a.path.starts_with("skills/")) {
        skills.push(check_skill(skill).map_err(|err| format!("{} {err}", skill.path))?);
    }
    for copy in ASSETS
        .iter()
        .filter(|a| a.path.ends_with("/SKILL.md") && !a.path.starts_with("skills/"))
    {
        check_skill(copy).map_err(|err| format!("{} {err}", copy.path))?;
    }
    check_plugin()?;
    // Rendered for the surface that asked: `doctor` shows it to agents too.
    let writes = Hint::new("{0} writes them").run(&operations::ASSETS, json!({ "out": "<dir>" }));
    Ok(format!(
        "skills {} and the Codex plugin `dispatch` {VERSION} are built in; {writes}",
        skills.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_assets_are_sorted_and_pass_their_checks() {
        let paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        let summary = check().expect("the embedded assets are valid");
        assert!(summary.contains("dispatch, dm"), "{summary}");
    }

    #[test]
    fn front_matter_problems_are_named() {
        assert!(front_matter("# no front matter").is_err());
        assert!(front_matter("---\nname: x\n").is_err());
        assert!(front_matter("---\nname x\n---\n").is_err());
        let fields = front_matter("---\nname: x\ndescription: a b: c\n---\nbody").expect("parsed");
        assert_eq!(fields, vec![("name", "x"), ("description", "a b: c")]);
        let misplaced = Asset {
            path: "skills/other/SKILL.md",
            content: "---\nname: dm\ndescription: d\n---\n",
        };
        assert!(check_skill(&misplaced).is_err());
    }

    #[test]
    fn writing_refuses_to_overwrite_a_differing_file_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().to_str().expect("utf-8 path");
        let first = run(Some(out), false).expect("written");
        assert!(
            first
                .files
                .iter()
                .all(|f| f.status == AssetFileStatus::Written)
        );
        for asset in ASSETS {
            let written = std::fs::read_to_string(dir.path().join(asset.path)).expect("file");
            assert_eq!(written, asset.content, "{}", asset.path);
        }
        let again = run(Some(out), false).expect("idempotent");
        assert!(
            again
                .files
                .iter()
                .all(|f| f.status == AssetFileStatus::Unchanged)
        );

        let edited = dir.path().join("skills/dm/SKILL.md");
        std::fs::write(&edited, "edited").expect("edit");
        std::fs::remove_file(dir.path().join("skills/dispatch/SKILL.md")).expect("remove");
        let refused = run(Some(out), false).expect_err("a differing file is refused");
        assert_eq!(refused.code, dispatch_contract::ErrorCode::InvalidInput);
        assert!(
            refused.message.contains("skills/dm/SKILL.md"),
            "{}",
            refused.message
        );
        assert!(
            !dir.path().join("skills/dispatch/SKILL.md").exists(),
            "nothing is written when one file is refused"
        );
        let forced = run(Some(out), true).expect("forced");
        let status = |path: &str| {
            forced
                .files
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.status)
        };
        assert_eq!(
            status("skills/dm/SKILL.md"),
            Some(AssetFileStatus::Overwritten)
        );
        assert_eq!(
            status("skills/dispatch/SKILL.md"),
            Some(AssetFileStatus::Written)
        );
        assert_eq!(
            status("plugins/dispatch/.mcp.json"),
            Some(AssetFileStatus::Unchanged)
        );
        assert_eq!(
            std::fs::read_to_string(&edited).expect("file"),
            asset("skills/dm/SKILL.md").expect("embedded").content
        );
    }
}
