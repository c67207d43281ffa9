//! The contract as authored: operation files, shared definitions, the error catalog and the
//! CLI group descriptions, loaded from `contract/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::resolve;

/// Everything under `contract/`.
#[derive(Debug)]
pub struct Contract {
    /// Operations, sorted by id.
    pub ops: Vec<Operation>,
    /// Shared definitions by name (from `contract/defs/*.json`), refs already normalised.
    pub defs: BTreeMap<String, Value>,
    /// Stable error codes, in catalog order.
    pub errors: Vec<ErrorSpec>,
    /// One-line descriptions of CLI command groups (`daemon`, `registry`, ...).
    pub groups: BTreeMap<String, String>,
    /// The MCP toolsets (`mcp.json`), in the order the file lists them.
    pub toolsets: Vec<Toolset>,
}

/// One MCP toolset of `mcp.json`: a group of tools `dispatch mcp` serves or leaves out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolset {
    /// Its name, lower-case letters and `_` (`lanes`), as `dispatch mcp --toolsets` takes it.
    pub name: String,
    /// One line on what its tools are for.
    pub description: String,
    /// Whether `dispatch mcp` serves it when no toolsets are chosen.
    pub default: bool,
}

/// One operation file.
#[derive(Debug)]
pub struct Operation {
    /// Path of the file it came from.
    pub file: PathBuf,
    /// Human title (`daemon status`).
    pub title: String,
    /// Long description: CLI long help, MCP tool description.
    pub description: String,
    /// The `x-dispatch` metadata.
    pub meta: OperationMeta,
    /// Input schema as authored, refs normalised to `#/$defs/<Name>`: every field of every
    /// surface, the CLI-only ones (file inputs) included. The CLI command is built from it.
    pub input: Value,
    /// The input the operation itself takes: `input` without its CLI-only fields. It is what
    /// MCP, JSON-RPC and the daemon accept, and the Rust input type is generated from it.
    pub wire_input: Value,
    /// Output schema with refs normalised to `#/$defs/<Name>`.
    pub output: Value,
    /// Self-contained wire input schema, as served (MCP, `dispatch schema`) and validated at
    /// run time.
    pub input_bundled: Value,
    /// Self-contained input schema of the CLI form (`input`, CLI-only fields included).
    pub cli_input_bundled: Value,
    /// Self-contained output schema.
    pub output_bundled: Value,
    /// Hash of what a client and a daemon must agree on for this operation: its id, where it
    /// runs, whether it writes history, its bundled schemas and the error codes.
    pub hash: String,
    /// The long description as each surface shows it (`description` with its `{op:..}` and
    /// `{arg:..}` references rendered, plus that surface's addition); filled once every
    /// operation is loaded.
    pub descriptions: BTreeMap<Surface, String>,
}

/// The `x-dispatch` block of an operation file.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperationMeta {
    /// Stable snake_case id; also the RPC method name and, prefixed, the MCP tool name.
    pub id: String,
    /// One line on what it does.
    pub summary: String,
    /// read, write or destroy.
    pub intent: Intent,
    /// Whether repeating the call with the same input has no further effect.
    pub idempotent: bool,
    /// Whether it writes turns or history of a lane (blocked on attached lanes).
    pub writes_history: bool,
    /// Where it runs.
    pub runs_in: RunsIn,
    /// Command words and positionals.
    pub cli: CliMeta,
    /// Input fields the calling process fills when they are omitted, e.g.
    /// `{"cwd": "current_dir"}`: the lane works in the caller's directory, not the daemon's;
    /// `{"caller": "env:CODEX_THREAD_ID"}`: the caller's own thread, from its environment
    /// (such a field is the caller's context, not an argument: see
    /// [`OperationMeta::context_fields`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_defaults: BTreeMap<String, String>,
    /// CLI-only input fields naming a file (`-`: standard input) that the CLI reads into
    /// another field, e.g. `{"text_file": "text"}`; on the CLI, `-` as that other field also
    /// reads standard input. The file fields are not part of the wire input.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub file_inputs: BTreeMap<String, String>,
    /// CLI-only input fields naming a launch packet directory that the CLI reads into an
    /// object field of the wire input, e.g. `{"packet": "launch_packet"}`. The directory
    /// fields are not part of the wire input; the object fields are CLI-only on MCP.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packet_inputs: BTreeMap<String, String>,
    /// The numeric input field (seconds) that bounds how long the call may run, e.g.
    /// `"timeout"`: a client waits that long plus a margin instead of its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_by: Option<String>,
    /// Examples: input → output or input → error code.
    #[serde(default)]
    pub examples: Vec<Example>,

    // How the code finds an operation's lane and runs it (issue 11, per-operation code).
    /// The input field that names the lane the operation concerns (required for operations
    /// that write history): what the attached-lane lock checks and the action log records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane_field: Option<LaneField>,
    /// How the CLI runs the operation as a live stream (`watch`): the fields of the input and
    /// output that carry the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<Streaming>,
    // What each front end shows (surfaces, per-surface text, effects on Codex's work).
    /// The front ends that offer the operation; both when omitted. `["cli"]` keeps an
    /// operation an agent should not run (`assets`, `down`, ...) out of the MCP tools.
    #[serde(default = "all_surfaces")]
    pub surfaces: Vec<Surface>,
    /// The MCP toolset (`mcp.json`) whose tools include this operation's; required for an
    /// operation MCP offers, refused for a CLI-only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_toolset: Option<String>,
    /// Output fields, arrays of a shared definition (`"items": {"$ref": ..}`), whose items
    /// the daemon may hand over already encoded (text it keeps): their Rust type is
    /// `Vec<dispatch_contract::Encoded<T>>`, which encodes either form to the same text and
    /// decodes to the typed one. The schemas are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encoded_outputs: Vec<String>,
    /// Wire input fields that only the CLI offers (`watch`'s `stream`): absent from the MCP
    /// tool, refused there. File inputs are CLI-only without being listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cli_only_inputs: Vec<String>,
    /// Text added to the surface-neutral `description` on one front end, e.g.
    /// `{"cli": "With --json ..."}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub surface_descriptions: BTreeMap<Surface, String>,
    /// What the operation can do to Codex's work on a lane: `starts` (a model turn or a held
    /// action runs) and `ends` (a running turn stops). Drives the MCP annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_work: Vec<ModelWork>,
}

/// `x-dispatch.lane_field`: which input field names the lane, and how.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LaneField {
    /// `{"selector": "lane"}`: a required string field holding a lane selector.
    Selector(String),
    /// `{"request": "request_id"}`: a required integer field (minimum 0 or more) holding an
    /// approval request id; the lane is the request's.
    Request(String),
    /// `{"created": "lane"}`: the operation makes the lane, and its output field of this name
    /// describes it; the lock never refuses a lane that the operation itself made.
    Created(String),
}

/// `x-dispatch.streaming`: the fields the CLI uses to call an operation repeatedly and print
/// its events as they arrive.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Streaming {
    /// Boolean input field that makes a call return as soon as some events are there.
    pub switch: String,
    /// Integer input field: continue after this cursor.
    pub after: String,
    /// Integer input field with a default: events to return at most.
    pub limit: String,
    /// Array output field: the events.
    pub events: String,
    /// Output field: the cursor to continue from.
    pub cursor: String,
    /// String output field: why the call ended; `batch` means more may come.
    pub ended: String,
}

fn all_surfaces() -> Vec<Surface> {
    vec![Surface::Cli, Surface::Mcp]
}

/// A front end.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// The `dispatch` command line.
    Cli,
    /// The MCP tools of `dispatch mcp`.
    Mcp,
}

impl Surface {
    /// As written in the contract.
    pub fn name(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Mcp => "mcp",
        }
    }
}

/// The prefix of a client default read from the caller's environment: `env:CODEX_THREAD_ID`.
pub const ENV_SOURCE: &str = "env:";

/// An effect of an operation on Codex's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelWork {
    /// A model turn starts, or a held action runs: Codex acts in the world.
    Starts,
    /// A running turn stops before it is done.
    Ends,
}

impl OperationMeta {
    /// Input fields that exist on the CLI only: they are not part of the wire input, so MCP,
    /// JSON-RPC and the daemon refuse them: the file inputs and the packet directories.
    pub fn cli_only_fields(&self) -> impl Iterator<Item = &str> {
        self.file_inputs
            .keys()
            .chain(self.packet_inputs.keys())
            .map(String::as_str)
    }

    /// Whether `surface` offers the operation.
    pub fn on(&self, surface: Surface) -> bool {
        self.surfaces.contains(&surface)
    }

    /// Every input field the MCP tool leaves out: the file inputs (not on the wire), the
    /// wire fields only the CLI offers (`cli_only_inputs`) and the caller's context
    /// ([`OperationMeta::context_fields`]).
    pub fn mcp_omitted_inputs(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.cli_only_fields().collect();
        fields.extend(self.cli_only_inputs.iter().map(String::as_str));
        fields.extend(self.packet_inputs.values().map(String::as_str));
        fields.extend(self.context_fields().map(|(field, _)| field));
        fields
    }

    /// The input fields the calling process fills from its environment (client default
    /// `env:<VAR>`), with the variable: the caller's context (who is calling), never an
    /// argument. Neither the CLI nor the MCP tool offers them (MCP refuses them), so an agent
    /// cannot claim to be another lane; the calling process fills them on every surface, and
    /// JSON-RPC takes them as they come.
    pub fn context_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.client_defaults.iter().filter_map(|(field, source)| {
            source
                .strip_prefix(ENV_SOURCE)
                .map(|var| (field.as_str(), var))
        })
    }
}

impl Operation {
    /// The long description as `surface` shows it: the surface-neutral `description` with
    /// its references rendered, then that surface's addition, if any.
    pub fn description_for(&self, surface: Surface) -> &str {
        self.descriptions
            .get(&surface)
            .map_or(self.description.as_str(), String::as_str)
    }
}

/// Fills [`Operation::descriptions`]. In `description` (and the additions), `{op:<id>}`
/// names another operation (CLI: `dispatch <words>`, MCP: `dispatch_<id>`) and
/// `{arg:<field>}` an input field of this one (CLI: `--field` or `<FIELD>`, MCP: `field`).
fn render_descriptions(ops: &mut [Operation]) -> anyhow::Result<()> {
    let names: BTreeMap<String, (String, Vec<Surface>)> = ops
        .iter()
        .map(|op| {
            (
                op.meta.id.clone(),
                (op.meta.cli.path.join(" "), op.meta.surfaces.clone()),
            )
        })
        .collect();
    for op in ops.iter_mut() {
        let mut rendered = BTreeMap::new();
        for surface in op.meta.surfaces.clone() {
            let mut text = op.description.clone();
            if let Some(extra) = op.meta.surface_descriptions.get(&surface) {
                text = format!("{text} {extra}");
            }
            let text = render_refs(&text, surface, op, &names)
                .with_context(|| format!("{}: `description`", op.file.display()))?;
            rendered.insert(surface, text);
        }
        op.descriptions = rendered;
    }
    Ok(())
}

fn render_refs(
    text: &str,
    surface: Surface,
    op: &Operation,
    names: &BTreeMap<String, (String, Vec<Surface>)>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            bail!("an unclosed `{{` in `{text}`");
        };
        let reference = &rest[start + 1..start + len];
        let word = match reference.split_once(':') {
            Some(("op", id)) => {
                let Some((path, surfaces)) = names.get(id) else {
                    bail!("`{{op:{id}}}` names no operation");
                };
                ensure!(
                    surfaces.contains(&surface),
                    "`{{op:{id}}}` is not offered on the {} surface",
                    surface.name()
                );
                match surface {
                    Surface::Cli => format!("dispatch {path}"),
                    Surface::Mcp => format!("dispatch_{id}"),
                }
            }
            Some(("arg", field)) => {
                ensure!(
                    op.input.pointer(&format!("/properties/{field}")).is_some(),
                    "`{{arg:{field}}}` is not an input field"
                );
                ensure!(
                    !op.meta
                        .context_fields()
                        .any(|(context, _)| context == field),
                    "`{{arg:{field}}}` is filled from the caller's environment, not an argument"
                );
                match surface {
                    Surface::Cli if op.meta.cli.positionals.iter().any(|p| p == field) => {
                        format!("<{}>", field.to_uppercase())
                    }
                    Surface::Cli => format!("--{}", field.replace('_', "-")),
                    Surface::Mcp => {
                        ensure!(
                            !op.meta.mcp_omitted_inputs().contains(&field),
                            "`{{arg:{field}}}` is CLI-only"
                        );
                        field.to_owned()
                    }
                }
            }
            _ => bail!("`{{{reference}}}`: write `{{op:<id>}}` or `{{arg:<field>}}`"),
        };
        out.push_str(&word);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every key `x-dispatch` accepts, as the loader's types declare them (`cli.path` and
/// `cli.positionals` for the `cli` object): what `contract/README.md` must document.
pub fn x_dispatch_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for key in struct_fields::<OperationMeta>() {
        if *key == "cli" {
            keys.extend(
                struct_fields::<CliMeta>()
                    .iter()
                    .map(|k| format!("cli.{k}")),
            );
        } else {
            keys.push((*key).to_owned());
        }
    }
    keys
}

/// The field names serde's derive gives a struct, captured from its `deserialize_struct` call.
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor, value::Error};

    struct Capture<'a>(&'a std::cell::Cell<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for Capture<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            self.0.set(fields);
            Err(Error::custom("fields captured"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let fields = std::cell::Cell::new(&[][..]);
    let _captured = T::deserialize(Capture(&fields));
    fields.get()
}

/// What an operation does to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Changes nothing.
    Read,
    /// Changes state.
    Write,
    /// Removes or irreversibly ends something.
    Destroy,
}

/// Which process runs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunsIn {
    /// `dispatchd`, reached over its JSON-RPC socket.
    Daemon,
    /// The calling process (`dispatch` or `dispatch mcp`); needs no daemon.
    Client,
}

/// CLI placement of an operation.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CliMeta {
    /// Command words, e.g. `["daemon", "status"]`.
    pub path: Vec<String>,
    /// Input fields taken as positional arguments, in order.
    #[serde(default)]
    pub positionals: Vec<String>,
}

/// An example call, run as a test against a real daemon.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// What it shows.
    pub title: String,
    /// The input object.
    pub input: Value,
    /// Expected output; `"*"` matches any value, objects match as subsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Expected error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One stable error code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// The code, e.g. `not_found`.
    pub code: String,
    /// Process exit code of the CLI: a `u8` when loaded, 1..=125 by the lint.
    pub exit_code: u8,
    /// JSON-RPC error code on the daemon socket.
    pub jsonrpc_code: i32,
    /// What the code means.
    pub summary: String,
    /// How to recover, surface-neutral: `{0}`, `{1}`, ... stand for the entries of `run`.
    pub hint: String,
    /// The operations the hint suggests, each rendered by the surface in its own words.
    #[serde(default)]
    pub run: Vec<RunSpec>,
}

/// An operation a hint suggests, with its arguments (strings in angle brackets, such as
/// `<lane>`, are placeholders the reader fills in).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The operation id.
    pub op: String,
    /// Its input, or part of it.
    #[serde(default)]
    pub args: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct ErrorCatalog {
    #[serde(rename = "$comment")]
    _comment: Option<String>,
    codes: Vec<ErrorSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct McpToolsets {
    #[serde(rename = "$comment")]
    _comment: Option<String>,
    toolsets: Vec<Toolset>,
}

#[derive(Deserialize)]
struct CliGroups {
    #[serde(rename = "$comment")]
    _comment: Option<String>,
    groups: BTreeMap<String, String>,
}

impl Contract {
    /// Reads and resolves the contract directory.
    pub fn load(dir: &Path) -> anyhow::Result<Contract> {
        let defs = load_defs(&dir.join("defs"))?;
        let errors: ErrorCatalog = read_json(&dir.join("errors.json"))?;
        let groups: CliGroups = read_json(&dir.join("cli.json"))?;
        let toolsets: McpToolsets = read_json(&dir.join("mcp.json"))?;
        let codes: Vec<Value> = errors
            .codes
            .iter()
            .map(|e| Value::String(e.code.clone()))
            .collect();
        let mut ops = Vec::new();
        for file in json_files(&dir.join("ops"))? {
            ops.push(load_operation(&file, &defs, &codes)?);
        }
        ops.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
        render_descriptions(&mut ops)?;
        Ok(Contract {
            ops,
            defs,
            errors: errors.codes,
            groups: groups.groups,
            toolsets: toolsets.toolsets,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn json_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_defs(dir: &Path) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut defs = BTreeMap::new();
    for file in json_files(dir)? {
        let doc: Value = read_json(&file)?;
        let Some(Value::Object(entries)) = doc.get("$defs") else {
            bail!("{} has no `$defs` object", file.display());
        };
        for (name, schema) in entries {
            let schema = resolve::normalise_refs(schema, &file)?;
            if defs.insert(name.clone(), schema).is_some() {
                bail!(
                    "definition `{name}` is defined twice (again in {})",
                    file.display()
                );
            }
        }
    }
    Ok(defs)
}

fn load_operation(
    file: &Path,
    defs: &BTreeMap<String, Value>,
    error_codes: &[Value],
) -> anyhow::Result<Operation> {
    let doc: Value = read_json(file)?;
    let text = |key: &str| -> anyhow::Result<String> {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: missing string `{key}`", file.display()))
    };
    let meta: OperationMeta = serde_json::from_value(
        doc.get("x-dispatch")
            .cloned()
            .with_context(|| format!("{}: missing `x-dispatch`", file.display()))?,
    )
    .with_context(|| format!("{}: bad `x-dispatch`", file.display()))?;
    let schema = |key: &str| -> anyhow::Result<Value> {
        let raw = doc
            .pointer(&format!("/$defs/{key}"))
            .with_context(|| format!("{}: missing `$defs/{key}`", file.display()))?;
        resolve::normalise_refs(raw, file)
    };
    let input = schema("input")?;
    let output = schema("output")?;
    let wire_input = without_fields(&input, &meta.cli_only_fields().collect::<Vec<_>>());
    let input_bundled = resolve::bundle(&wire_input, defs)?;
    let cli_input_bundled = resolve::bundle(&input, defs)?;
    let output_bundled = resolve::bundle(&output, defs)?;
    let title = text("title")?;
    let description = text("description")?;
    // Only what changes the wire or its meaning: wording edits never make a daemon stale.
    let hash = contract_hash(&[
        Value::String(meta.id.clone()),
        serde_json::to_value(meta.runs_in)?,
        Value::Bool(meta.writes_history),
        input_bundled.clone(),
        output_bundled.clone(),
        Value::Array(error_codes.to_vec()),
    ]);
    Ok(Operation {
        file: file.to_path_buf(),
        title,
        description,
        meta,
        input,
        wire_input,
        output,
        input_bundled,
        cli_input_bundled,
        output_bundled,
        hash,
        descriptions: BTreeMap::new(),
    })
}

/// `schema` (an object schema) without the properties `fields`, in `properties` and in
/// `required`.
fn without_fields(schema: &Value, fields: &[&str]) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props.retain(|name, _| !fields.contains(&name.as_str()));
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|name| !name.as_str().is_some_and(|n| fields.contains(&n)));
    }
    schema
}

/// First 16 hex digits of SHA-256 over the canonical JSON (sorted keys) of `parts`.
fn contract_hash(parts: &[Value]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(canonical(part).as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// JSON text with object keys sorted, so authoring order never changes a hash.
pub fn canonical(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}
