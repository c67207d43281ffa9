//! Receipts: `delivery get` shows one, `delivery reconcile` looks for an ambiguous one in its
//! thread once more (and, with `release`, gives up on one that is not found). The idempotency
//! payload of a message is hashed here too.

use dispatch_contract::types::{
    DeliveryGetInput, DeliveryGetOutput, DeliveryMode, DeliveryReconcileInput,
    DeliveryReconcileOutput, DeliveryState, Receipt, ReceiptImage, ReceiptLane,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry as registry;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::convert::rfc3339;
use crate::service::Service;

/// The hash an idempotency key binds: the payload as the caller gave it (the selector as
/// typed, not the lane it resolves to), as canonical JSON.
pub fn payload_hash(payload: &serde_json::Value) -> String {
    let digest = Sha256::digest(payload.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The contract's mode of a stored delivery.
pub fn mode(mode: registry::DeliveryMode) -> DeliveryMode {
    match mode {
        registry::DeliveryMode::Send => DeliveryMode::Send,
        registry::DeliveryMode::Steer => DeliveryMode::Steer,
        registry::DeliveryMode::Queue => DeliveryMode::Queue,
        registry::DeliveryMode::Interject => DeliveryMode::Interject,
        registry::DeliveryMode::Context => DeliveryMode::Context,
    }
}

/// The registry's mode of a requested one.
pub fn registry_mode(mode: DeliveryMode) -> registry::DeliveryMode {
    match mode {
        DeliveryMode::Send => registry::DeliveryMode::Send,
        DeliveryMode::Steer => registry::DeliveryMode::Steer,
        DeliveryMode::Queue => registry::DeliveryMode::Queue,
        DeliveryMode::Interject => registry::DeliveryMode::Interject,
        DeliveryMode::Context => registry::DeliveryMode::Context,
    }
}

/// The contract's state of a stored delivery.
pub fn state(state: registry::DeliveryState) -> DeliveryState {
    match state {
        registry::DeliveryState::Queued => DeliveryState::Queued,
        registry::DeliveryState::Submitting => DeliveryState::Submitting,
        registry::DeliveryState::Accepted => DeliveryState::Accepted,
        registry::DeliveryState::Completed => DeliveryState::Completed,
        registry::DeliveryState::Failed => DeliveryState::Failed,
        registry::DeliveryState::Ambiguous => DeliveryState::Ambiguous,
    }
}

/// A stored delivery as the contract shows it.
pub fn receipt(row: registry::DeliveryRow, thread_id: String) -> Receipt {
    Receipt {
        receipt: row.id,
        lane: ReceiptLane {
            ref_: row.lane_ref,
            id: thread_id,
        },
        mode: mode(row.mode),
        state: state(row.state),
        turn_id: row.turn_id,
        error: row.error,
        source: row.source,
        sender: row.sender_ref,
        text: row.text,
        images: row
            .images
            .into_iter()
            .map(|image| ReceiptImage {
                path: image.path,
                size: image.size,
                sha256: image.sha256,
            })
            .collect(),
        created_at: rfc3339(row.created_at_ms),
        updated_at: rfc3339(row.updated_at_ms),
        checks: u64::try_from(row.checks).unwrap_or(0),
    }
}

impl Service {
    /// The receipt `id`, or `not_found`.
    async fn stored_receipt(&self, id: &str) -> Result<registry::DeliveryRow, DispatchError> {
        self.registry().delivery(id).await?.ok_or_else(|| {
            DispatchError::new(
                ErrorCode::NotFound,
                format!("no delivery has receipt `{id}`"),
            )
            .with_hint(
                Hint::new("a receipt is what {0} returned as `receipt`").run(
                    &operations::SEND,
                    json!({ "lane": "<lane>", "text": "<text>" }),
                ),
            )
        })
    }

    /// The contract's receipt of `row`, with its lane's thread id.
    pub async fn show_receipt(&self, row: registry::DeliveryRow) -> Result<Receipt, DispatchError> {
        let thread_id = self
            .registry()
            .lane(&row.lane_ref)
            .await?
            .map(|lane| lane.thread_id)
            .unwrap_or_default();
        Ok(receipt(row, thread_id))
    }
}

/// `delivery get`.
impl Handle<DeliveryGetInput> for Service {
    async fn handle(&self, input: DeliveryGetInput) -> Result<DeliveryGetOutput, DispatchError> {
        let row = self.stored_receipt(&input.receipt).await?;
        Ok(DeliveryGetOutput(self.show_receipt(row).await?))
    }
}

/// `delivery reconcile`: one more look in the thread; never a resend.
impl Handle<DeliveryReconcileInput> for Service {
    async fn handle(
        &self,
        input: DeliveryReconcileInput,
    ) -> Result<DeliveryReconcileOutput, DispatchError> {
        let row = self.stored_receipt(&input.receipt).await?;
        let open = matches!(
            row.state,
            registry::DeliveryState::Ambiguous | registry::DeliveryState::Submitting
        );
        let found = open && self.find_delivery(&row).await?;
        let mut released = false;
        if open && !found && input.release {
            released = self
                .registry()
                .set_delivery_state(
                    &row.id,
                    &[registry::DeliveryState::Ambiguous],
                    registry::DeliveryState::Failed,
                    None,
                    Some(
                        "released by the operator: not found in the thread, so not delivered \
                         as far as Codex's history shows",
                    ),
                )
                .await?;
            if released {
                self.wake_queue(&row.lane_ref);
            }
        }
        let row = self.stored_receipt(&input.receipt).await?;
        Ok(DeliveryReconcileOutput {
            receipt: self.show_receipt(row).await?,
            found,
            released,
        })
    }

    fn logged(output: &DeliveryReconcileOutput) -> Logged {
        let what = if output.released {
            "released (not found in the thread)"
        } else if output.found {
            "found in the thread"
        } else {
            "not found in the thread"
        };
        Logged::lane(
            &output.receipt.lane.ref_,
            format!("receipt {}: {what}", output.receipt.receipt),
        )
    }
}
