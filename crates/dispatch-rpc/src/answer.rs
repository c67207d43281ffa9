//! A single call's answer written once: the method serializes its whole JSON-RPC answer
//! (`{"jsonrpc":"2.0","id":..,"result":<output>}`) into one buffer, sized from the previous
//! answer of the same method, and that buffer becomes the HTTP body as it is.
//!
//! jsonrpsee would otherwise encode the output again into a buffer of its own that grows from
//! 128 bytes, and parse the whole answer once more to check it; for a `list` of 1,000 lanes
//! (over 500 KiB) those copies, and the page faults of each fresh buffer, were a large share
//! of the daemon's time (ADR 0020).
//!
//! How the buffer reaches the body: for every plain HTTP request (never a WebSocket upgrade)
//! the HTTP middleware puts an [`AnswerSlot`] in the request's extensions, which jsonrpsee
//! hands to the call. The RPC middleware arms it with the call's id, for a single call only
//! (never a call inside a batch, never a notification). The method then writes its answer
//! into the armed slot and gives jsonrpsee a `null` placeholder; the HTTP middleware takes the
//! buffer back and sends it instead of jsonrpsee's body. Answers on a WebSocket and in batches
//! are encoded as before.
//!
//! An answer is bounded by [`MAX_ANSWER_BYTES`], the most a client reads: a larger one is a
//! typed error naming the limit, on every path.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dispatch_contract::{DispatchError, Operation};
use jsonrpsee::types::Id;
use serde::Serialize;
use serde_json::value::RawValue;

/// The largest answer the daemon sends and a client reads, in bytes (the whole JSON-RPC
/// message); the same bound as jsonrpsee's WebSocket client's default.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// Room for the envelope around a result (`{"jsonrpc":"2.0","id":..,"result":..}`), so that a
/// result encoded alone is held to the same bound as a whole answer.
const ENVELOPE_ROOM: usize = 256;

/// Where a single HTTP call's method leaves its encoded answer; shared by the HTTP request's
/// extensions and the call's.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnswerSlot(Arc<Mutex<Slot>>);

#[derive(Debug, Default)]
struct Slot {
    /// The call's id as JSON, once the call is known to be a single one.
    id: Option<String>,
    /// The whole answer, once the method wrote it.
    body: Option<Vec<u8>>,
}

impl AnswerSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the slot as the answer of the single call `id`.
    pub(crate) fn arm(&self, id: &Id<'_>) {
        if let Ok(id) = serde_json::to_string(id) {
            self.lock().id = Some(id);
        }
    }

    /// The id of the single call this slot answers, if it was armed and is still empty.
    fn armed(&self) -> Option<String> {
        let slot = self.lock();
        match slot.body {
            Some(_) => None,
            None => slot.id.clone(),
        }
    }

    fn fill(&self, body: Vec<u8>) {
        self.lock().body = Some(body);
    }

    /// The answer a method wrote, if any.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.lock().body.take()
    }
}

/// The size of a method's last answer, to size the next one's buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeHint(Arc<AtomicUsize>);

impl SizeHint {
    /// Room for the next answer: the last one's size and a little more (answers grow by a
    /// lane or an item between calls), at least a small page.
    fn capacity(&self) -> usize {
        let last = self.0.load(Ordering::Relaxed);
        (last + last / 16).clamp(512, MAX_ANSWER_BYTES)
    }

    fn record(&self, size: usize) {
        self.0.store(size, Ordering::Relaxed);
    }
}

/// A buffer that refuses to grow beyond `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > self.max {
            return Err(io::Error::other("over the answer limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `output` encoded into at most `max` bytes (`None`: larger), preceded by `prefix` and
/// followed by `suffix`.
fn encode(
    prefix: &[u8],
    output: &impl Serialize,
    suffix: &[u8],
    capacity: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, DispatchError> {
    let mut out = Bounded {
        buf: Vec::with_capacity(capacity.min(max)),
        max,
    };
    out.buf.extend_from_slice(prefix);
    match serde_json::to_writer(&mut out, output) {
        Ok(()) => {}
        Err(err) if err.is_io() => return Ok(None),
        Err(err) => {
            return Err(DispatchError::internal(format!(
                "encoding an output: {err}"
            )));
        }
    }
    if out.buf.len() + suffix.len() > max {
        return Ok(None);
    }
    out.buf.extend_from_slice(suffix);
    Ok(Some(out.buf))
}

/// The error for an answer over [`MAX_ANSWER_BYTES`], on either side of the socket: nothing
/// of it is sent or shown.
pub(crate) fn too_large_answer(op: &Operation) -> DispatchError {
    let limit = MAX_ANSWER_BYTES;
    DispatchError::internal(format!(
        "the answer to `{}` is larger than {} MiB, the most a client reads",
        op.title,
        limit / (1024 * 1024)
    ))
    .with_hint("ask for less at a time: a smaller limit, then the next page with the cursor")
    .with_details(serde_json::json!({ "op": op.id, "limit_bytes": limit }))
}

/// The error for a batch whose answers add up to more than [`MAX_ANSWER_BYTES`].
pub(crate) fn too_large_batch() -> DispatchError {
    let limit = MAX_ANSWER_BYTES;
    DispatchError::internal(format!(
        "the answers to this batch are larger than {} MiB, the most a client reads",
        limit / (1024 * 1024)
    ))
    .with_hint("send fewer calls per batch, or one call per request")
    .with_details(serde_json::json!({ "limit_bytes": limit }))
}

/// How a method answers `output`: into `slot` when it is armed (the result jsonrpsee gets is
/// then a `null` placeholder), else as JSON text for jsonrpsee to wrap. Either way an answer
/// over [`MAX_ANSWER_BYTES`] is [`too_large_answer`].
pub(crate) fn answer(
    op: &Operation,
    output: &impl Serialize,
    slot: Option<&AnswerSlot>,
    hint: &SizeHint,
) -> Result<Box<RawValue>, DispatchError> {
    if let Some((slot, id)) = slot.and_then(|slot| slot.armed().map(|id| (slot, id))) {
        let prefix = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":");
        let body = encode(
            prefix.as_bytes(),
            output,
            b"}",
            hint.capacity(),
            MAX_ANSWER_BYTES,
        )?
        .ok_or_else(|| too_large_answer(op))?;
        hint.record(body.len());
        slot.fill(body);
        return Ok(RawValue::NULL.to_owned());
    }
    // A WebSocket call or a call in a batch: jsonrpsee wraps the text.
    let text = serde_json::value::to_raw_value(output)
        .map_err(|err| DispatchError::internal(format!("encoding an output: {err}")))?;
    if text.get().len() > MAX_ANSWER_BYTES - ENVELOPE_ROOM {
        return Err(too_large_answer(op));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_contract::ErrorCode;
    use serde_json::json;

    /// An armed slot receives the whole answer, with the call's id; jsonrpsee gets `null`.
    /// An unarmed one (a WebSocket call, a call in a batch) is left alone and the result comes
    /// back as text.
    #[test]
    fn an_armed_slot_gets_the_whole_answer_and_others_get_the_text() {
        let op = &dispatch_contract::operations::LIST;
        let hint = SizeHint::default();
        let output = json!({"lanes": [{"ref": "abc123", "title": "x\n\u{e9}"}], "z": null});
        let slot = AnswerSlot::default();
        slot.arm(&Id::Number(7));
        let placeholder = answer(op, &output, Some(&slot), &hint).expect("answered");
        assert_eq!(placeholder.get(), "null");
        let body = slot.take().expect("a body");
        assert_eq!(
            String::from_utf8(body).expect("utf-8"),
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}}",
                serde_json::to_string(&output).expect("json")
            )
        );
        let unarmed = AnswerSlot::default();
        let text = answer(op, &output, Some(&unarmed), &hint).expect("answered");
        assert_eq!(
            text.get(),
            serde_json::to_string(&output).expect("json"),
            "the same text as before"
        );
        assert!(unarmed.take().is_none());
        let text = answer(op, &output, None, &hint).expect("answered");
        assert_eq!(text.get(), serde_json::to_string(&output).expect("json"));
        slot.arm(&Id::Str("a\"b".into()));
        answer(op, &output, Some(&slot), &hint).expect("answered");
        let body = String::from_utf8(slot.take().expect("a body")).expect("utf-8");
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(parsed["id"], json!("a\"b"));
        assert_eq!(parsed["result"], output);
    }

    /// An answer over the limit is a typed error that names the limit, on both paths, and
    /// the buffer stops growing at the limit.
    #[test]
    fn an_answer_over_the_limit_is_a_typed_error() {
        let op = &dispatch_contract::operations::LIST;
        let hint = SizeHint::default();
        let big = "x".repeat(MAX_ANSWER_BYTES);
        let slot = AnswerSlot::default();
        slot.arm(&Id::Number(1));
        for slot in [Some(&slot), None] {
            let err = answer(op, &big, slot, &hint).expect_err("too large");
            assert_eq!(err.code, ErrorCode::Internal);
            assert!(
                err.message.contains("larger than 10 MiB"),
                "{}",
                err.message
            );
            assert_eq!(
                err.details.get("limit_bytes"),
                Some(&json!(MAX_ANSWER_BYTES))
            );
        }
        assert!(slot.take().is_none(), "nothing of it is sent");
        let fits = "x".repeat(MAX_ANSWER_BYTES - ENVELOPE_ROOM - 2);
        assert!(answer(op, &fits, None, &hint).is_ok());
    }

    /// The next buffer is sized from the last answer of the same method.
    #[test]
    fn the_buffer_is_sized_from_the_last_answer() {
        let hint = SizeHint::default();
        assert_eq!(hint.capacity(), 512);
        hint.record(160_000);
        assert_eq!(hint.capacity(), 170_000);
        hint.record(usize::MAX / 2);
        assert_eq!(hint.capacity(), MAX_ANSWER_BYTES);
    }
}
