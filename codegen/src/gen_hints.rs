//! The default hint of every error code as data: its surface-neutral text and the operations
//! it suggests (`errors.json`: `hint` and `run`), rendered by each front end.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::gen_contract::static_ident;
use crate::gen_types::type_name;
use crate::model::Contract;

/// `hints.rs` of `dispatch-contract`.
pub fn generate(contract: &Contract) -> TokenStream {
    let arms = contract.errors.iter().map(|e| {
        let variant = format_ident!("{}", type_name(&e.code, ""));
        let text = &e.hint;
        let runs = e.run.iter().map(|run| {
            // The lint checked that the operation exists.
            let op = contract
                .ops
                .iter()
                .find(|op| op.meta.id == run.op)
                .map(static_ident);
            let args = serde_json::Value::Object(run.args.clone()).to_string();
            quote!(.run(&operations::#op, json(#args)))
        });
        quote!(ErrorCode::#variant => Hint::new(#text) #(#runs)*,)
    });
    quote! {
        //! The default hint of every error code: surface-neutral text and the operations it
        //! suggests, rendered by each front end in its own words.
        use crate::generated::errors::ErrorCode;
        use crate::generated::operations;
        use crate::hint::Hint;

        fn json(text: &str) -> serde_json::Value {
            serde_json::from_str(text).unwrap_or_default()
        }

        impl ErrorCode {
            /// How to recover, when the error itself gives no better hint.
            pub fn hint(self) -> Hint {
                match self {
                    #(#arms)*
                }
            }
        }
    }
}
