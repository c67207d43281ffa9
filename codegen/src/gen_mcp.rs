//! MCP tool descriptors: one tool per operation, named `dispatch_<op>`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::gen_contract::static_ident;
use crate::model::{Contract, Intent};

/// `tools.rs` of `dispatch-mcp`.
pub fn generate(contract: &Contract) -> TokenStream {
    let names: Vec<String> = contract
        .ops
        .iter()
        .map(|op| format!("dispatch_{}", op.meta.id))
        .collect();
    let tools = contract.ops.iter().zip(&names).map(|(op, name)| {
        let ident = static_ident(op);
        let read_only = op.meta.intent == Intent::Read;
        let destructive = op.meta.intent == Intent::Destroy;
        let idempotent = op.meta.idempotent;
        quote! {
            descriptor(#name, &operations::#ident, Hints {
                read_only: #read_only,
                destructive: #destructive,
                idempotent: #idempotent,
            }),
        }
    });
    let ops = contract.ops.iter().map(static_ident);
    quote! {
        //! The MCP tools: one per contract operation, with the contract's own input and output
        //! schemas and annotations taken from its intent.
        use dispatch_contract::{Operation, operations};

        use crate::descriptor::{Hints, descriptor};

        /// Tool names paired with their operations.
        pub static TOOL_OPERATIONS: &[(&str, &Operation)] = &[#((#names, &operations::#ops)),*];

        /// Every tool descriptor, in operation id order.
        pub fn tools() -> Vec<rmcp::model::Tool> {
            vec![#(#tools)*]
        }
    }
}
