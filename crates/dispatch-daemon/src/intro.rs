//! Signed messages (`send` with `intro`): a footer that names the sending lane and how to
//! answer it, and a `direct_message` copy in the recipient's inbox. The sender is the caller's
//! own lane (see `caller.rs`), never an argument, so a lane cannot sign as another.

use dispatch_registry::{DeliveryRow, LaneRow, NewInboxMessage};
use serde_json::json;

/// The lane in words: `0k7M4a (@review, "fix the flaky test")`.
fn named(lane: &LaneRow) -> String {
    let mut names = Vec::new();
    if let Some(handle) = &lane.handle {
        names.push(format!("@{handle}"));
    }
    if let Some(title) = &lane.title {
        names.push(format!("\"{title}\""));
    }
    if names.is_empty() {
        lane.lane_ref.clone()
    } else {
        format!("{} ({})", lane.lane_ref, names.join(", "))
    }
}

/// The footer appended to a signed message. The reader is an agent that may have the MCP
/// tools or only a shell, so it names both ways to answer.
pub fn footer(sender: &LaneRow) -> String {
    format!(
        "\n\n---\n[dispatch] From lane {}, Codex thread {}. To answer, send to lane {}: the \
         `dispatch_send` tool with `lane` \"{}\" and `intro` true, or `dispatch send {} \
         --intro \"...\"`.",
        named(sender),
        sender.thread_id,
        sender.lane_ref,
        sender.lane_ref,
        sender.lane_ref,
    )
}

/// The inbox copy of a signed message, stored once per receipt.
pub fn direct_message(
    sender: &LaneRow,
    recipient: &LaneRow,
    receipt: &DeliveryRow,
) -> NewInboxMessage {
    let first_line = receipt.text.lines().next().unwrap_or_default();
    let subject: String = first_line.chars().take(120).collect();
    let subject = if subject.len() < first_line.len() {
        format!("{subject}…")
    } else {
        subject
    };
    NewInboxMessage {
        lane_ref: Some(recipient.lane_ref.clone()),
        kind: "direct_message".to_owned(),
        subject: format!("from lane {}: {subject}", sender.lane_ref),
        body: receipt.text.clone(),
        about_ref: Some(sender.lane_ref.clone()),
        turn_id: receipt.turn_id.clone(),
        data: Some(json!({
            "receipt": receipt.id,
            "mode": receipt.mode.as_str(),
            "sender": sender.lane_ref,
        })),
        origin: Some(format!("intro:{}", receipt.id)),
    }
}
