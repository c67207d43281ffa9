//! The operation table, the traits the daemon and the client implement, and the error codes.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use crate::gen_types::type_name;
use crate::model::{Contract, Intent, LaneField, Operation, RunsIn};

/// Identifier of an operation's static in the table: `daemon_status` → `DAEMON_STATUS`.
pub fn static_ident(op: &Operation) -> Ident {
    Ident::new(&op.meta.id.to_uppercase(), Span::call_site())
}

/// `DaemonStatusInput` / `DaemonStatusOutput` as identifiers.
pub fn io_idents(op: &Operation) -> (Ident, Ident) {
    (
        format_ident!("{}", type_name(&op.meta.id, "Input")),
        format_ident!("{}", type_name(&op.meta.id, "Output")),
    )
}

/// The method name of a client-side operation on the `ClientOps` trait.
pub fn method_ident(op: &Operation) -> Ident {
    format_ident!("{}", op.meta.id)
}

/// `operations.rs`: one `Operation` static per operation, the table, and request markers.
pub fn operations(contract: &Contract) -> TokenStream {
    let statics = contract.ops.iter().map(|op| {
        let ident = static_ident(op);
        let id = &op.meta.id;
        let title = &op.title;
        let summary = &op.meta.summary;
        let description = &op.description;
        let intent = match op.meta.intent {
            Intent::Read => quote!(Intent::Read),
            Intent::Write => quote!(Intent::Write),
            Intent::Destroy => quote!(Intent::Destroy),
        };
        let runs_in = match op.meta.runs_in {
            RunsIn::Daemon => quote!(RunsIn::Daemon),
            RunsIn::Client => quote!(RunsIn::Client),
        };
        let idempotent = op.meta.idempotent;
        let writes_history = op.meta.writes_history;
        let starts_model_work = op
            .meta
            .model_work
            .contains(&crate::model::ModelWork::Starts);
        let path = &op.meta.cli.path;
        let positionals = &op.meta.cli.positionals;
        let hash = &op.hash;
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            let items = map.iter().map(|(k, v)| quote!((#k, #v)));
            quote!(&[#(#items),*])
        };
        let client_defaults = {
            let items = op.meta.client_defaults.iter().map(|(field, source)| {
                match source.strip_prefix(crate::model::ENV_SOURCE) {
                    Some(var) => quote!((#field, ClientDefault::Env(#var))),
                    None => quote!((#field, ClientDefault::CurrentDir)),
                }
            });
            quote!(&[#(#items),*])
        };
        let file_inputs = pairs(&op.meta.file_inputs);
        let packet_inputs = pairs(&op.meta.packet_inputs);
        let input = op.input_bundled.to_string();
        let cli_input = op.cli_input_bundled.to_string();
        let output = op.output_bundled.to_string();
        let bound = match call_bound(op) {
            Some((field, default, maximum)) => {
                quote!(Some(CallBound { field: #field, default: #default, maximum: #maximum }))
            }
            None => quote!(None),
        };
        let streaming = match streaming(op) {
            Some((s, limit_default)) => {
                let (switch, after, limit, events, cursor, ended) = (
                    &s.switch, &s.after, &s.limit, &s.events, &s.cursor, &s.ended,
                );
                quote!(Some(Streaming {
                    switch: #switch,
                    after: #after,
                    limit: #limit,
                    limit_default: #limit_default,
                    events: #events,
                    cursor: #cursor,
                    ended: #ended,
                }))
            }
            None => quote!(None),
        };
        let examples = serde_json::to_string(&op.meta.examples).unwrap_or_default();
        let doc = format!("`{title}`: {summary}.");
        let surfaces = op.meta.surfaces.iter().map(|s| match s {
            crate::model::Surface::Cli => quote!(Surface::Cli),
            crate::model::Surface::Mcp => quote!(Surface::Mcp),
        });
        quote! {
            #[doc = #doc]
            pub static #ident: Operation = Operation {
                id: #id,
                title: #title,
                summary: #summary,
                description: #description,
                intent: #intent,
                idempotent: #idempotent,
                writes_history: #writes_history,
                starts_model_work: #starts_model_work,
                runs_in: #runs_in,
                cli_path: &[#(#path),*],
                positionals: &[#(#positionals),*],
                client_defaults: #client_defaults,
                file_inputs: #file_inputs,
                packet_inputs: #packet_inputs,
                bound: #bound,
                contract_hash: #hash,
                input_schema: #input,
                cli_input_schema: #cli_input,
                output_schema: #output,
                examples: #examples,
                streaming: #streaming,
                surfaces: &[#(#surfaces),*],
            };
        }
    });
    let all = contract.ops.iter().map(static_ident);
    let markers = contract.ops.iter().map(|op| {
        let ident = static_ident(op);
        let (input, output) = io_idents(op);
        let lane = lane_accessor(op);
        quote! {
            impl Request for #input {
                type Output = #output;
                const OPERATION: &'static Operation = &#ident;
                #lane
            }
        }
    });
    quote! {
        //! The operation table: one entry per contract file, with its metadata, its
        //! self-contained input and output schemas and its contract hash.
        use super::types::*;
        use crate::handle::LaneArg;
        use crate::hint::Surface;
        use crate::operation::{
            CallBound, ClientDefault, Intent, Operation, Request, RunsIn, Streaming,
        };

        #(#statics)*

        /// Every operation, sorted by id.
        pub static OPERATIONS: &[&Operation] = &[#(&#all),*];

        #(#markers)*
    }
}

/// `Request::lane` of `op`'s input, from `x-dispatch.lane_field` (the lint checks the field's
/// type); nothing when the operation names no lane.
fn lane_accessor(op: &Operation) -> TokenStream {
    let arg = match &op.meta.lane_field {
        None => return quote!(),
        Some(LaneField::Selector(field)) => {
            let field = format_ident!("{}", field);
            quote!(LaneArg::Selector(&self.#field))
        }
        Some(LaneField::Request(field)) => {
            let field = format_ident!("{}", field);
            quote!(LaneArg::Request(u64::from(self.#field)))
        }
        Some(LaneField::Created(_)) => quote!(LaneArg::Created),
    };
    quote! {
        fn lane(&self) -> Option<LaneArg<'_>> {
            Some(#arg)
        }
    }
}

/// `x-dispatch.streaming` with the default of its limit field (the lint checks it is one).
fn streaming(op: &Operation) -> Option<(&crate::model::Streaming, u64)> {
    let stream = op.meta.streaming.as_ref()?;
    let default = op
        .wire_input
        .pointer(&format!("/properties/{}/default", stream.limit))?
        .as_u64()?;
    Some((stream, default))
}

/// The field named by `bounded_by`, with its default and maximum (the lint checks that both
/// are numbers).
fn call_bound(op: &Operation) -> Option<(&str, f64, f64)> {
    let field = op.meta.bounded_by.as_deref()?;
    let schema = op.wire_input.pointer(&format!("/properties/{field}"))?;
    let number = |key: &str| schema.get(key).and_then(serde_json::Value::as_f64);
    Some((field, number("default")?, number("maximum")?))
}

fn trait_methods<'a>(ops: impl Iterator<Item = &'a Operation>) -> TokenStream {
    let methods = ops.map(|op| {
        let name = method_ident(op);
        let (input, output) = io_idents(op);
        let doc = format!("`{}`: {}.", op.title, op.meta.summary);
        quote! {
            #[doc = #doc]
            fn #name(&self, input: #input)
                -> impl Future<Output = Result<#output, DispatchError>> + Send;
        }
    });
    quote!(#(#methods)*)
}

fn runs_in(contract: &Contract, place: RunsIn) -> impl Iterator<Item = &Operation> {
    contract
        .ops
        .iter()
        .filter(move |op| op.meta.runs_in == place)
}

/// `api.rs`: the `Dispatch` trait (every daemon operation's `Handle`, and the hooks around
/// them), the `ClientOps` trait (client-side operations) and the JSON entry point of the
/// client-side ones.
pub fn api(contract: &Contract) -> TokenStream {
    let handles = runs_in(contract, RunsIn::Daemon).map(|op| {
        let (input, _) = io_idents(op);
        quote!(+ Handle<#input>)
    });
    let client = trait_methods(runs_in(contract, RunsIn::Client));
    let arms = runs_in(contract, RunsIn::Client).map(|op| {
        let id = &op.meta.id;
        let name = method_ident(op);
        let (input, _) = io_idents(op);
        quote! {
            #id => encode_output(ops.#name(decode_input::<#input>(input)?).await?),
        }
    });
    quote! {
        //! The traits that implement the contract. `dispatchd` implements [`Dispatch`] (one
        //! [`Handle`] per daemon operation, plus the hooks); the CLI and MCP front ends
        //! implement [`ClientOps`] for the operations that need no daemon.
        // Method names are the operation ids, `new` included.
        #![allow(clippy::wrong_self_convention, clippy::new_ret_no_self)]
        use std::future::Future;

        use super::types::*;
        use crate::error::DispatchError;
        use crate::handle::{Handle, LaneArg, WriteRecord};
        use crate::operation::{Operation, decode_input, encode_output};

        /// The daemon: one [`Handle`] implementation per daemon operation (a missing one is a
        /// compile error naming its input type), and the hooks that
        /// [`run_operation`](crate::run_operation) calls around every operation.
        pub trait Dispatch: Send + Sync + 'static #(#handles)* {
            /// Whether the daemon has no work in flight (no running turn, no pending
            /// approval). A client may restart an idle daemon that answered `daemon_stale`.
            fn idle(&self) -> bool {
                true
            }

            /// Called before every operation the contract marks as writing turns or history
            /// (`writes_history`), with the lane its input names (`lane_field`): the one place
            /// where the attached-lane write lock is enforced. Returns the lane's ref, for the
            /// action log.
            fn authorize_history_write(
                &self,
                op: &'static Operation,
                lane: LaneArg<'_>,
            ) -> impl Future<Output = Result<Option<String>, DispatchError>> + Send {
                let _ = (op, lane);
                async { Ok(None) }
            }

            /// Called before every operation the contract says can start model work
            /// (`model_work` has `starts`), before its first side effect: from then until
            /// [`Self::model_work_ends`] the daemon is not idle. Refused (typed, nothing
            /// done) once the daemon has agreed to stop.
            fn model_work_begins(&self, op: &'static Operation) -> Result<(), DispatchError> {
                let _ = op;
                Ok(())
            }

            /// Called once the operation that [`Self::model_work_begins`] admitted has ended
            /// (its outcome recorded, or the call dropped).
            fn model_work_ends(&self) {}

            /// Called after every operation whose intent is write or destroy: the one place
            /// where the action log is written.
            fn record_write(&self, record: WriteRecord<'_>) -> impl Future<Output = ()> + Send {
                let _ = record;
                async {}
            }
        }

        /// The operations that run in the calling process.
        pub trait ClientOps: Send + Sync {
            #client
        }

        /// Runs the client-side operation `op` on JSON input: validates the input against
        /// the contract, calls the method, and returns the output as JSON.
        pub async fn call_client_op<C: ClientOps>(
            ops: &C,
            op: &Operation,
            input: serde_json::Value,
        ) -> Result<serde_json::Value, DispatchError> {
            match op.id {
                #(#arms)*
                other => Err(DispatchError::internal(format!(
                    "`{other}` is not a client-side operation"
                ))),
            }
        }
    }
}

/// `errors.rs`: the `ErrorCode` enum and its tables.
pub fn errors(contract: &Contract) -> TokenStream {
    let variant = |code: &str| format_ident!("{}", type_name(code, ""));
    let variants = contract.errors.iter().map(|e| {
        let v = variant(&e.code);
        let doc = format!("`{}`: {}.", e.code, e.summary);
        quote!(#[doc = #doc] #v,)
    });
    let all = contract.errors.iter().map(|e| variant(&e.code));
    let table = |f: &dyn Fn(&crate::model::ErrorSpec) -> TokenStream| {
        let arms = contract.errors.iter().map(|e| {
            let v = variant(&e.code);
            let value = f(e);
            quote!(ErrorCode::#v => #value,)
        });
        quote!(match self { #(#arms)* })
    };
    let as_str = table(&|e| {
        let c = &e.code;
        quote!(#c)
    });
    let exit = table(&|e| {
        let c = e.exit_code;
        quote!(#c)
    });
    let rpc = table(&|e| {
        let c = e.jsonrpc_code;
        quote!(#c)
    });
    let summary = table(&|e| {
        let c = &e.summary;
        quote!(#c)
    });
    quote! {
        //! The stable error codes of `contract/errors.json`.

        /// A stable error code: one exit code, one JSON-RPC code and one hint each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            #(#variants)*
        }

        impl ErrorCode {
            /// Every code, in catalog order.
            pub const ALL: &[ErrorCode] = &[#(ErrorCode::#all),*];

            /// The code as written on every surface, e.g. `not_found`.
            pub const fn as_str(self) -> &'static str { #as_str }

            /// The CLI's process exit code (1..=125, checked by the contract lint).
            pub const fn exit_code(self) -> u8 { #exit }

            /// The process exit status of an error with this code.
            pub fn exit_status(self) -> std::process::ExitCode {
                std::process::ExitCode::from(self.exit_code())
            }

            /// The JSON-RPC error code on the daemon socket.
            pub const fn jsonrpc_code(self) -> i32 { #rpc }

            /// What the code means.
            pub const fn summary(self) -> &'static str { #summary }

            /// The code named `code`, if it exists.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
            }
        }
    }
}
