//! Rust types for every operation's input and output and the shared definitions, via typify.

use anyhow::Context;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{Map, Value};

use crate::model::Contract;

/// Name of the Rust type of an operation's input or output: `daemon_status` + `Input` →
/// `DaemonStatusInput`.
pub fn type_name(op_id: &str, suffix: &str) -> String {
    let mut name = String::new();
    for word in op_id.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name.push_str(suffix);
    name
}

/// Rewrites `#/$defs/X` refs to the `#/definitions/X` form typify's schemars 0.8 reads.
fn to_definitions_refs(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => (
                        k.clone(),
                        Value::String(r.replacen("#/$defs/", "#/definitions/", 1)),
                    ),
                    _ => (k.clone(), to_definitions_refs(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_definitions_refs).collect()),
        other => other.clone(),
    }
}

/// The typify output for the whole contract.
pub fn generate(contract: &Contract) -> anyhow::Result<TokenStream> {
    let mut definitions = Map::new();
    for (name, schema) in &contract.defs {
        definitions.insert(name.clone(), to_definitions_refs(schema));
    }
    for op in &contract.ops {
        let mut input = to_definitions_refs(&op.wire_input);
        let mut output = to_definitions_refs(&op.output);
        encoded_items(&mut output, &op.meta.encoded_outputs)?;
        describe(
            &mut input,
            &format!("Input of `{}`: {}", op.title, op.meta.summary),
        );
        describe(&mut output, &format!("Output of `{}`.", op.title));
        definitions.insert(type_name(&op.meta.id, "Input"), input);
        definitions.insert(type_name(&op.meta.id, "Output"), output);
    }
    let root = serde_json::json!({ "definitions": definitions });
    let root: schemars08::schema::RootSchema =
        serde_json::from_value(root).context("the contract is not a schema typify can read")?;
    let mut settings = typify::TypeSpaceSettings::default();
    settings
        .with_struct_builder(false)
        .with_derive("PartialEq".into())
        // `encoded_outputs`' items: `dispatch_contract::Encoded<T>` (see `encoded_items`).
        .with_crate("dispatch-contract", typify::CrateVers::Any, None);
    let mut space = typify::TypeSpace::new(&settings);
    space
        .add_root_schema(root)
        .context("typify could not turn the contract into Rust types")?;
    let types = space.to_stream();
    Ok(quote! {
        //! Rust types of the contract: one `<Op>Input` and `<Op>Output` per operation and the
        //! shared definitions of `contract/defs/`.
        #![allow(missing_docs, dead_code, clippy::all, clippy::unwrap_used)]
        #types
    })
}

/// Makes the items of each of `fields` (arrays of a shared definition, checked by the lint)
/// `dispatch_contract::Encoded<T>` for typify, with its `x-rust-type` extension: values the
/// daemon may hand over already encoded. Only typify sees this; the schemas served are the
/// contract's.
fn encoded_items(output: &mut Value, fields: &[String]) -> anyhow::Result<()> {
    for field in fields {
        let items = output
            .pointer_mut(&format!("/properties/{field}/items"))
            .with_context(|| format!("encoded output `{field}` has no `items`"))?;
        let item = items.take();
        *items = serde_json::json!({
            "x-rust-type": {
                "crate": "dispatch-contract",
                "version": "*",
                "path": "dispatch_contract::Encoded",
                "parameters": [item],
            }
        });
    }
    Ok(())
}

/// Gives a schema a description when its author did not, so every type has a doc comment.
fn describe(schema: &mut Value, text: &str) {
    if let Value::Object(map) = schema {
        map.entry("description")
            .or_insert_with(|| Value::String(text.to_owned()));
    }
}
