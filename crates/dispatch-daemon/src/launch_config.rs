//! The launch tables of config files: `[defaults]` and `[presets.NAME]` of the global
//! `config.toml` and of a repository's `.dispatch/config.toml`, and the top level of a launch
//! packet's `dispatch.toml`. Each table becomes a [`Layer`]: checked values of the known keys,
//! each with the file and line that set it. Unknown keys, wrong types, a permission profile
//! next to a sandbox or approval policy, and a repository file naming a file outside its
//! repository are `invalid_input` naming the file, the line and the key (ADR 0017).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dispatch_contract::{DispatchError, Hint, operations};
use serde_json::{Value, json};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Every launch setting a config layer may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Model,
    Effort,
    ServiceTier,
    Sandbox,
    ApprovalPolicy,
    PermissionProfile,
    BaseInstructions,
    DeveloperInstructions,
    Goal,
    Text,
    Worktree,
    TitlePrefix,
    Subscribe,
    OutputSchema,
}

/// What a key holds.
enum Kind {
    Text,
    OneOf(&'static [&'static str]),
    Bool,
    Events,
}

/// The events `subscribe` takes (`SubscriptionEvent` in the contract).
const EVENTS: &[&str] = &[
    "done",
    "completed",
    "failed",
    "idle",
    "approval",
    "activity",
];

impl Key {
    /// The keys as config files spell them (the `*_file` forms are read in [`Key::parse`]).
    const ALL: [Key; 13] = [
        Key::Model,
        Key::Effort,
        Key::ServiceTier,
        Key::Sandbox,
        Key::ApprovalPolicy,
        Key::PermissionProfile,
        Key::BaseInstructions,
        Key::DeveloperInstructions,
        Key::Goal,
        Key::Text,
        Key::Worktree,
        Key::TitlePrefix,
        Key::Subscribe,
    ];

    /// The key's name, as in config files and plans.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Model => "model",
            Key::Effort => "effort",
            Key::ServiceTier => "service_tier",
            Key::Sandbox => "sandbox",
            Key::ApprovalPolicy => "approval_policy",
            Key::PermissionProfile => "permission_profile",
            Key::BaseInstructions => "base_instructions",
            Key::DeveloperInstructions => "developer_instructions",
            Key::Goal => "goal",
            Key::Text => "text",
            Key::Worktree => "worktree",
            Key::TitlePrefix => "title_prefix",
            Key::Subscribe => "subscribe",
            Key::OutputSchema => "output_schema",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Key::Sandbox => Kind::OneOf(&["read-only", "workspace-write", "danger-full-access"]),
            Key::ApprovalPolicy => Kind::OneOf(&["untrusted", "on-request", "never"]),
            Key::Worktree => Kind::Bool,
            Key::Subscribe => Kind::Events,
            _ => Kind::Text,
        }
    }

    /// The key a config file's word names, and whether it is the `*_file` form.
    fn parse(word: &str) -> Option<(Key, bool)> {
        match word {
            "base_file" => Some((Key::BaseInstructions, true)),
            "developer_file" => Some((Key::DeveloperInstructions, true)),
            _ => Key::ALL
                .into_iter()
                .find(|key| key.name() == word)
                .map(|key| (key, false)),
        }
    }
}

/// Where a layer's file sits, which decides what it may do.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// `DISPATCH_HOME/config.toml`: the operator's own file.
    Global,
    /// A repository's `.dispatch/config.toml`: files it names must stay inside `root`.
    Repo {
        /// The repository (the directory holding `.git`, else the one holding `.dispatch`).
        root: PathBuf,
    },
    /// A launch packet's `dispatch.toml`, read by the CLI: it names no files.
    Packet,
}

/// A value a layer sets, and where.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The value: a string, a bool or an array of strings.
    pub value: Value,
    /// For `*_file` keys: the file that holds the text (read later).
    pub file: Option<PathBuf>,
    /// `path:line` of the key, for errors.
    pub at: String,
}

/// One layer: what it sets, and its label (`global:<file>`, `preset:<name>@<file>`, ...).
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    /// The source label.
    pub source: String,
    /// The keys it sets.
    pub values: BTreeMap<Key, Setting>,
}

/// The launch tables of one config file.
#[derive(Debug, Clone, Default)]
pub(crate) struct LaunchTables {
    /// `[defaults]`.
    pub defaults: Option<Layer>,
    /// `[presets.NAME]`, by name.
    pub presets: BTreeMap<String, Layer>,
}

/// Parses `text` (the file `shown`) as TOML; a syntax error names the file and line.
fn parse_toml<'a>(
    shown: &str,
    text: &'a str,
    lines: &Lines<'_>,
) -> Result<Spanned<DeTable<'a>>, DispatchError> {
    DeTable::parse(text).map_err(|err| {
        let line = err.span().map_or(1, |span| lines.line(span.start));
        bad(
            &format!("{shown}:{line}"),
            format!("not valid TOML: {}", err.message()),
            "fix the file",
        )
    })
}

/// Line numbers of a text, 1-based, from byte offsets.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn line(&self, offset: usize) -> usize {
        self.0
            .get(..offset.min(self.0.len()))
            .map_or(1, |before| before.matches('\n').count() + 1)
    }
}

/// The error for a bad config entry: the file and line in the message, the fix in the hint.
pub(crate) fn bad(at: &str, what: impl std::fmt::Display, fix: &str) -> DispatchError {
    DispatchError::invalid_input(format!("{at}: {what}")).with_hint(
        Hint::new(format!("{fix}; {{0}} shows what the config files set"))
            .run(&operations::CONFIG_SHOW, json!({})),
    )
}

const KEYS_FIX: &str = "the keys are model, effort, service_tier, sandbox, approval_policy, \
                        permission_profile, base_instructions, base_file, \
                        developer_instructions, developer_file, goal, text, worktree, \
                        title_prefix and subscribe";

/// Parses the launch tables of a global or repository config file `path` (its text `text`).
/// A repository file may only have `[defaults]` and `[presets]`; in the global one the other
/// tables are the daemon's (`config.toml` checks them).
pub(crate) fn parse_config(
    path: &Path,
    text: &str,
    scope: &Scope,
) -> Result<LaunchTables, DispatchError> {
    let lines = Lines(text);
    let shown = path.display().to_string();
    let doc = parse_toml(&shown, text, &lines)?;
    let label = match scope {
        Scope::Global => format!("global:{shown}"),
        _ => format!("repo:{shown}"),
    };
    let mut tables = LaunchTables::default();
    for (name, value) in doc.get_ref().iter() {
        let at = format!("{shown}:{}", lines.line(name.span().start));
        match (name.get_ref().as_ref(), scope) {
            ("defaults", _) => {
                let table = as_table(value, &at, "defaults")?;
                tables.defaults = Some(layer(table, &label, path, &lines, scope)?);
            }
            ("presets", _) => {
                let presets = as_table(value, &at, "presets")?;
                for (preset, body) in presets.iter() {
                    let preset_name = preset.get_ref().to_string();
                    let at = format!("{shown}:{}", lines.line(preset.span().start));
                    if preset_name.is_empty()
                        || !preset_name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    {
                        return Err(bad(
                            &at,
                            format!("`{preset_name}` is not a preset name"),
                            "name presets with letters, digits, `_`, `.` and `-`",
                        ));
                    }
                    let table = as_table(body, &at, &format!("presets.{preset_name}"))?;
                    let source = format!("preset:{preset_name}@{shown}");
                    tables
                        .presets
                        .insert(preset_name, layer(table, &source, path, &lines, scope)?);
                }
            }
            (other, Scope::Repo { .. }) => {
                let fix = if other == "policy" {
                    "`[policy]` belongs in the global config.toml of DISPATCH_HOME only: a \
                     repository cannot change what dispatch allows; remove it here"
                } else {
                    "a repository config has `[defaults]` and `[presets.NAME]` tables only"
                };
                return Err(bad(
                    &at,
                    format!("`{other}` is not allowed in a repository config"),
                    fix,
                ));
            }
            _ => {}
        }
    }
    Ok(tables)
}

/// Parses a launch packet's `dispatch.toml` (`path` only names it): its top-level keys are
/// one layer.
pub(crate) fn parse_packet(path: &Path, text: &str, source: &str) -> Result<Layer, DispatchError> {
    let lines = Lines(text);
    let shown = path.display().to_string();
    let doc = parse_toml(&shown, text, &lines)?;
    layer(doc.get_ref(), source, path, &lines, &Scope::Packet)
}

fn as_table<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    at: &str,
    name: &str,
) -> Result<&'a DeTable<'i>, DispatchError> {
    value.get_ref().as_table().ok_or_else(|| {
        bad(
            at,
            format!("`{name}` must be a table"),
            &format!("write it as `[{name}]`"),
        )
    })
}

fn layer(
    table: &DeTable<'_>,
    source: &str,
    path: &Path,
    lines: &Lines<'_>,
    scope: &Scope,
) -> Result<Layer, DispatchError> {
    let shown = path.display();
    let mut values: BTreeMap<Key, Setting> = BTreeMap::new();
    for (word, value) in table.iter() {
        let word = word_of(word);
        let at = format!("{shown}:{}", lines.line(word.1));
        let Some((key, is_file)) = Key::parse(word.0) else {
            return Err(bad(
                &at,
                format!("unknown key `{}`", word.0),
                &format!("remove or rename it: {KEYS_FIX}"),
            ));
        };
        if values.contains_key(&key) {
            return Err(bad(
                &at,
                format!("`{}` is set twice (as text and as a file)", key.name()),
                &format!("keep either `{}` or its `*_file` form", key.name()),
            ));
        }
        let setting = if is_file {
            let name = value.get_ref().as_str().filter(|s| !s.is_empty());
            let Some(name) = name else {
                return Err(bad(
                    &at,
                    format!("`{}` must be a file path", word.0),
                    "give the path as a string",
                ));
            };
            Setting {
                value: Value::Null,
                file: Some(file_path(path, name, scope, &at, word.0)?),
                at,
            }
        } else {
            Setting {
                value: checked(key, value.get_ref(), &at)?,
                file: None,
                at,
            }
        };
        values.insert(key, setting);
    }
    if let Some(profile) = values.get(&Key::PermissionProfile) {
        for other in [Key::Sandbox, Key::ApprovalPolicy] {
            if values.contains_key(&other) {
                return Err(bad(
                    &profile.at,
                    format!(
                        "`permission_profile` and `{}` are both set: a permission profile sets \
                         both the sandbox and the approvals",
                        other.name()
                    ),
                    "keep either `permission_profile` or `sandbox`/`approval_policy` in one table",
                ));
            }
        }
    }
    Ok(Layer {
        source: source.to_owned(),
        values,
    })
}

fn word_of<'a>(word: &'a Spanned<std::borrow::Cow<'_, str>>) -> (&'a str, usize) {
    (word.get_ref().as_ref(), word.span().start)
}

/// A setting's value, checked against what its key takes.
fn checked(key: Key, value: &DeValue<'_>, at: &str) -> Result<Value, DispatchError> {
    let name = key.name();
    match key.kind() {
        Kind::Text => match value.as_str() {
            Some(text) if !text.trim().is_empty() && !text.contains('\0') => Ok(json!(text)),
            _ => Err(bad(
                at,
                format!("`{name}` must be a non-empty string"),
                &format!("write it as `{name} = \"...\"`"),
            )),
        },
        Kind::OneOf(allowed) => match value.as_str() {
            Some(text) if allowed.contains(&text) => Ok(json!(text)),
            _ => Err(bad(
                at,
                format!("`{name}` must be one of {}", allowed.join(", ")),
                &format!("write it as `{name} = \"{}\"`", allowed[0]),
            )),
        },
        Kind::Bool => value.as_bool().map(Value::Bool).ok_or_else(|| {
            bad(
                at,
                format!("`{name}` must be true or false"),
                &format!("write it as `{name} = true`"),
            )
        }),
        Kind::Events => {
            let events: Option<Vec<&str>> = value
                .as_array()
                .map(|items| items.iter().map(|i| i.get_ref().as_str()).collect())
                .and_then(|items: Vec<Option<&str>>| items.into_iter().collect());
            match events {
                Some(events) if events.iter().all(|e| EVENTS.contains(e)) => Ok(json!(events)),
                _ => Err(bad(
                    at,
                    format!("`{name}` must be a list of events: {}", EVENTS.join(", ")),
                    &format!("write it as `{name} = [\"done\"]`"),
                )),
            }
        }
    }
}

/// The absolute path a `*_file` key names, relative to the file that names it. A repository
/// file's paths must stay inside its repository, symbolic links resolved: a model that can
/// write the repository must not make dispatch read anything else (ADR 0017).
fn file_path(
    config: &Path,
    name: &str,
    scope: &Scope,
    at: &str,
    key: &str,
) -> Result<PathBuf, DispatchError> {
    let base = match scope {
        Scope::Packet => {
            return Err(bad(
                at,
                format!("`{key}` is not taken in a launch packet"),
                "put the text in the packet's developer.md or base.md instead",
            ));
        }
        // `.dispatch/config.toml` names files relative to its own directory.
        _ => config.parent().unwrap_or(Path::new("/")),
    };
    let joined = base.join(name);
    let Scope::Repo { root } = scope else {
        return Ok(joined);
    };
    let resolved = std::fs::canonicalize(&joined).map_err(|err| {
        bad(
            at,
            format!("`{key}`: cannot read {}: {err}", joined.display()),
            "name a file that exists, relative to the config file",
        )
    })?;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
    if !resolved.starts_with(&root) {
        return Err(bad(
            at,
            format!(
                "`{key}` names {}, outside the repository {}",
                resolved.display(),
                root.display()
            ),
            "a repository config may only name files inside its repository (no `..`, no \
             symbolic link out of it); move the file into the repository",
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, PathBuf, Scope) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(".dispatch")).expect("mkdir");
        let path = dir.path().join(".dispatch/config.toml");
        let scope = Scope::Repo {
            root: dir.path().to_path_buf(),
        };
        (dir, path, scope)
    }

    #[test]
    fn defaults_and_presets_are_read_with_their_sources() {
        let (_dir, path, scope) = repo();
        let text = "[defaults]\nmodel = \"m\"\nworktree = true\n\n[presets.review]\neffort = \"high\"\nsubscribe = [\"done\"]\n";
        let tables = parse_config(&path, text, &scope).expect("parsed");
        let defaults = tables.defaults.expect("defaults");
        assert_eq!(defaults.source, format!("repo:{}", path.display()));
        assert_eq!(defaults.values[&Key::Model].value, json!("m"));
        assert_eq!(defaults.values[&Key::Worktree].value, json!(true));
        let review = &tables.presets["review"];
        assert_eq!(review.source, format!("preset:review@{}", path.display()));
        assert_eq!(review.values[&Key::Subscribe].value, json!(["done"]));
    }

    #[test]
    fn an_unknown_key_names_the_file_line_and_key() {
        let (_dir, path, scope) = repo();
        let err = parse_config(&path, "[defaults]\nmodel = \"m\"\nmodle = \"x\"\n", &scope)
            .expect_err("unknown key");
        assert_eq!(err.code, dispatch_contract::ErrorCode::InvalidInput);
        assert!(
            err.message
                .contains(&format!("{}:3: unknown key `modle`", path.display())),
            "{}",
            err.message
        );
        assert!(err.hint.to_string().contains("model"), "{}", err.hint);
    }

    #[test]
    fn policy_is_refused_in_a_repository_and_ignored_in_the_global_file() {
        let (_dir, path, scope) = repo();
        let err = parse_config(&path, "[policy]\nallow_attached_writes = true\n", &scope)
            .expect_err("policy");
        assert!(err.message.contains(":1: `policy`"), "{}", err.message);
        assert!(err.hint.to_string().contains("global"), "{}", err.hint);
        parse_config(
            &path,
            "[policy]\nallow_attached_writes = true\n",
            &Scope::Global,
        )
        .expect("the global file has its policy");
    }

    #[test]
    fn a_permission_profile_next_to_a_sandbox_is_refused() {
        let (_dir, path, scope) = repo();
        let text = "[presets.a]\nsandbox = \"read-only\"\npermission_profile = \":workspace\"\n";
        let err = parse_config(&path, text, &scope).expect_err("both");
        assert!(
            err.message
                .contains(":3: `permission_profile` and `sandbox`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let (_dir, path, scope) = repo();
        for (text, key) in [
            ("[defaults]\nsandbox = \"open\"\n", "sandbox"),
            ("[defaults]\nworktree = \"yes\"\n", "worktree"),
            ("[defaults]\nsubscribe = [\"sometimes\"]\n", "subscribe"),
            ("[defaults]\nmodel = \"\"\n", "model"),
            ("[defaults]\nmodel = \n", "TOML"),
        ] {
            let err = parse_config(&path, text, &scope).expect_err(text);
            assert!(err.message.contains(key), "{text}: {}", err.message);
            assert!(err.message.contains(":2"), "{text}: {}", err.message);
        }
    }

    #[test]
    fn a_repository_file_cannot_name_a_file_outside_the_repository() {
        let (dir, path, scope) = repo();
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret"), "key").expect("write");
        std::fs::write(dir.path().join(".dispatch/dev.md"), "be brief").expect("write");
        let ok = parse_config(&path, "[defaults]\ndeveloper_file = \"dev.md\"\n", &scope)
            .expect("inside");
        let file = ok.defaults.expect("defaults").values[&Key::DeveloperInstructions]
            .file
            .clone()
            .expect("a file");
        assert!(file.ends_with(".dispatch/dev.md"), "{}", file.display());

        let escape = format!(
            "[defaults]\ndeveloper_file = \"../../{}/secret\"\n",
            outside
                .path()
                .file_name()
                .expect("a name")
                .to_string_lossy()
        );
        let err = parse_config(&path, &escape, &scope).expect_err("dot-dot");
        assert!(
            err.message.contains("outside the repository"),
            "{}",
            err.message
        );

        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link"))
            .expect("symlink");
        let err = parse_config(&path, "[defaults]\nbase_file = \"../link\"\n", &scope)
            .expect_err("a link out");
        assert!(
            err.message.contains("outside the repository"),
            "{}",
            err.message
        );

        let err = parse_config(&path, "[defaults]\nbase_file = \"missing.md\"\n", &scope)
            .expect_err("missing");
        assert!(
            err.message.contains("`base_file`: cannot read"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_packet_takes_top_level_keys_but_no_files() {
        let path = Path::new("/p/dispatch.toml");
        let layer = parse_packet(path, "model = \"m\"\n", "packet:/p").expect("packet");
        assert_eq!(layer.values[&Key::Model].value, json!("m"));
        let err = parse_packet(path, "developer_file = \"x.md\"\n", "packet:/p").expect_err("file");
        assert!(
            err.message.contains("/p/dispatch.toml:1"),
            "{}",
            err.message
        );
    }
}
