//! Rust types of the pinned Codex App Server protocol
//! (`contract/codex-protocol/codex-app-server.schema.json`) for `codex-app-server`.
//!
//! The schema's `definitions` go through typify after a pre-pass that adapts them to what a
//! *client* of a moving server needs; `x-codex-methods` becomes the method bindings. The
//! pre-pass:
//!
//! 1. **Unknown fields are always accepted**: `additionalProperties: false` is dropped, so
//!    typify never emits `deny_unknown_fields` (Codex sends experimental fields unasked).
//! 2. **`true` schemas** (any JSON) become `{}`, which typify reads as `serde_json::Value`
//!    (it cannot read a bare `true` property schema and generates an empty enum).
//! 3. **"One of these properties" constraints** on an object (`anyOf`/`oneOf` whose
//!    alternatives only require different properties, e.g. `url` or `fileId` on an image
//!    input) are merged into the object as optional properties: typify would otherwise
//!    give up on the enclosing tagged union.
//! 4. **Plain strings** (a definition that is only `{"type": "string"}`, e.g. `ThreadId`)
//!    become type aliases of `String` (of `PathBuf` for [`PATHS`]) rather than newtypes.
//! 5. **Open kinds** ([`RAW`], [`OPEN_ENUMS`], [`OPEN_UNIONS`]): sets Codex grows between
//!    versions, where a value this client does not know must not make the whole message
//!    unreadable. They are generated here instead of by typify: raw JSON, a string enum
//!    with an `Unknown` catch-all, or a tagged union with an `Other(Value)` catch-all.
//! 6. **Variant names** of a few untagged unions ([`VARIANT_NAMES`]).
//!
//! Then, from `x-codex-methods`: a `ClientMethod` impl per client request (params type →
//! wire method and result type), a `ServerMethod` impl per server request, the
//! `ServerNotification` enum (method → typed params, `Other` for the rest) and the method
//! lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::quote;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Where the pinned schema lives, relative to the workspace root.
pub const SCHEMA: &str = "contract/codex-protocol/codex-app-server.schema.json";

/// Plain-string definitions that are file system paths (aliases of `PathBuf`).
const PATHS: &[&str] = &["AbsolutePathBuf"];

/// Definitions kept as raw JSON (`serde_json::Value`): open sets whose new members must not
/// make the enclosing message unreadable, and that dispatch reads by hand.
const RAW: &[(&str, &str)] = &[
    (
        "CodexErrorInfo",
        "Machine-readable kind of a turn error: a string such as `\"internalServerError\"` or \
         an object such as `{\"httpConnectionFailed\": {...}}`. Kept raw because Codex adds \
         kinds between versions; see `TurnError::kind`.",
    ),
    (
        "CommandAction",
        "A parsed action of a command (`read`, `listFiles`, `search`, ...). Kept raw because \
         Codex adds kinds between versions.",
    ),
];

/// String enums that get an `Unknown` variant for values this client does not know.
const OPEN_ENUMS: &[&str] = &["InputModality", "MessagePhase", "ThreadActiveFlag"];

/// Internally tagged unions (definition, tag property) that get one struct per variant
/// (named by the variant's `title`) and an `Other(Value)` variant for kinds this client does
/// not know, or known kinds whose shape did not match.
const OPEN_UNIONS: &[(&str, &str)] = &[("ThreadItem", "type")];

/// Variant names of untagged unions whose alternatives have no title.
const VARIANT_NAMES: &[(&str, &[&str])] = &[
    ("RequestId", &["String", "Integer"]),
    ("ThreadListCwdFilter", &["One", "Many"]),
];

/// Extra derives of particular types.
const EXTRA_DERIVES: &[(&str, &[&str])] = &[("RequestId", &["Eq", "Hash"])];

/// The `x-codex-methods` block: wire method → type names.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Methods {
    client_requests: BTreeMap<String, Binding>,
    server_notifications: BTreeMap<String, Binding>,
    server_requests: BTreeMap<String, Binding>,
}

/// One method's types.
#[derive(Deserialize)]
struct Binding {
    params: String,
    #[serde(default)]
    result: Option<String>,
}

impl Methods {
    /// Reads `x-codex-methods` and checks that every type it names is a definition and that
    /// every request has a result type.
    fn read(schema: &Value, defs: &Map<String, Value>) -> anyhow::Result<Self> {
        let block = schema
            .get("x-codex-methods")
            .context("the schema has no `x-codex-methods`")?;
        let methods = Self::deserialize(block).context("reading `x-codex-methods`")?;
        let requests = methods
            .client_requests
            .iter()
            .chain(&methods.server_requests);
        for (method, binding) in requests {
            if binding.result.is_none() {
                bail!("request `{method}` in `x-codex-methods` has no `result` type");
            }
        }
        let all = methods
            .client_requests
            .iter()
            .chain(&methods.server_notifications)
            .chain(&methods.server_requests);
        for (method, binding) in all {
            for name in std::iter::once(&binding.params).chain(&binding.result) {
                if !defs.contains_key(name) {
                    bail!(
                        "`x-codex-methods` gives `{method}` the type `{name}`, which is not a definition"
                    );
                }
            }
        }
        Ok(methods)
    }
}

/// `protocol.rs` of `codex-app-server`.
pub fn generate(root: &Path) -> anyhow::Result<TokenStream> {
    let path = root.join(SCHEMA);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let schema: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut defs = schema
        .get("definitions")
        .and_then(Value::as_object)
        .cloned()
        .context("the schema has no `definitions`")?;
    let methods = Methods::read(&schema, &defs)?;

    let mut settings = typify::TypeSpaceSettings::default();
    settings
        .with_struct_builder(false)
        .with_derive("PartialEq".into());
    let mut extra = Vec::new();

    for value in defs.values_mut() {
        accept_unknown_fields(value);
        true_to_any(value);
    }
    let unions = OPEN_UNIONS
        .iter()
        .map(|(name, tag)| hoist_union(&mut defs, name, tag))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for value in defs.values_mut() {
        merge_alternative_properties(value);
    }
    for (name, names) in VARIANT_NAMES {
        name_variants(&mut defs, name, names)?;
    }

    // Aliases: plain strings and raw JSON.
    for (name, def) in &defs {
        if RAW.iter().any(|(raw, _)| raw == name) {
            continue;
        }
        if is_plain_string(def) {
            let target = if PATHS.contains(&name.as_str()) {
                quote!(::std::path::PathBuf)
            } else {
                quote!(::std::string::String)
            };
            let doc = doc_of(def).unwrap_or_else(|| format!("`{name}`: a string."));
            let ident = ident(name);
            extra.push(quote! {
                #[doc = #doc]
                pub type #ident = #target;
            });
            settings.with_replacement(name, name, std::iter::empty());
        }
    }
    for (name, doc) in RAW {
        if !defs.contains_key(*name) {
            bail!("`{name}` is listed as raw but is not a definition");
        }
        let ident = ident(name);
        extra.push(quote! {
            #[doc = #doc]
            pub type #ident = ::serde_json::Value;
        });
        settings.with_replacement(name, name, std::iter::empty());
    }
    for name in OPEN_ENUMS {
        extra.push(open_enum(&defs, name)?);
        settings.with_replacement(name, name, std::iter::empty());
    }
    for union in &unions {
        extra.push(union.tokens());
        settings.with_replacement(&union.name, &union.name, std::iter::empty());
    }
    for (name, derives) in EXTRA_DERIVES {
        let mut patch = typify::TypeSpacePatch::default();
        for derive in *derives {
            patch.with_derive(derive);
        }
        settings.with_patch(name, &patch);
    }
    // Request params with required fields still get `Default` when those fields have
    // one, so callers can write `..Default::default()`.
    for binding in methods.client_requests.values() {
        let params = &binding.params;
        if needs_default_derive(&defs, params) {
            let mut patch = typify::TypeSpacePatch::default();
            patch.with_derive("Default");
            settings.with_patch(params, &patch);
        }
    }

    let root = json!({ "definitions": defs });
    let root: schemars08::schema::RootSchema = serde_json::from_value(root)
        .context("the Codex App Server schema is not a schema typify can read")?;
    let mut space = typify::TypeSpace::new(&settings);
    space
        .add_root_schema(root)
        .context("typify could not turn the Codex App Server schema into Rust types")?;
    let types = with_parent_scope(space.to_stream())?;
    if types.to_string().contains("deny_unknown_fields") {
        bail!("typify made a Codex type reject unknown fields; the pre-pass missed a case");
    }

    let bindings = bindings(&methods);
    let notifications = notifications(&methods, &defs)?;
    let version = schema
        .get("x-codex-version")
        .and_then(Value::as_str)
        .context("the schema has no `x-codex-version`")?;
    let client_methods = methods.client_requests.keys();
    let notification_methods = methods.server_notifications.keys();
    let server_methods = methods.server_requests.keys();

    Ok(one_doc_attribute_per_line(quote! {
        //! Serde types of the pinned Codex App Server protocol and its method bindings,
        //! generated from `contract/codex-protocol/codex-app-server.schema.json`.
        #![allow(
            missing_docs,
            clippy::all,
            clippy::unwrap_used,
            rustdoc::bare_urls,
            rustdoc::broken_intra_doc_links
        )]

        use crate::protocol::{ClientMethod, ServerMethod, thread_id_of};

        /// The Codex version the schema was generated from (`x-codex-version`).
        pub const SCHEMA_CODEX_VERSION: &str = #version;
        /// Every client→server request method of the schema.
        pub const CLIENT_REQUEST_METHODS: &[&str] = &[#(#client_methods),*];
        /// Every server→client notification method of the schema.
        pub const SERVER_NOTIFICATION_METHODS: &[&str] = &[#(#notification_methods),*];
        /// Every server→client request method of the schema.
        pub const SERVER_REQUEST_METHODS: &[&str] = &[#(#server_methods),*];

        #bindings
        #notifications
        #(#extra)*
        #types
    }))
}

/// Splits every multi-line `#[doc = "..."]` into one attribute per line.
///
/// The schema's descriptions have several paragraphs; as one attribute, the formatter
/// prints them as a `/** */` block whose continuation lines it indents with the item, and
/// rustdoc then reads those lines as (failing) code blocks.
fn one_doc_attribute_per_line(stream: TokenStream) -> TokenStream {
    let mut out = TokenStream::new();
    let mut tokens = stream.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Punct(punct) if punct.as_char() == '#' => {
                let lines = match tokens.peek() {
                    Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Bracket => {
                        doc_lines(group)
                    }
                    _ => None,
                };
                match lines {
                    Some(lines) => {
                        tokens.next();
                        out.extend(lines.iter().map(|line| quote!(#[doc = #line])));
                    }
                    None => out.extend([TokenTree::Punct(punct)]),
                }
            }
            TokenTree::Group(group) => {
                let mut inner = Group::new(
                    group.delimiter(),
                    one_doc_attribute_per_line(group.stream()),
                );
                inner.set_span(group.span());
                out.extend([TokenTree::Group(inner)]);
            }
            other => out.extend([other]),
        }
    }
    out
}

/// The lines of a `doc = "..."` attribute body that has more than one.
fn doc_lines(group: &Group) -> Option<Vec<String>> {
    let meta: syn::MetaNameValue = syn::parse2(group.stream()).ok()?;
    if !meta.path.is_ident("doc") {
        return None;
    }
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(text),
        ..
    }) = meta.value
    else {
        return None;
    };
    let text = text.value();
    text.contains('\n')
        .then(|| text.lines().map(str::to_owned).collect())
}

/// Puts the parent module's names in scope of typify's helper modules (`defaults`,
/// `error`): they name the types generated here (rather than by typify) without `super::`.
fn with_parent_scope(types: TokenStream) -> anyhow::Result<TokenStream> {
    let mut file: syn::File =
        syn::parse2(types).context("typify's output for the Codex schema does not parse")?;
    for item in &mut file.items {
        if let syn::Item::Mod(module) = item
            && let Some((_, items)) = &mut module.content
        {
            items.insert(
                0,
                syn::parse_quote!(
                    #[allow(unused_imports)]
                    use super::*;
                ),
            );
        }
    }
    Ok(quote!(#file))
}

fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

fn doc_of(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Drops `additionalProperties: false` everywhere.
fn accept_unknown_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(accept_unknown_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(accept_unknown_fields),
        _ => {}
    }
}

/// Rewrites `true` subschemas (of properties and items) as `{}`.
fn true_to_any(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, sub) in map.iter_mut() {
                match key.as_str() {
                    "properties" | "definitions" => {
                        if let Value::Object(props) = sub {
                            for prop in props.values_mut() {
                                if *prop == Value::Bool(true) {
                                    *prop = json!({});
                                }
                            }
                        }
                    }
                    "items" if *sub == Value::Bool(true) => *sub = json!({}),
                    _ => {}
                }
                true_to_any(sub);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(true_to_any),
        _ => {}
    }
}

/// Whether `alternative` only adds properties (an object schema with `properties` and
/// `required`, nothing else but a title or description).
fn is_property_alternative(alternative: &Value) -> bool {
    alternative.as_object().is_some_and(|map| {
        map.contains_key("properties")
            && map.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "properties" | "required" | "type" | "title" | "description"
                )
            })
            && map.get("type").is_none_or(|t| t == "object")
    })
}

/// Merges `anyOf`/`oneOf` alternatives that only require different properties into the
/// enclosing object as optional properties.
fn merge_alternative_properties(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") {
                for key in ["anyOf", "oneOf"] {
                    let mergeable = map
                        .get(key)
                        .and_then(Value::as_array)
                        .is_some_and(|alts| alts.iter().all(is_property_alternative));
                    if !mergeable {
                        continue;
                    }
                    let Some(Value::Array(alternatives)) = map.remove(key) else {
                        continue;
                    };
                    if let Some(Value::Object(props)) = map.get_mut("properties") {
                        for alternative in alternatives {
                            if let Some(Value::Object(extra)) = alternative.get("properties") {
                                for (name, schema) in extra {
                                    props.entry(name.clone()).or_insert_with(|| schema.clone());
                                }
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(merge_alternative_properties);
        }
        Value::Array(items) => items.iter_mut().for_each(merge_alternative_properties),
        _ => {}
    }
}

/// Titles the alternatives of the untagged union `name`, which typify uses as variant names.
fn name_variants(defs: &mut Map<String, Value>, name: &str, names: &[&str]) -> anyhow::Result<()> {
    let alternatives = defs
        .get_mut(name)
        .and_then(|def| {
            let key = if def.get("anyOf").is_some() {
                "anyOf"
            } else {
                "oneOf"
            };
            def.get_mut(key)
        })
        .and_then(Value::as_array_mut)
        .with_context(|| format!("`{name}` is not a union"))?;
    if alternatives.len() != names.len() {
        bail!(
            "`{name}` has {} alternatives, the generator names {}",
            alternatives.len(),
            names.len()
        );
    }
    for (alternative, title) in alternatives.iter_mut().zip(names) {
        if let Value::Object(map) = alternative {
            map.insert("title".into(), Value::String((*title).to_owned()));
        }
    }
    Ok(())
}

/// `{"type": "string"}`, possibly with a description or a length bound, and nothing else.
fn is_plain_string(def: &Value) -> bool {
    def.as_object().is_some_and(|map| {
        map.get("type") == Some(&json!("string"))
            && map.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "type" | "description" | "title" | "minLength" | "maxLength"
                )
            })
    })
}

/// Whether a client request params type has required fields (so typify does not derive
/// `Default`) that all have a natural default (strings, arrays, numbers, booleans).
fn needs_default_derive(defs: &Map<String, Value>, name: &str) -> bool {
    let Some(def) = defs.get(name) else {
        return false;
    };
    let required: Vec<&str> = def
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if required.is_empty() {
        return false;
    }
    required.iter().all(|prop| {
        let Some(schema) = def.get("properties").and_then(|p| p.get(*prop)) else {
            return false;
        };
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => match reference
                .strip_prefix("#/definitions/")
                .and_then(|n| defs.get(n))
            {
                Some(target) if is_plain_string(target) => target,
                _ => return false,
            },
            None => schema,
        };
        matches!(
            schema.get("type").and_then(Value::as_str),
            Some("string" | "array" | "integer" | "number" | "boolean")
        ) && schema.get("enum").is_none()
    })
}

/// `waitingOnApproval` → `WaitingOnApproval`, `on-request` → `OnRequest`.
fn pascal(wire: &str) -> String {
    let mut out = String::new();
    for part in wire.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

/// A string enum with an `Unknown` catch-all.
fn open_enum(defs: &Map<String, Value>, name: &str) -> anyhow::Result<TokenStream> {
    let def = defs
        .get(name)
        .with_context(|| format!("open enum `{name}` is not a definition"))?;
    let mut values: Vec<(String, Option<String>)> = Vec::new();
    let mut collect = |schema: &Value| -> anyhow::Result<()> {
        let Some(list) = schema.get("enum").and_then(Value::as_array) else {
            bail!("`{name}` is not a string enum");
        };
        for value in list {
            let value = value
                .as_str()
                .with_context(|| format!("`{name}` has a non-string value"))?;
            values.push((value.to_owned(), doc_of(schema)));
        }
        Ok(())
    };
    match def.get("oneOf").and_then(Value::as_array) {
        Some(alternatives) => alternatives.iter().try_for_each(&mut collect)?,
        None => collect(def)?,
    }
    let mut seen = BTreeSet::new();
    let variants = values
        .iter()
        .map(|(wire, doc)| {
            let variant = pascal(wire);
            if variant == "Unknown" || wire == "unknown" || !seen.insert(variant.clone()) {
                bail!("`{name}`: value `{wire}` clashes with another variant");
            }
            let variant = ident(&variant);
            let doc = doc.clone().unwrap_or_else(|| format!("`{wire}`."));
            Ok(quote! {
                #[doc = #doc]
                #[serde(rename = #wire)]
                #variant,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let doc = doc_of(def).unwrap_or_else(|| format!("`{name}`."));
    let ident = ident(name);
    Ok(quote! {
        #[doc = #doc]
        ///
        /// Values this client does not know are read as `Unknown`.
        #[derive(
            ::serde::Deserialize, ::serde::Serialize, Clone, Copy, Debug, Eq, Hash, Ord,
            PartialEq, PartialOrd,
        )]
        pub enum #ident {
            #(#variants)*
            /// A value this client does not know (written back as `unknown`).
            #[serde(other, rename = "unknown")]
            Unknown,
        }
    })
}

/// A tagged union whose variants were hoisted into their own definitions.
struct OpenUnion {
    name: String,
    doc: Option<String>,
    tag: String,
    /// Variant name, struct name, tag value, description.
    variants: Vec<(String, String, String, Option<String>)>,
    /// Properties required as strings in every variant (accessors are generated).
    common_strings: Vec<String>,
}

/// Replaces each variant of the internally tagged union `name` by a definition named by its
/// title, without the tag property (the enum's serde impl handles it) and with the union's
/// own properties merged in.
fn hoist_union(defs: &mut Map<String, Value>, name: &str, tag: &str) -> anyhow::Result<OpenUnion> {
    let def = defs
        .get(name)
        .cloned()
        .with_context(|| format!("open union `{name}` is not a definition"))?;
    let alternatives = def
        .get("oneOf")
        .and_then(Value::as_array)
        .with_context(|| format!("open union `{name}` has no `oneOf`"))?;
    let shared_props = def
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let shared_required: Vec<Value> = def
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut variants = Vec::new();
    let mut common: Option<BTreeSet<String>> = None;
    for alternative in alternatives {
        let title = alternative
            .get("title")
            .and_then(Value::as_str)
            .with_context(|| format!("a variant of `{name}` has no title"))?
            .to_owned();
        let mut variant = alternative
            .as_object()
            .cloned()
            .with_context(|| format!("`{title}` is not an object schema"))?;
        let value = variant
            .get("properties")
            .and_then(|p| p.get(tag))
            .and_then(|t| t.get("enum"))
            .and_then(Value::as_array)
            .and_then(|values| match values.as_slice() {
                [Value::String(v)] => Some(v.clone()),
                _ => None,
            })
            .with_context(|| format!("`{title}` has no single-valued `{tag}`"))?;
        if let Some(Value::Object(props)) = variant.get_mut("properties") {
            props.remove(tag);
            for (prop, schema) in &shared_props {
                props.entry(prop.clone()).or_insert_with(|| schema.clone());
            }
        }
        if let Some(Value::Array(required)) = variant.get_mut("required") {
            required.retain(|r| r != tag);
            for r in &shared_required {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
        variant.remove("title");
        let strings: BTreeSet<String> = variant
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|prop| {
                variant
                    .get("properties")
                    .and_then(|p| p.get(*prop))
                    .is_some_and(|s| s.get("type") == Some(&json!("string")))
            })
            .map(str::to_owned)
            .collect();
        common = Some(match common {
            None => strings,
            Some(c) => c.intersection(&strings).cloned().collect(),
        });
        let variant_name = title
            .strip_suffix(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| pascal(&value));
        if defs.contains_key(&title) {
            bail!("`{title}` (a variant of `{name}`) clashes with a definition");
        }
        let doc = doc_of(&Value::Object(variant.clone()));
        variant
            .entry("description")
            .or_insert_with(|| Value::String(format!("The `{value}` kind of [`{name}`].")));
        defs.insert(title.clone(), Value::Object(variant));
        variants.push((variant_name, title, value, doc));
    }
    if variants.iter().any(|(v, ..)| v == "Other") {
        bail!("open union `{name}` already has a variant named `Other`");
    }
    Ok(OpenUnion {
        name: name.to_owned(),
        doc: doc_of(&def),
        tag: tag.to_owned(),
        variants,
        common_strings: common.unwrap_or_default().into_iter().collect(),
    })
}

impl OpenUnion {
    fn tokens(&self) -> TokenStream {
        let name = ident(&self.name);
        let tag = &self.tag;
        // What an object starting with the tag starts with (`{"type":"`).
        let tag_first = format!("{{{}:\"", serde_json::Value::String(tag.clone()));
        let doc = self
            .doc
            .clone()
            .unwrap_or_else(|| format!("`{}`.", self.name));
        let variants = self.variants.iter().map(|(variant, ty, value, doc)| {
            let variant = ident(variant);
            let ty = ident(ty);
            let doc = match doc {
                Some(d) => format!("`{value}`: {d}"),
                None => format!("`{value}`."),
            };
            quote! {
                #[doc = #doc]
                #variant(#ty),
            }
        });
        let kinds = self.variants.iter().map(|(variant, _, value, _)| {
            let variant = ident(variant);
            quote!(Self::#variant(_) => #value,)
        });
        let encode = self.variants.iter().map(|(variant, _, _, _)| {
            let variant = ident(variant);
            quote!(Self::#variant(inner) => ::serde_json::to_value(inner),)
        });
        let decode = self.variants.iter().map(|(variant, _, value, _)| {
            let variant = ident(variant);
            quote!(#value => typed(text).map(Self::#variant),)
        });
        let accessors = self.common_strings.iter().map(|prop| {
            let method = ident(&snake(prop));
            let doc = format!("`{prop}` (empty when an unknown kind has none).");
            let arms = self.variants.iter().map(|(variant, _, _, _)| {
                let variant = ident(variant);
                quote!(Self::#variant(inner) => &inner.#method,)
            });
            quote! {
                #[doc = #doc]
                pub fn #method(&self) -> &str {
                    match self {
                        #(#arms)*
                        Self::Other(value) => value
                            .get(#prop)
                            .and_then(::serde_json::Value::as_str)
                            .unwrap_or_default(),
                    }
                }
            }
        });
        let other_doc = format!(
            "Any other kind, and known kinds whose shape did not match, as received (it has \
             at least `{tag}`)."
        );
        let kind_doc = format!("The wire `{tag}`.");
        let not_object = format!("a {} must be a JSON object", self.name);
        quote! {
            #[doc = #doc]
            ///
            /// Kinds this client does not know, and known kinds whose shape did not match,
            /// are kept raw in `Other`, so nothing is lost or fatal.
            #[derive(Clone, Debug, PartialEq)]
            pub enum #name {
                #(#variants)*
                #[doc = #other_doc]
                Other(::serde_json::Value),
            }

            impl #name {
                #[doc = #kind_doc]
                pub fn kind(&self) -> &str {
                    match self {
                        #(#kinds)*
                        Self::Other(value) => value
                            .get(#tag)
                            .and_then(::serde_json::Value::as_str)
                            .unwrap_or_default(),
                    }
                }

                #(#accessors)*
            }

            impl ::serde::Serialize for #name {
                fn serialize<S: ::serde::Serializer>(
                    &self,
                    serializer: S,
                ) -> ::std::result::Result<S::Ok, S::Error> {
                    use ::serde::ser::Error as _;
                    let inner = match self {
                        #(#encode)*
                        Self::Other(value) => return value.serialize(serializer),
                    };
                    let mut value = inner.map_err(S::Error::custom)?;
                    if let ::serde_json::Value::Object(map) = &mut value {
                        map.insert(
                            #tag.into(),
                            ::serde_json::Value::String(self.kind().to_owned()),
                        );
                    }
                    value.serialize(serializer)
                }
            }

            impl<'de> ::serde::Deserialize<'de> for #name {
                fn deserialize<D: ::serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> ::std::result::Result<Self, D::Error> {
                    use ::serde::de::Error as _;
                    /// The tag alone: the other fields are skipped, not kept.
                    #[derive(::serde::Deserialize)]
                    struct Tag<'a> {
                        #[serde(rename = #tag, borrow, default)]
                        kind: ::std::option::Option<::std::borrow::Cow<'a, str>>,
                    }
                    fn typed<T: ::serde::de::DeserializeOwned>(
                        text: &str,
                    ) -> ::std::option::Option<T> {
                        ::serde_json::from_str(text).ok()
                    }
                    // Kept as text and read straight into the kind's type: a `Value` tree is
                    // built only for a kind that is unknown or does not match.
                    let raw = <::std::boxed::Box<::serde_json::value::RawValue>
                        as ::serde::Deserialize>::deserialize(deserializer)?;
                    let text = raw.get();
                    if !text.trim_start().starts_with('{') {
                        return Err(D::Error::custom(#not_object));
                    }
                    // The tag first (as serde writes it) and without escapes: read as it
                    // is; else the object is read for its tag alone.
                    let first = text
                        .trim_start()
                        .strip_prefix(#tag_first)
                        .and_then(|rest| rest.split_once('"'))
                        .map(|(kind, _)| kind)
                        .filter(|kind| !kind.contains('\\'));
                    let tag = match first {
                        ::std::option::Option::Some(_) => ::std::option::Option::None,
                        ::std::option::Option::None => ::serde_json::from_str::<Tag<'_>>(text).ok(),
                    };
                    let parsed = match first
                        .or_else(|| tag.as_ref().and_then(|tag| tag.kind.as_deref()))
                        .unwrap_or_default()
                    {
                        #(#decode)*
                        _ => None,
                    };
                    match parsed {
                        ::std::option::Option::Some(parsed) => Ok(parsed),
                        ::std::option::Option::None => ::serde_json::from_str(text)
                            .map(Self::Other)
                            .map_err(D::Error::custom),
                    }
                }
            }
        }
    }
}

/// `threadId` → `thread_id` (as typify names fields).
fn snake(wire: &str) -> String {
    let mut out = String::new();
    for (i, c) in wire.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `ClientMethod` and `ServerMethod` impls.
fn bindings(methods: &Methods) -> TokenStream {
    let impls = |trait_name: &str, requests: &BTreeMap<String, Binding>| {
        let trait_name = ident(trait_name);
        requests
            .iter()
            .filter_map(|(method, binding)| {
                let params = ident(&binding.params);
                let result = ident(binding.result.as_deref()?);
                Some(quote! {
                    impl #trait_name for #params {
                        const METHOD: &'static str = #method;
                        type Response = #result;
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let client = impls("ClientMethod", &methods.client_requests);
    let server = impls("ServerMethod", &methods.server_requests);
    quote! {
        #(#client)*
        #(#server)*
    }
}

/// How a notification's params name their thread.
enum ThreadRef {
    /// A required `threadId` string.
    Required,
    /// An optional `threadId`.
    Optional,
    /// A `thread` object with an `id`.
    Thread,
    /// No thread.
    None,
}

fn thread_ref(defs: &Map<String, Value>, params: &str) -> ThreadRef {
    let Some(def) = defs.get(params) else {
        return ThreadRef::None;
    };
    let props = def.get("properties").and_then(Value::as_object);
    let required = def
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|v| v == "threadId"));
    match props.and_then(|p| p.get("threadId")) {
        Some(schema) if required && schema.get("type") == Some(&json!("string")) => {
            ThreadRef::Required
        }
        Some(_) => ThreadRef::Optional,
        None => match props.and_then(|p| p.get("thread")) {
            Some(schema) if schema.get("$ref") == Some(&json!("#/definitions/Thread")) => {
                ThreadRef::Thread
            }
            _ => ThreadRef::None,
        },
    }
}

/// The `ServerNotification` enum.
fn notifications(methods: &Methods, defs: &Map<String, Value>) -> anyhow::Result<TokenStream> {
    let mut variants = Vec::new();
    let mut names = BTreeMap::new();
    for (method, binding) in &methods.server_notifications {
        let params = &binding.params;
        let variant = params
            .strip_suffix("Notification")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| pascal(method));
        if variant == "Other" || names.insert(variant.clone(), method.clone()).is_some() {
            bail!("notification `{method}` gives a variant name that is taken: `{variant}`");
        }
        variants.push((
            method,
            ident(&variant),
            ident(params),
            thread_ref(defs, params),
        ));
    }
    let decls = variants.iter().map(|(method, variant, params, _)| {
        let doc = format!("`{method}`.");
        quote! {
            #[doc = #doc]
            #variant(#params),
        }
    });
    let parse = variants
        .iter()
        .map(|(method, variant, _, _)| quote!(#method => typed(&params).map(Self::#variant),));
    let parse_raw = variants
        .iter()
        .map(|(method, variant, _, _)| quote!(#method => typed(params).map(Self::#variant),));
    let method_arms = variants
        .iter()
        .map(|(method, variant, _, _)| quote!(Self::#variant(_) => #method,));
    let thread_arms = variants.iter().map(|(_, variant, _, thread)| match thread {
        ThreadRef::Required => quote!(Self::#variant(n) => Some(&n.thread_id),),
        ThreadRef::Optional => quote!(Self::#variant(n) => n.thread_id.as_deref(),),
        ThreadRef::Thread => quote!(Self::#variant(n) => Some(&n.thread.id),),
        ThreadRef::None => quote!(Self::#variant(_) => None,),
    });
    let param_arms = variants
        .iter()
        .map(|(_, variant, _, _)| quote!(Self::#variant(n) => enc(n),));
    Ok(quote! {
        /// A server→client notification. Methods this client does not model, and modelled
        /// ones whose params did not match, are kept raw as [`ServerNotification::Other`].
        #[derive(Clone, Debug, PartialEq)]
        pub enum ServerNotification {
            #(#decls)*
            /// Anything else, as received.
            Other {
                /// The method.
                method: ::std::string::String,
                /// The params (`Value::Null` when absent).
                params: ::serde_json::Value,
            },
        }

        impl ServerNotification {
            /// Interprets a notification. Never fails: what does not parse is kept as
            /// `Other`.
            pub fn from_parts(method: ::std::string::String, params: ::serde_json::Value) -> Self {
                fn typed<T: ::serde::de::DeserializeOwned>(
                    params: &::serde_json::Value,
                ) -> ::std::option::Option<T> {
                    T::deserialize(params).ok()
                }
                let parsed = match method.as_str() {
                    #(#parse)*
                    _ => return Self::Other { method, params },
                };
                match parsed {
                    Some(notification) => notification,
                    None => {
                        ::tracing::warn!(
                            target: "codex_app_server",
                            %method,
                            "notification params did not match the pinned schema; kept raw"
                        );
                        Self::Other { method, params }
                    }
                }
            }

            /// [`ServerNotification::from_parts`] from the params' JSON text, parsed once
            /// straight into the modelled type (no `Value` tree); `Other` holds them parsed
            /// as a `Value`. Never fails.
            pub fn from_raw(
                method: &str,
                params: ::std::option::Option<&::serde_json::value::RawValue>,
            ) -> Self {
                fn typed<'de, T: ::serde::Deserialize<'de>>(
                    params: ::std::option::Option<&'de ::serde_json::value::RawValue>,
                ) -> ::std::option::Option<T> {
                    ::serde_json::from_str(params.map_or("null", |p| p.get())).ok()
                }
                fn value(
                    params: ::std::option::Option<&::serde_json::value::RawValue>,
                ) -> ::serde_json::Value {
                    params
                        .and_then(|p| ::serde_json::from_str(p.get()).ok())
                        .unwrap_or(::serde_json::Value::Null)
                }
                let parsed = match method {
                    #(#parse_raw)*
                    _ => {
                        return Self::Other {
                            params: value(params),
                            method: method.to_owned(),
                        };
                    }
                };
                match parsed {
                    Some(notification) => notification,
                    None => {
                        ::tracing::warn!(
                            target: "codex_app_server",
                            %method,
                            "notification params did not match the pinned schema; kept raw"
                        );
                        Self::Other {
                            params: value(params),
                            method: method.to_owned(),
                        }
                    }
                }
            }

            /// The wire method.
            pub fn method(&self) -> &str {
                match self {
                    #(#method_arms)*
                    Self::Other { method, .. } => method,
                }
            }

            /// The thread the notification is about: `threadId` in the params, or
            /// `thread.id`.
            pub fn thread_id(&self) -> ::std::option::Option<&str> {
                match self {
                    #(#thread_arms)*
                    Self::Other { params, .. } => thread_id_of(params),
                }
            }

            /// The params as JSON (the raw params for `Other`, re-encoded for modelled
            /// kinds).
            pub fn params(&self) -> ::serde_json::Value {
                fn enc<T: ::serde::Serialize>(t: &T) -> ::serde_json::Value {
                    ::serde_json::to_value(t).unwrap_or(::serde_json::Value::Null)
                }
                match self {
                    #(#param_arms)*
                    Self::Other { params, .. } => params.clone(),
                }
            }
        }
    })
}
