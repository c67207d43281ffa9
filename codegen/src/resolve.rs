//! `$ref` handling. Authors write refs relative to the file (`../defs/common.json#/$defs/X`);
//! the generators need every ref as a plain definition name, and the run-time schemas need to
//! be self-contained documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

const DEFS_PREFIX: &str = "#/$defs/";

/// Rewrites every `$ref` in `schema` to `#/$defs/<Name>`, the one form the generators use.
pub fn normalise_refs(schema: &Value, file: &Path) -> anyhow::Result<Value> {
    Ok(match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                if key == "$ref" {
                    let target = value
                        .as_str()
                        .with_context(|| format!("{}: `$ref` must be a string", file.display()))?;
                    out.insert(
                        key.clone(),
                        Value::String(format!("{DEFS_PREFIX}{}", ref_name(target, file)?)),
                    );
                } else {
                    out.insert(key.clone(), normalise_refs(value, file)?);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| normalise_refs(item, file))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => other.clone(),
    })
}

fn ref_name(target: &str, file: &Path) -> anyhow::Result<String> {
    let Some((_, fragment)) = target.split_once('#') else {
        bail!(
            "{}: ref `{target}` has no `#/$defs/` fragment",
            file.display()
        );
    };
    match fragment.strip_prefix("/$defs/") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name.to_owned()),
        _ => bail!(
            "{}: ref `{target}` must point at `#/$defs/<Name>`",
            file.display()
        ),
    }
}

/// Names of the definitions `schema` refers to, directly.
pub fn refs_of(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(DEFS_PREFIX) {
                            out.insert(name.to_owned());
                        }
                    }
                    _ => refs_of(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs_of(item, out)),
        _ => {}
    }
}

/// A self-contained JSON Schema document: `schema` plus the transitive closure of the shared
/// definitions it refers to under `$defs`.
pub fn bundle(schema: &Value, defs: &BTreeMap<String, Value>) -> anyhow::Result<Value> {
    let mut needed = BTreeSet::new();
    refs_of(schema, &mut needed);
    let mut closure = BTreeMap::new();
    let mut queue: Vec<String> = needed.into_iter().collect();
    while let Some(name) = queue.pop() {
        if closure.contains_key(&name) {
            continue;
        }
        let def = defs
            .get(&name)
            .with_context(|| format!("unknown definition `{name}`"))?;
        let mut more = BTreeSet::new();
        refs_of(def, &mut more);
        queue.extend(more);
        closure.insert(name, def.clone());
    }
    let mut doc = Map::new();
    doc.insert(
        "$schema".into(),
        Value::String("https://json-schema.org/draft/2020-12/schema".into()),
    );
    let Value::Object(body) = schema else {
        bail!("an operation's input and output must be JSON objects");
    };
    doc.extend(body.clone());
    if !closure.is_empty() {
        doc.insert("$defs".into(), Value::Object(closure.into_iter().collect()));
    }
    Ok(Value::Object(doc))
}
