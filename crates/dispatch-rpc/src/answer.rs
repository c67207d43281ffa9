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
//!
//! A large answer's buffer is used again: once its body was sent, a buffer of
//! [`RECYCLE_MIN`] to [`RECYCLE_MAX`] bytes goes back to its method, and that method's next
//! large answer is written into it. glibc gives a freed block of that size back to the system
//! (unmapped, or trimmed off the top of the heap), so each `list` of 1,000 lanes paid about a
//! hundred page faults for its answer alone; a method keeps at most one spare (ADR 0020,
//! "`list` of 1,000 lanes, third round").

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dispatch_contract::{DispatchError, Operation};
use hyper::body::Bytes;
use jsonrpsee::types::Id;
use serde::Serialize;
use serde_json::value::RawValue;

/// The largest answer the daemon sends and a client reads, in bytes (the whole JSON-RPC
/// message); the same bound as jsonrpsee's WebSocket client's default.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;

/// The smallest answer buffer a method keeps for its next answer: glibc's trim threshold (and
/// its initial mmap threshold). A smaller block freed stays in the heap, its pages mapped; a
/// larger one is unmapped or trimmed when freed, and the next one faults its pages in again.
pub(crate) const RECYCLE_MIN: usize = 128 * 1024;

/// The largest answer buffer a method keeps: what a method holds between calls stays small
/// (a `list` of 1,000 lanes is about 400 KiB).
pub(crate) const RECYCLE_MAX: usize = 1024 * 1024;

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
    body: Option<Bytes>,
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

    fn fill(&self, body: Bytes) {
        self.lock().body = Some(body);
    }

    /// The answer a method wrote, if any.
    pub(crate) fn take(&self) -> Option<Bytes> {
        self.lock().body.take()
    }
}

/// What a method remembers of its answers: the size of the last one, to size the next one's
/// buffer, and the buffer of its last large answer once that was sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeHint(Arc<Memory>);

#[derive(Debug, Default)]
struct Memory {
    last: AtomicUsize,
    /// A buffer of [`RECYCLE_MIN`]..=[`RECYCLE_MAX`] bytes of capacity, empty, back from a
    /// sent answer.
    spare: Mutex<Option<Vec<u8>>>,
}

impl SizeHint {
    /// Room for the next answer: the last one's size and a little more (answers grow by a
    /// lane or an item between calls), at least a small page.
    fn capacity(&self) -> usize {
        let last = self.0.last.load(Ordering::Relaxed);
        (last + last / 16).clamp(512, MAX_ANSWER_BYTES)
    }

    fn record(&self, size: usize) {
        self.0.last.store(size, Ordering::Relaxed);
    }

    /// An empty buffer of at least `capacity` bytes: the spare when there is one (grown if
    /// need be), else a new one.
    fn buffer(&self, capacity: usize) -> Vec<u8> {
        let spare = self
            .0
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match spare {
            Some(mut buf) => {
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// `buf` as a body that gives the buffer back to this method once it was sent (dropped),
    /// when it is worth keeping.
    fn body(&self, buf: Vec<u8>) -> Bytes {
        if (RECYCLE_MIN..=RECYCLE_MAX).contains(&buf.capacity()) {
            Bytes::from_owner(Recycled {
                buf,
                home: self.clone(),
            })
        } else {
            Bytes::from(buf)
        }
    }
}

/// An answer's buffer on its way out; dropped once sent, it becomes its method's spare.
struct Recycled {
    buf: Vec<u8>,
    home: SizeHint,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        *self
            .home
            .0
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(buf);
    }
}

/// A buffer that refuses to grow beyond `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

// Inlined: the encoder calls it for every token of the answer.
impl io::Write for Bounded {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    #[inline]
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

/// `output` encoded into `buf` (empty) up to at most `max` bytes (`None`: larger), preceded
/// by `prefix` and followed by `suffix`.
fn encode(
    prefix: &[u8],
    output: &impl Serialize,
    suffix: &[u8],
    buf: Vec<u8>,
    max: usize,
) -> Result<Option<Vec<u8>>, DispatchError> {
    let mut out = Bounded { buf, max };
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
            hint.buffer(hint.capacity()),
            MAX_ANSWER_BYTES,
        )?
        .ok_or_else(|| too_large_answer(op))?;
        hint.record(body.len());
        slot.fill(hint.body(body));
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

    /// The answer to a client's call (id 1) begins as the client's in-place read expects
    /// (`oneshot::WRITTEN_PREFIX`): were the two to drift apart, every answer would take the
    /// client's slower path without a word.
    #[test]
    fn the_answer_to_a_clients_call_is_in_the_form_the_client_cuts() {
        let slot = AnswerSlot::default();
        slot.arm(&Id::Number(1));
        let output = json!({"lanes": []});
        answer(
            &dispatch_contract::operations::LIST,
            &output,
            Some(&slot),
            &SizeHint::default(),
        )
        .expect("answered");
        let body = slot.take().expect("a body");
        assert!(body.starts_with(crate::oneshot::WRITTEN_PREFIX), "{body:?}");
        assert!(body.ends_with(b"}"));
    }

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
            String::from_utf8(body.to_vec()).expect("utf-8"),
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
        let body = String::from_utf8(slot.take().expect("a body").to_vec()).expect("utf-8");
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

    /// A large answer's buffer, once its body was sent (dropped), holds the method's next
    /// answer: the same memory, not a fresh mapping. Small buffers and ones over
    /// [`RECYCLE_MAX`] are not kept, and a body still being sent is never written into.
    #[test]
    fn a_large_answers_buffer_is_used_again_once_sent() {
        let op = &dispatch_contract::operations::LIST;
        let hint = SizeHint::default();
        let send = |output: &serde_json::Value| {
            let slot = AnswerSlot::default();
            slot.arm(&Id::Number(1));
            answer(op, output, Some(&slot), &hint).expect("answered");
            slot.take().expect("a body")
        };
        let large = json!({ "text": "x".repeat(RECYCLE_MIN * 2) });
        let first = send(&large);
        let at = first.as_ptr();
        // Still being sent: the next answer gets a buffer of its own.
        let second = send(&large);
        assert_ne!(second.as_ptr(), at);
        let expected = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}}",
            serde_json::to_string(&large).expect("json")
        );
        assert_eq!(&first[..], expected.as_bytes());
        // The last one sent is kept (one spare per method).
        drop(second);
        drop(first);
        let spare = hint
            .0
            .spare
            .lock()
            .expect("unpoisoned")
            .as_ref()
            .map(Vec::as_ptr);
        assert_eq!(spare, Some(at), "the buffer went back to its method");
        let third = send(&large);
        assert_eq!(third.as_ptr(), at, "the kept buffer holds the next answer");
        assert_eq!(&third[..], expected.as_bytes(), "the same text in it");
        let kept = third.as_ptr();
        drop(third);
        assert_eq!(send(&large).as_ptr(), kept);

        // Too small or too large to keep.
        for size in [100, RECYCLE_MAX + 1] {
            let hint = SizeHint::default();
            let output = json!("y".repeat(size));
            let slot = AnswerSlot::default();
            slot.arm(&Id::Number(1));
            answer(op, &output, Some(&slot), &hint).expect("answered");
            drop(slot.take().expect("a body"));
            assert!(
                hint.0.spare.lock().expect("unpoisoned").is_none(),
                "{size} bytes"
            );
        }
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
