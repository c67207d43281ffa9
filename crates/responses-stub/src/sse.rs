//! Server-sent events in the shape of the OpenAI Responses API streaming protocol.

use serde_json::{Value, json};

/// One SSE frame: `event: <type>` plus `data: <json>` (the JSON also carries `type`).
pub(crate) fn frame(event_type: &str, mut data: Value) -> String {
    if let Value::Object(map) = &mut data {
        map.insert("type".into(), Value::String(event_type.into()));
    }
    format!("event: {event_type}\ndata: {data}\n\n")
}

pub(crate) fn created(response_id: &str) -> String {
    frame(
        "response.created",
        json!({ "response": { "id": response_id } }),
    )
}

pub(crate) fn message_added(item_id: &str) -> String {
    frame(
        "response.output_item.added",
        json!({
            "output_index": 0,
            "item": { "type": "message", "role": "assistant", "id": item_id, "content": [] }
        }),
    )
}

pub(crate) fn text_delta(item_id: &str, delta: &str) -> String {
    frame(
        "response.output_text.delta",
        json!({ "output_index": 0, "content_index": 0, "item_id": item_id, "delta": delta }),
    )
}

pub(crate) fn message_done(item_id: &str, text: &str) -> String {
    frame(
        "response.output_item.done",
        json!({
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "id": item_id,
                "content": [{ "type": "output_text", "text": text }]
            }
        }),
    )
}

pub(crate) fn function_call_done(
    item_id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> String {
    frame(
        "response.output_item.done",
        json!({
            "output_index": 0,
            "item": {
                "type": "function_call",
                "id": item_id,
                "call_id": call_id,
                "name": name,
                "arguments": arguments
            }
        }),
    )
}

pub(crate) fn completed(response_id: &str) -> String {
    frame(
        "response.completed",
        json!({
            "response": {
                "id": response_id,
                "usage": {
                    "input_tokens": 10,
                    "input_tokens_details": { "cached_tokens": 0 },
                    "output_tokens": 5,
                    "output_tokens_details": { "reasoning_tokens": 0 },
                    "total_tokens": 15
                }
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_carries_type_in_event_and_data() {
        let f = created("resp_1");
        assert!(f.starts_with("event: response.created\ndata: {"));
        assert!(f.ends_with("\n\n"));
        let data: Value = serde_json::from_str(
            f.lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line"),
        )
        .expect("json");
        assert_eq!(data["type"], "response.created");
        assert_eq!(data["response"]["id"], "resp_1");
    }
}
