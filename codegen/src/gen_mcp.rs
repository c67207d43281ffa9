//! MCP tool descriptors: one tool per operation the MCP surface offers, named
//! `dispatch_<op>`, in the compact form agents pay for with every model request.
//!
//! - The input schema is the wire input without the CLI-only fields, self-contained with
//!   every `$ref` inlined (no `$defs`, no `$schema`: 2020-12 is MCP's default dialect), and
//!   nullable types written as `anyOf` branches of one type each. The "no NUL" pattern is left
//!   out (the daemon checks every input against the full contract schema).
//! - The output schema says that the result is an object and names the keys every output
//!   carries (the contract's `required`). Every output conforms to it; the full schema, with
//!   nested shapes and descriptions, is `dispatch schema`'s and the contract file's. Agents
//!   pay for every byte of `tools/list` in the hosts that forward it, and read the actual
//!   structured result anyway.
//! - Each tool names its toolset (`x-dispatch.mcp_toolset`); `TOOLSETS` lists them
//!   (`contract/mcp.json`), and `dispatch mcp` serves the enabled ones.
//! - The annotations follow the rule in contract/README.md: `readOnlyHint` from the intent;
//!   for other tools `destructiveHint` when the intent is `destroy` or the operation can end
//!   running work (`model_work: ends`), `idempotentHint` from `idempotent`; `openWorldHint`
//!   when the operation can make Codex act (`model_work: starts`).

use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{Map, Value, json};

use crate::gen_contract::static_ident;
use crate::model::{Contract, Intent, ModelWork, Operation, Surface};

/// `tools.rs` of `dispatch-mcp`.
pub fn generate(contract: &Contract) -> TokenStream {
    let ops: Vec<&Operation> = contract
        .ops
        .iter()
        .filter(|op| op.meta.on(Surface::Mcp))
        .collect();
    let names: Vec<String> = ops
        .iter()
        .map(|op| format!("dispatch_{}", op.meta.id))
        .collect();
    let specs = ops.iter().zip(&names).map(|(op, name)| {
        let ident = static_ident(op);
        let description = op.description_for(Surface::Mcp);
        let input = input_schema(op).to_string();
        let output = output_schema(op).to_string();
        let read_only = op.meta.intent == Intent::Read;
        let ends = op.meta.model_work.contains(&ModelWork::Ends);
        let destructive = op.meta.intent == Intent::Destroy || ends;
        let idempotent = op.meta.idempotent;
        let open_world = op.meta.model_work.contains(&ModelWork::Starts);
        let omitted = op.meta.mcp_omitted_inputs();
        let toolset = op.meta.mcp_toolset.as_deref().unwrap_or_default();
        quote! {
            ToolSpec {
                name: #name,
                op: &operations::#ident,
                toolset: #toolset,
                description: #description,
                input_schema: #input,
                output_schema: #output,
                read_only: #read_only,
                destructive: #destructive,
                idempotent: #idempotent,
                open_world: #open_world,
                cli_only_inputs: &[#(#omitted),*],
            },
        }
    });
    let idents = ops.iter().map(|op| static_ident(op));
    let toolsets = contract.toolsets.iter().map(|set| {
        let name = &set.name;
        let description = &set.description;
        let default = set.default;
        quote! {
            Toolset { name: #name, description: #description, default: #default },
        }
    });
    quote! {
        //! The MCP tools: one per contract operation the MCP surface offers, with its compact
        //! input and output schemas and the annotations derived from the contract; and the
        //! toolsets they belong to (`contract/mcp.json`).
        use dispatch_contract::{Operation, operations};

        use crate::descriptor::{ToolSpec, Toolset};

        /// The toolsets, in the order `contract/mcp.json` lists them.
        pub static TOOLSETS: &[Toolset] = &[#(#toolsets)*];

        /// Tool names paired with their operations.
        pub static TOOL_OPERATIONS: &[(&str, &Operation)] = &[#((#names, &operations::#idents)),*];

        /// Every tool, in operation id order.
        pub static TOOLS: &[ToolSpec] = &[#(#specs)*];
    }
}

/// The MCP input schema of `op`: see the module comment.
pub fn input_schema(op: &Operation) -> Value {
    let omitted = op.meta.mcp_omitted_inputs();
    let defs = op
        .input_bundled
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut schema = inline(&op.input_bundled, &defs);
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        map.remove("$defs");
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.retain(|name, _| !omitted.contains(&name.as_str()));
        }
        if let Some(Value::Array(required)) = map.get_mut("required") {
            required.retain(|name| !name.as_str().is_some_and(|n| omitted.contains(&n)));
        }
    }
    schema
}

/// The contract's pattern for "no NUL character". The daemon checks it against the full
/// schema; a model never writes NUL, so the tool's schema leaves it out.
const NUL_FREE: &str = "^[^\\x00]*$";

/// `schema` with every `#/$defs/<Name>` ref replaced by the definition (the ref's siblings,
/// such as its `description`, win), and `type: [T, "null"]` written as `anyOf`.
fn inline(schema: &Value, defs: &Map<String, Value>) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = match map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                .and_then(|name| defs.get(name))
            {
                Some(Value::Object(def)) => def.clone(),
                _ => Map::new(),
            };
            for (key, value) in map {
                if key != "$ref" {
                    out.insert(key.clone(), value.clone());
                }
            }
            let mut out: Map<String, Value> = out
                .into_iter()
                .map(|(key, value)| {
                    let value = if key == "$defs" {
                        value
                    } else {
                        inline(&value, defs)
                    };
                    (key, value)
                })
                .collect();
            if out.get("pattern").and_then(Value::as_str) == Some(NUL_FREE) {
                out.remove("pattern");
            }
            nullable_as_any_of(&mut out);
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, defs)).collect()),
        other => other.clone(),
    }
}

/// `{"type": ["string", "null"], ...}` → `{"anyOf": [{"type": "string", ...}, {"type":
/// "null"}], "description": ...}`: the same values, in the form that single-`type` dialects
/// (and the MCP Inspector's `--strict`) accept.
fn nullable_as_any_of(schema: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = schema.get("type") else {
        return;
    };
    let types: Vec<Value> = types.clone();
    let mut branches = Vec::new();
    let mut rest = schema.clone();
    rest.remove("type");
    let description = rest.remove("description");
    let title = rest.remove("title");
    for ty in types {
        if ty == "null" {
            branches.push(json!({ "type": "null" }));
        } else {
            let mut branch = Map::new();
            branch.insert("type".into(), ty);
            branch.extend(rest.clone());
            branches.push(Value::Object(branch));
        }
    }
    schema.clear();
    if let Some(title) = title {
        schema.insert("title".into(), title);
    }
    if let Some(description) = description {
        schema.insert("description".into(), description);
    }
    schema.insert("anyOf".into(), Value::Array(branches));
}

/// The MCP output schema of `op`: an object with the keys every output carries (see the
/// module comment).
pub fn output_schema(op: &Operation) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    if let Some(required) = op.output_bundled.get("required") {
        out.insert("required".into(), required.clone());
    }
    Value::Object(out)
}
