//! The daemon's jsonrpsee registration and the typed client methods.

use proc_macro2::TokenStream;
use quote::quote;

use crate::gen_contract::{io_idents, method_ident};
use crate::model::{Contract, RunsIn};

/// `rpc.rs` of `dispatch-rpc`.
pub fn generate(contract: &Contract) -> TokenStream {
    let ops: Vec<_> = contract
        .ops
        .iter()
        .filter(|op| op.meta.runs_in == RunsIn::Daemon)
        .collect();
    let names = ops.iter().map(|op| &op.meta.id);
    let registrations = ops.iter().map(|op| {
        let name = method_ident(op);
        let (input, _) = io_idents(op);
        quote! {
            register::<D, #input, _, _>(&mut module, |service, input| async move {
                service.#name(input).await
            });
        }
    });
    let client_methods = ops.iter().map(|op| {
        let name = method_ident(op);
        let (input, output) = io_idents(op);
        let doc = format!("`{}`: {}.", op.title, op.meta.summary);
        quote! {
            #[doc = #doc]
            pub async fn #name(&self, input: &#input) -> Result<#output, DispatchError> {
                self.call(input).await
            }
        }
    });
    quote! {
        //! One JSON-RPC method per daemon operation, and the matching typed client methods.
        // Method names are the operation ids, `new` included.
        #![allow(clippy::new_ret_no_self, clippy::wrong_self_convention)]
        use dispatch_contract::types::*;
        use dispatch_contract::{Dispatch, DispatchError};
        use std::sync::Arc;

        use jsonrpsee::RpcModule;

        use crate::client::DaemonClient;
        use crate::server::register;

        /// The JSON-RPC method names, one per daemon operation (the operation id).
        pub const METHODS: &[&str] = &[#(#names),*];

        /// The daemon's RPC module. Every method checks the caller's contract hash and
        /// validates its input against the contract before `service` sees it.
        pub fn rpc_module<D: Dispatch>(service: Arc<D>) -> RpcModule<D> {
            let mut module = RpcModule::from_arc(service);
            #(#registrations)*
            module
        }

        impl DaemonClient {
            #(#client_methods)*
        }
    }
}
