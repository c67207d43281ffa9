//! Launch settings: the layers `new` and `config show` resolve, lowest first: built-in
//! defaults, the global `config.toml` `[defaults]`, the nearest repository
//! `.dispatch/config.toml` `[defaults]`, the presets in the order asked (a repository preset
//! extends the global one of the same name), a launch packet, then the caller's own arguments.
//! The daemon reads the config files itself (never `dispatch mcp`); the CLI reads packets and
//! `*_file` arguments and sends their text. See ADR 0017.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dispatch_contract::types::{
    ConfigShowInput, ConfigShowOutput, LaunchFile, LaunchPacket, LaunchSetting,
};
use dispatch_contract::{DispatchError, Handle};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::launch_config::{self, Key, Layer, Scope, Setting, bad};
use crate::service::Service;

/// The most a config file or a file it names may hold.
const MAX_FILE: u64 = 1024 * 1024;

/// What to resolve: the lane's directory, the presets asked for, a packet, and the caller's
/// own arguments (the `flag` layer).
pub(crate) struct LaunchRequest<'a> {
    /// The lane's directory (absolute), if known.
    pub cwd: Option<&'a str>,
    /// Presets, in order.
    pub presets: Vec<String>,
    /// The launch packet the CLI read.
    pub packet: Option<&'a LaunchPacket>,
    /// The caller's arguments.
    pub flags: Layer,
}

/// A resolved setting and the layer it came from.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Its value (text read from a file included).
    pub value: Value,
    /// The layer's label.
    pub source: String,
}

/// The effective launch settings.
#[derive(Debug, Default)]
pub(crate) struct Launch {
    /// Every key some layer set.
    pub values: BTreeMap<Key, Resolved>,
    /// The files read (config `*_file` keys and the packet's).
    pub files: Vec<LaunchFile>,
    /// The presets the config files define, `name@file`.
    pub presets: Vec<String>,
    /// What was skipped or ignored.
    pub warnings: Vec<String>,
    /// The repository the lane is in (the directory holding `.git`), if any.
    pub repo_root: Option<PathBuf>,
}

impl Launch {
    /// A text setting.
    pub(crate) fn text(&self, key: Key) -> Option<String> {
        self.values
            .get(&key)
            .and_then(|r| r.value.as_str())
            .map(str::to_owned)
    }

    /// A boolean setting (false when unset).
    pub(crate) fn flag(&self, key: Key) -> bool {
        self.values
            .get(&key)
            .and_then(|r| r.value.as_bool())
            .unwrap_or(false)
    }

    /// The settings as a plan shows them: long texts shortened.
    pub(crate) fn settings(&self) -> Vec<LaunchSetting> {
        self.values
            .iter()
            .map(|(key, resolved)| LaunchSetting {
                key: key.name().to_owned(),
                value: shortened(&resolved.value),
                source: resolved.source.clone(),
            })
            .collect()
    }

    /// The lane's title: `title_prefix` (with `{repo}` and `{dir}`) and `name`.
    pub(crate) fn title(&self, name: &str, cwd: Option<&str>) -> Result<String, DispatchError> {
        let Some(prefix) = self.values.get(&Key::TitlePrefix) else {
            return Ok(name.to_owned());
        };
        let base = |path: Option<&Path>| {
            path.and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let dir = base(cwd.map(Path::new));
        let repo = match &self.repo_root {
            Some(root) => base(Some(root)),
            None => dir.clone(),
        };
        let title = format!(
            "{}{name}",
            prefix
                .value
                .as_str()
                .unwrap_or_default()
                .replace("{repo}", &repo)
                .replace("{dir}", &dir)
        );
        if title.chars().count() > 256 || title.chars().any(char::is_control) {
            return Err(DispatchError::invalid_input(format!(
                "`title_prefix` from {} makes a title longer than 256 characters or with a \
                 control character",
                prefix.source
            ))
            .with_hint("shorten the prefix or the name"));
        }
        Ok(title)
    }
}

fn shortened(value: &Value) -> Value {
    match value.as_str() {
        Some(text) if text.chars().count() > 200 => {
            let head: String = text.chars().take(200).collect();
            json!(format!("{head}… ({} characters)", text.chars().count()))
        }
        _ => value.clone(),
    }
}

/// The nearest `.dispatch/config.toml` at or above `cwd`, stopping at the repository root
/// (the directory holding `.git`) or the home directory; and that root.
fn find_repo_config(cwd: &Path) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut found = None;
    let mut dir = Some(cwd);
    while let Some(here) = dir {
        let candidate = here.join(".dispatch").join("config.toml");
        if found.is_none() && candidate.is_file() {
            found = Some(candidate);
        }
        if here.join(".git").exists() {
            return (found, Some(here.to_path_buf()));
        }
        if home.as_deref() == Some(here) {
            break;
        }
        dir = here.parent();
    }
    (found, None)
}

/// Reads a config file or a file one names: at most [`MAX_FILE`] bytes of UTF-8.
fn read_text(file: std::fs::File, path: &Path) -> Result<String, String> {
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    Ok(text)
}

fn hashed(path: &Path, text: &str, key: Key) -> Result<LaunchFile, DispatchError> {
    let sha = Sha256::digest(text.as_bytes());
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::from_value(json!({
        "path": path.display().to_string(),
        "size": text.len(),
        "sha256": hex,
        "key": key.name(),
    }))
    .map_err(|err| DispatchError::internal(format!("describing {}: {err}", path.display())))
}

impl Service {
    /// Resolves the launch layers for `request`, with this daemon's global config file.
    pub(crate) fn resolve_launch(
        &self,
        request: LaunchRequest<'_>,
    ) -> Result<Launch, DispatchError> {
        resolve(self.global_config(), request)
    }
}

/// The global config file's launch tables, read without following a symbolic link; none
/// when there is no file.
fn global_tables(
    path: Option<&Path>,
) -> Result<Option<(PathBuf, launch_config::LaunchTables)>, DispatchError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let file = match dispatch_home::open_private(path, dispatch_home::Access::Read) {
        Ok(file) => file,
        Err(dispatch_home::HomeError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(err) => return Err(DispatchError::from(err)),
    };
    let text = read_text(file, path)
        .map_err(|err| bad(&path.display().to_string(), err, "fix the file"))?;
    let tables = launch_config::parse_config(path, &text, &Scope::Global)?;
    Ok(Some((path.to_path_buf(), tables)))
}

/// Resolves the launch layers for `request`, `global` being the global config file.
pub(crate) fn resolve(
    global: Option<&Path>,
    request: LaunchRequest<'_>,
) -> Result<Launch, DispatchError> {
    let global = global_tables(global)?;
    let (repo_path, repo_root) = match request.cwd {
        Some(cwd) => find_repo_config(Path::new(cwd)),
        None => (None, None),
    };
    let repo = match &repo_path {
        Some(path) => Some(read_repo_config(path, repo_root.as_deref())?),
        None => None,
    };
    let mut layers: Vec<Layer> = vec![Layer {
        source: "default".to_owned(),
        values: BTreeMap::from([(
            Key::Worktree,
            Setting {
                value: Value::Bool(false),
                file: None,
                at: "default".to_owned(),
            },
        )]),
    }];
    let mut launch = Launch {
        repo_root: repo_root.clone(),
        ..Launch::default()
    };
    for (path, tables) in global.iter().chain(repo.iter()) {
        layers.extend(tables.defaults.clone());
        launch.presets.extend(
            tables
                .presets
                .keys()
                .map(|name| format!("{name}@{}", path.display())),
        );
    }
    for name in &request.presets {
        let mut any = false;
        for (_, tables) in global.iter().chain(repo.iter()) {
            if let Some(preset) = tables.presets.get(name) {
                layers.push(preset.clone());
                any = true;
            }
        }
        if !any {
            let files: Vec<String> = global
                .iter()
                .chain(repo.iter())
                .map(|(path, _)| path.display().to_string())
                .collect();
            let looked = if files.is_empty() {
                "no config file applies here".to_owned()
            } else {
                format!("not in {}", files.join(" or "))
            };
            return Err(bad(
                &format!("preset `{name}`"),
                format!("it is not defined ({looked})"),
                &format!(
                    "define `[presets.{name}]` in the repository's .dispatch/config.toml \
                         or the global config.toml, or leave the preset out"
                ),
            ));
        }
    }
    if let Some(packet) = request.packet {
        layers.push(packet_layer(packet, &mut launch)?);
    }
    layers.push(request.flags);
    for layer in layers {
        merge(&mut launch, layer)?;
    }
    // The CLI read every file of the packet, whichever of its settings won.
    if let Some(packet) = request.packet {
        launch.files.extend(packet.files.iter().cloned());
    }
    Ok(launch)
}

fn read_repo_config(
    path: &Path,
    root: Option<&Path>,
) -> Result<(PathBuf, launch_config::LaunchTables), DispatchError> {
    let shown = path.display().to_string();
    // The repository is the directory holding `.git`; without one, the directory holding
    // `.dispatch`.
    let root = match root {
        Some(root) => root.to_path_buf(),
        None => path
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
    };
    let real_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    let real = std::fs::canonicalize(path)
        .map_err(|err| bad(&shown, format!("cannot read it: {err}"), "fix the file"))?;
    if !real.starts_with(&real_root) {
        return Err(bad(
            &shown,
            format!("it is a link to {}, outside the repository", real.display()),
            "make .dispatch/config.toml a regular file inside the repository",
        ));
    }
    let file = std::fs::File::open(&real)
        .map_err(|err| bad(&shown, format!("cannot read it: {err}"), "fix the file"))?;
    let text = read_text(file, path).map_err(|err| bad(&shown, err, "fix the file"))?;
    let tables = launch_config::parse_config(path, &text, &Scope::Repo { root })?;
    Ok((path.to_path_buf(), tables))
}

/// The packet as one layer: its `dispatch.toml`, then its files.
fn packet_layer(packet: &LaunchPacket, launch: &mut Launch) -> Result<Layer, DispatchError> {
    let dir = packet.dir.to_string();
    let source = format!("packet:{dir}");
    let mut layer = match &packet.settings {
        Some(text) => {
            launch_config::parse_packet(&Path::new(&dir).join("dispatch.toml"), text, &source)?
        }
        None => Layer {
            source: source.clone(),
            values: BTreeMap::new(),
        },
    };
    let texts = [
        (Key::Goal, packet.goal.as_deref(), "goal.md"),
        (Key::Text, packet.text.as_deref(), "prompt.md"),
        (
            Key::DeveloperInstructions,
            packet.developer_instructions.as_deref(),
            "developer.md",
        ),
        (
            Key::BaseInstructions,
            packet.base_instructions.as_deref(),
            "base.md",
        ),
    ];
    for (key, text, file) in texts {
        let Some(text) = text.map(String::as_str) else {
            continue;
        };
        if text.trim().is_empty() {
            return Err(bad(
                &format!("{dir}/{file}"),
                "the file is empty",
                "write the text or remove the file",
            ));
        }
        layer.values.insert(
            key,
            Setting {
                value: json!(text),
                file: None,
                at: format!("{dir}/{file}"),
            },
        );
    }
    if let Some(schema) = &packet.output_schema_json {
        let at = format!("{dir}/output.schema.json");
        layer.values.insert(
            Key::OutputSchema,
            Setting {
                value: output_schema(schema, &at)?,
                file: None,
                at,
            },
        );
    }
    launch.warnings.extend(packet.ignored.iter().map(|name| {
        format!(
            "packet {dir}: `{}` is not a packet file and was not read",
            **name
        )
    }));
    Ok(layer)
}

/// An output schema: JSON text holding an object.
pub(crate) fn output_schema(text: &str, at: &str) -> Result<Value, DispatchError> {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(bad(
            at,
            "the output schema is not a JSON object",
            "give a JSON Schema object, e.g. {\"type\":\"object\"}",
        )),
        Err(err) => Err(bad(
            at,
            format!("the output schema is not JSON: {err}"),
            "give a JSON Schema object, e.g. {\"type\":\"object\"}",
        )),
    }
}

/// Puts `layer` over what `launch` holds: its keys win; a permission profile replaces a
/// lower sandbox and approval policy, and either of those a lower profile. `*_file` keys are
/// read here: a file whose setting a higher layer overrides is still read (a missing one is
/// an error wherever it is named) but not listed among the files the launch uses.
fn merge(launch: &mut Launch, layer: Layer) -> Result<(), DispatchError> {
    for (key, setting) in layer.values {
        match key {
            Key::PermissionProfile => {
                launch.values.remove(&Key::Sandbox);
                launch.values.remove(&Key::ApprovalPolicy);
            }
            Key::Sandbox | Key::ApprovalPolicy => {
                launch.values.remove(&Key::PermissionProfile);
            }
            _ => {}
        }
        let value = match &setting.file {
            Some(path) => {
                let text = std::fs::File::open(path)
                    .map_err(|err| format!("cannot read {}: {err}", path.display()))
                    .and_then(|file| read_text(file, path))
                    .map_err(|err| {
                        bad(
                            &setting.at,
                            format!("`{}` file: {err}", key.name()),
                            "name a readable UTF-8 file, relative to the config file",
                        )
                    })?;
                if text.trim().is_empty() {
                    return Err(bad(
                        &setting.at,
                        format!("`{}` file {} is empty", key.name(), path.display()),
                        "write the text or remove the key",
                    ));
                }
                launch.files.retain(|f| f.key.as_str() != key.name());
                launch.files.push(hashed(path, &text, key)?);
                json!(text)
            }
            None => {
                if matches!(key, Key::BaseInstructions | Key::DeveloperInstructions) {
                    launch.files.retain(|f| f.key.as_str() != key.name());
                }
                setting.value
            }
        };
        launch.values.insert(
            key,
            Resolved {
                value,
                source: layer.source.clone(),
            },
        );
    }
    Ok(())
}

/// `config show`: the layers for a directory, resolved as `new` would, without arguments.
impl Handle<ConfigShowInput> for Service {
    async fn handle(&self, input: ConfigShowInput) -> Result<ConfigShowOutput, DispatchError> {
        let cwd = input
            .cwd
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "/".to_owned());
        let path = Path::new(&cwd);
        if !path.is_absolute() || !path.is_dir() {
            return Err(DispatchError::invalid_input(format!(
                "`cwd`: {cwd} is not an existing directory (an absolute path)"
            )));
        }
        let launch = self.resolve_launch(LaunchRequest {
            cwd: Some(&cwd),
            presets: input.preset.iter().map(|p| p.to_string()).collect(),
            packet: None,
            flags: Layer::default(),
        })?;
        Ok(ConfigShowOutput {
            cwd,
            settings: launch.settings(),
            files: launch.files,
            presets: launch.presets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `.git`, a `.dispatch/config.toml`, a subdirectory to work in, and a
    /// global config file beside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        repo: PathBuf,
        global: PathBuf,
    }

    fn fixture(global: &str, repo_config: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("proj");
        std::fs::create_dir_all(repo.join(".git")).expect("git");
        std::fs::create_dir_all(repo.join(".dispatch")).expect("dispatch");
        std::fs::create_dir_all(repo.join("src/deep")).expect("src");
        std::fs::write(repo.join(".dispatch/config.toml"), repo_config).expect("repo config");
        let global_path = dir.path().join("config.toml");
        std::fs::write(&global_path, global).expect("global config");
        Fixture {
            _dir: dir,
            repo,
            global: global_path,
        }
    }

    fn request<'a>(cwd: &'a str, presets: &[&str], flags: Layer) -> LaunchRequest<'a> {
        LaunchRequest {
            cwd: Some(cwd),
            presets: presets.iter().map(|p| (*p).to_owned()).collect(),
            packet: None,
            flags,
        }
    }

    fn source_of(launch: &Launch, key: Key) -> (Value, String) {
        let resolved = &launch.values[&key];
        (resolved.value.clone(), resolved.source.clone())
    }

    #[test]
    fn layers_apply_lowest_first_and_each_setting_names_its_source() {
        let f = fixture(
            "[defaults]\nmodel = \"global-model\"\neffort = \"low\"\n[presets.a]\nsandbox = \"read-only\"\ntitle_prefix = \"g \"\n",
            "[defaults]\neffort = \"medium\"\n[presets.a]\ntitle_prefix = \"[{repo}/{dir}] \"\n[presets.b]\npermission_profile = \":workspace\"\ngoal = \"ship it\"\n",
        );
        let cwd = f.repo.join("src/deep").display().to_string();
        let flags = Layer {
            source: "flag".to_owned(),
            values: BTreeMap::from([(
                Key::Goal,
                Setting {
                    value: json!("flag goal"),
                    file: None,
                    at: "arguments".to_owned(),
                },
            )]),
        };
        let launch = resolve(Some(&f.global), request(&cwd, &["a", "b"], flags)).expect("resolved");
        let global = format!("global:{}", f.global.display());
        let repo_file = f.repo.join(".dispatch/config.toml").display().to_string();
        assert_eq!(
            source_of(&launch, Key::Model),
            (json!("global-model"), global)
        );
        assert_eq!(
            source_of(&launch, Key::Effort),
            (json!("medium"), format!("repo:{repo_file}"))
        );
        // The repository's preset `a` extends the global one of the same name.
        assert_eq!(
            source_of(&launch, Key::TitlePrefix),
            (json!("[{repo}/{dir}] "), format!("preset:a@{repo_file}"))
        );
        // `b`'s permission profile replaces `a`'s sandbox.
        assert!(!launch.values.contains_key(&Key::Sandbox));
        assert_eq!(
            source_of(&launch, Key::PermissionProfile).1,
            format!("preset:b@{repo_file}")
        );
        assert_eq!(
            source_of(&launch, Key::Goal),
            (json!("flag goal"), "flag".to_owned())
        );
        assert_eq!(
            source_of(&launch, Key::Worktree),
            (json!(false), "default".to_owned())
        );
        assert_eq!(
            launch.title("x", Some(&cwd)).expect("title"),
            "[proj/deep] x"
        );
        assert_eq!(launch.presets.len(), 3, "{:?}", launch.presets);
    }

    #[test]
    fn a_preset_nobody_defines_is_refused_naming_the_files() {
        let f = fixture("", "[presets.a]\nmodel = \"m\"\n");
        let cwd = f.repo.display().to_string();
        let err = resolve(Some(&f.global), request(&cwd, &["nope"], Layer::default()))
            .expect_err("unknown preset");
        assert_eq!(err.code, dispatch_contract::ErrorCode::InvalidInput);
        assert!(err.message.contains("preset `nope`"), "{}", err.message);
        assert!(
            err.message.contains(".dispatch/config.toml"),
            "{}",
            err.message
        );
        assert!(
            err.hint.to_string().contains("[presets.nope]"),
            "{}",
            err.hint
        );
    }

    #[test]
    fn the_search_stops_at_the_repository_root() {
        let f = fixture("", "[defaults]\nmodel = \"m\"\n");
        // A config above the repository is not the repository's.
        let outer = f.repo.parent().expect("parent");
        std::fs::create_dir_all(outer.join(".dispatch")).expect("mkdir");
        std::fs::write(
            outer.join(".dispatch/config.toml"),
            "[defaults]\nmodel = \"outer\"\n",
        )
        .expect("write");
        std::fs::remove_file(f.repo.join(".dispatch/config.toml")).expect("rm");
        let cwd = f.repo.join("src").display().to_string();
        let launch = resolve(None, request(&cwd, &[], Layer::default())).expect("resolved");
        assert!(
            !launch.values.contains_key(&Key::Model),
            "{:?}",
            launch.values
        );
    }

    #[test]
    fn files_are_read_relative_to_their_config_and_hashed() {
        let f = fixture("", "[defaults]\ndeveloper_file = \"dev.md\"\n");
        std::fs::write(f.repo.join(".dispatch/dev.md"), "be brief").expect("write");
        let cwd = f.repo.display().to_string();
        let launch = resolve(None, request(&cwd, &[], Layer::default())).expect("resolved");
        assert_eq!(
            launch.text(Key::DeveloperInstructions).as_deref(),
            Some("be brief")
        );
        assert_eq!(launch.files.len(), 1);
        assert_eq!(launch.files[0].size, 8);
        let sha: String = Sha256::digest(b"be brief")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(launch.files[0].sha256.as_str(), sha);
        assert_eq!(launch.files[0].sha256.len(), 64);
        // A config whose file is a link out of the repository is refused.
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("c.toml"), "[defaults]\nmodel = \"m\"\n").expect("w");
        std::fs::remove_file(f.repo.join(".dispatch/config.toml")).expect("rm");
        std::os::unix::fs::symlink(
            outside.path().join("c.toml"),
            f.repo.join(".dispatch/config.toml"),
        )
        .expect("symlink");
        let err = resolve(None, request(&cwd, &[], Layer::default())).expect_err("a link out");
        assert!(
            err.message.contains("outside the repository"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_global_file_is_not_followed_through_a_link() {
        let f = fixture("[defaults]\nmodel = \"m\"\n", "");
        let link = f.repo.join("linked.toml");
        std::os::unix::fs::symlink(&f.global, &link).expect("symlink");
        let cwd = f.repo.display().to_string();
        let err = resolve(Some(&link), request(&cwd, &[], Layer::default())).expect_err("a link");
        assert_eq!(
            err.code,
            dispatch_contract::ErrorCode::PermissionDenied,
            "{}",
            err.message
        );
    }
}
