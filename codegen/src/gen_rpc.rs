//! The daemon's jsonrpsee registration: one method per daemon operation.

use proc_macro2::TokenStream;
use quote::quote;

use crate::gen_contract::io_idents;
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
        let (input, _) = io_idents(op);
        quote! {
            register::<D, #input>(&mut module);
        }
    });
    quote! {
        //! One JSON-RPC method per daemon operation: the method named by the operation id runs
        //! the daemon's implementation of it, `impl Handle<<Op>Input> for Service` (e.g.
        //! `Handle<SendInput>`), through `dispatch_contract::run_operation` (the attached-lane
        //! lock, the operation, the action log).
        use dispatch_contract::Dispatch;
        use dispatch_contract::types::*;
        use std::sync::Arc;

        use jsonrpsee::RpcModule;

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
    }
}
