//! The clap command tree: one command per operation, grouped by its command words, with one
//! argument per input field.

use std::collections::BTreeMap;

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;

use crate::gen_contract::{io_idents, static_ident};
use crate::model::{Contract, Operation};

/// How the CLI turns an argument's text into the field's JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    /// A flag with no value: `true` when given.
    Flag,
    /// An integer; text that does not parse is passed on for the validator to reject.
    Integer,
    /// A number.
    Number,
    /// A string (possibly limited to an enum).
    Text(Vec<String>),
    /// A repeatable string argument.
    TextList,
}

/// One input field as the CLI sees it.
#[derive(Debug)]
pub struct Field<'a> {
    /// Property name in the input schema.
    pub name: &'a str,
    /// What it holds.
    pub kind: FieldKind,
    /// Its description.
    pub help: String,
    /// Whether the schema requires it.
    pub required: bool,
    /// Position among the positionals, if it is one.
    pub position: Option<usize>,
}

/// The input fields of `op`, in authored order.
pub fn fields(op: &Operation) -> Vec<Field<'_>> {
    let required: Vec<&str> = op
        .input
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(props)) = op.input.get("properties") else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| Field {
            name,
            kind: kind_of(schema),
            help: help(op, name, schema),
            required: required.contains(&name.as_str()),
            position: op.meta.cli.positionals.iter().position(|p| p == name),
        })
        .collect()
}

/// The field's description; a field that a file input reads into also says that `-` reads
/// standard input, which only the CLI does.
/// The input fields the CLI offers: all but the caller's context, which the calling process
/// fills from its environment (`OperationMeta::context_fields`).
pub fn cli_fields(op: &Operation) -> Vec<Field<'_>> {
    fields(op)
        .into_iter()
        .filter(|f| {
            !op.meta
                .context_fields()
                .any(|(context, _)| context == f.name)
                && !op.meta.packet_inputs.values().any(|into| into == f.name)
        })
        .collect()
}

fn help(op: &Operation, name: &str, schema: &Value) -> String {
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !description.is_empty() && op.meta.file_inputs.values().any(|into| into == name) {
        format!("{description} `-` reads it from standard input.")
    } else {
        description.to_owned()
    }
}

fn kind_of(schema: &Value) -> FieldKind {
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    match ty {
        "boolean" => FieldKind::Flag,
        "integer" => FieldKind::Integer,
        "number" => FieldKind::Number,
        "array" => FieldKind::TextList,
        _ => FieldKind::Text(
            schema
                .get("enum")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        ),
    }
}

fn arg(field: &Field) -> TokenStream {
    let id = field.name;
    let help = &field.help;
    let mut arg = quote!(Arg::new(#id).help(#help));
    if field.position.is_none() {
        let long = field.name.replace('_', "-");
        arg = quote!(#arg.long(#long));
    } else {
        let value_name = field.name.to_uppercase();
        arg = quote!(#arg.value_name(#value_name));
    }
    arg = match &field.kind {
        FieldKind::Flag => quote!(#arg.action(ArgAction::SetTrue)),
        // `-1` is a value to refuse with the field's bounds, not an unknown flag. A positional
        // keeps its name (`<REQUEST_ID>`), which the descriptions use.
        FieldKind::Integer | FieldKind::Number if field.position.is_some() => {
            quote!(#arg.allow_negative_numbers(true))
        }
        FieldKind::Integer | FieldKind::Number => {
            quote!(#arg.value_name("N").allow_negative_numbers(true))
        }
        // A positional list takes every remaining word (`wait a b c`).
        FieldKind::TextList if field.position.is_some() => {
            quote!(#arg.action(ArgAction::Append).num_args(1..))
        }
        FieldKind::TextList => quote!(#arg.action(ArgAction::Append)),
        FieldKind::Text(values) if values.is_empty() => arg,
        FieldKind::Text(values) => quote!(#arg.value_parser([#(#values),*])),
    };
    if field.required {
        arg = quote!(#arg.required(true));
    }
    arg
}

fn kind_tokens(kind: &FieldKind) -> TokenStream {
    match kind {
        FieldKind::Flag => quote!(FieldKind::Flag),
        FieldKind::Integer => quote!(FieldKind::Integer),
        FieldKind::Number => quote!(FieldKind::Number),
        FieldKind::Text(_) => quote!(FieldKind::Text),
        FieldKind::TextList => quote!(FieldKind::TextList),
    }
}

fn builder_ident(op: &Operation) -> Ident {
    format_ident!("{}_command", op.meta.id)
}

/// A node of the command tree: either an operation or a group of nodes.
enum Node<'a> {
    Leaf(&'a Operation),
    Group(BTreeMap<&'a str, Node<'a>>),
}

fn insert<'a>(tree: &mut BTreeMap<&'a str, Node<'a>>, path: &'a [String], op: &'a Operation) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        tree.insert(first, Node::Leaf(op));
    } else if let Node::Group(children) = tree
        .entry(first)
        .or_insert_with(|| Node::Group(BTreeMap::new()))
    {
        insert(children, rest, op);
    }
}

/// What a node's command says of itself (`about`): an operation's summary, a group's text.
fn node_about(contract: &Contract, word: &str, node: &Node) -> String {
    match node {
        Node::Leaf(op) => op.meta.summary.clone(),
        Node::Group(_) => contract.groups.get(word).cloned().unwrap_or_default(),
    }
}

fn node_tokens(contract: &Contract, word: &str, node: &Node) -> TokenStream {
    match node {
        Node::Leaf(op) => {
            let builder = builder_ident(op);
            quote!(#builder())
        }
        Node::Group(children) => {
            let about = node_about(contract, word, node);
            let subs = children.iter().map(|(w, n)| node_tokens(contract, w, n));
            quote! {
                Command::new(#word)
                    .about(#about)
                    .subcommand_required(true)
                    .arg_required_else_help(true)
                    #(.subcommand(#subs))*
            }
        }
    }
}

/// `cli.rs` of `dispatch-cli`.
pub fn generate(contract: &Contract) -> TokenStream {
    let mut tree = BTreeMap::new();
    for op in &contract.ops {
        insert(&mut tree, &op.meta.cli.path, op);
    }
    let words: Vec<&str> = tree.keys().copied().collect();
    let summaries = tree.iter().map(|(w, n)| {
        let about = node_about(contract, w, n);
        quote!(#w => Some(Command::new(#w).about(#about)),)
    });
    let top = tree.iter().map(|(w, n)| {
        let node = node_tokens(contract, w, n);
        quote!(#w => Some(#node),)
    });
    let builders = contract.ops.iter().map(|op| {
        let builder = builder_ident(op);
        let word = op.meta.cli.path.last().cloned().unwrap_or_default();
        let summary = &op.meta.summary;
        let description = op.description_for(crate::model::Surface::Cli);
        let mut fields = cli_fields(op);
        fields.sort_by_key(|f| f.position.unwrap_or(usize::MAX));
        let args = fields.iter().map(arg);
        let doc = format!("The `{}` command.", op.title);
        quote! {
            #[doc = #doc]
            fn #builder() -> Command {
                Command::new(#word)
                    .about(#summary)
                    .long_about(#description)
                    #(.arg(#args))*
            }
        }
    });
    let arms = contract.ops.iter().map(|op| {
        let path = &op.meta.cli.path;
        let ident = static_ident(op);
        let specs = cli_fields(op).into_iter().map(|f| {
            let name = f.name;
            let kind = kind_tokens(&f.kind);
            quote!(Field { name: #name, kind: #kind })
        });
        quote! {
            [#(#path),*] => Some((&operations::#ident, &[#(#specs),*])),
        }
    });
    let renders = contract.ops.iter().map(|op| {
        let id = &op.meta.id;
        let (_, output) = io_idents(op);
        quote!(#id => shown_as::<types::#output>(output),)
    });
    let exits = contract.ops.iter().map(|op| {
        let id = &op.meta.id;
        let (_, output) = io_idents(op);
        quote!(#id => exit_as::<types::#output>(text),)
    });
    quote! {
        //! The command tree of every contract operation, the map from a command path back
        //! to its operation and the kinds of its fields, and the human rendering of each
        //! operation's typed output.
        use clap::{Arg, ArgAction, Command};
        use dispatch_contract::{Operation, operations, types};

        use crate::args::{Field, FieldKind};
        use crate::render::{Shown, exit_as, shown_as};

        /// The human text and exit status of a successful call of `op`: its output decoded as
        /// the operation's `<Op>Output` and shown by that type's `Render` implementation
        /// (a missing one is a compile error naming the type).
        pub fn shown(op: &Operation, output: &serde_json::Value) -> Shown {
            match op.id {
                #(#renders)*
                _ => shown_as::<serde_json::Value>(output),
            }
        }

        /// The exit status of a successful call of `op` whose output is the JSON `text`:
        /// the text is decoded (as the operation's `<Op>Output`) only when that type's
        /// `Render::EXIT` reads the output, so `--json` passes every other answer through
        /// untouched.
        pub fn exit_status(op: &Operation, text: &str) -> std::process::ExitCode {
            match op.id {
                #(#exits)*
                _ => exit_as::<serde_json::Value>(text),
            }
        }

        /// The words of the top-level commands of the operations, in the order of the tree.
        pub const OPERATION_WORDS: &[&str] = &[#(#words),*];

        /// The top-level commands of every operation; groups nest their operations.
        pub fn operation_commands() -> Vec<Command> {
            OPERATION_WORDS.iter().filter_map(|word| operation_command(word)).collect()
        }

        /// The top-level command `word` alone (a group with all its operations), or `None`
        /// when no operation's command starts with it: what a command line that names it
        /// needs, without building the rest of the tree.
        pub fn operation_command(word: &str) -> Option<Command> {
            match word {
                #(#top)*
                _ => None,
            }
        }

        /// The top-level command `word` as the root's help and errors show it: its name and
        /// summary (clap lists a command by its `about`), without its arguments or
        /// operations.
        pub fn operation_summary(word: &str) -> Option<Command> {
            match word {
                #(#summaries)*
                _ => None,
            }
        }

        #(#builders)*

        /// The operation named by the command words `path`, and its input fields.
        pub fn resolve(path: &[&str]) -> Option<(&'static Operation, &'static [Field])> {
            match path {
                #(#arms)*
                _ => None,
            }
        }
    }
}
