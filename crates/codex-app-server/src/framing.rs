//! Newline-delimited JSON framing: bounded line reading and message classification.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::error::RpcError;
use crate::protocol::RequestId;

/// One line read by [`next_line`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A line (without its terminator), lossily decoded as UTF-8; borrowed from the caller's
    /// buffer when it is valid UTF-8.
    Text(Cow<'a, str>),
    /// A line longer than the limit; it was skipped. Holds its length.
    TooLong(usize),
}

/// Capacity of a line buffer kept from one line to the next; a buffer grown past it by a
/// longer line is let go, so that one long line does not stay in memory.
pub(crate) const LINE_BUFFER_KEPT: usize = 64 * 1024;

/// Read the next `\n`-terminated line into `buf` (emptied first, reused from line to line so
/// that reading a line allocates nothing), never buffering more than `max` bytes of it.
/// `Ok(None)` at end of stream. A final unterminated line is returned as a line.
pub(crate) async fn next_line<'b, R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    buf: &'b mut Vec<u8>,
) -> std::io::Result<Option<Line<'b>>> {
    if buf.capacity() > LINE_BUFFER_KEPT {
        *buf = Vec::new();
    }
    buf.clear();
    let mut skipped: Option<usize> = None;
    let mut saw_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if !saw_any {
                return Ok(None);
            }
            break;
        }
        saw_any = true;
        let (chunk_len, consumed, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i, i + 1, true),
            None => (available.len(), available.len(), false),
        };
        match &mut skipped {
            Some(total) => *total += chunk_len,
            None if buf.len() + chunk_len > max => skipped = Some(buf.len() + chunk_len),
            None => buf.extend_from_slice(&available[..chunk_len]),
        }
        reader.consume(consumed);
        if done {
            break;
        }
    }
    if let Some(total) = skipped {
        return Ok(Some(Line::TooLong(total)));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    // Checked first on its own: the lossy decoder's own check is several times slower.
    let text = match std::str::from_utf8(buf) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(buf),
    };
    Ok(Some(Line::Text(text)))
}

/// One JSON-RPC message as read from a line: the params are left as JSON text, parsed later
/// straight into their type (or stored as they are). `"jsonrpc"` and unknown members are
/// ignored. A member that is present is `Some`, even when it is `null`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    method: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_raw")]
    params: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The method's text: borrowed from the line when it has no escapes (every method Codex
/// sends), decoded otherwise; `None` when it is not a JSON string.
fn method_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
        _ => match serde_json::from_str::<Value>(text) {
            Ok(Value::String(method)) => Some(Cow::Owned(method)),
            _ => None,
        },
    }
}

/// Parses one line; `None` when it is not a JSON object.
pub(crate) fn envelope(line: &str) -> Option<Envelope<'_>> {
    // A derived struct would also take an array (its members in field order).
    if !line.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// What a line from the App Server is.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// A reply to one of our requests.
    Reply {
        /// The id we sent.
        id: RequestId,
        /// `result` or `error`.
        outcome: Result<Value, RpcError>,
    },
    /// A request from the server (has `method` and `id`).
    Request {
        /// Its id (in the server's id space).
        id: RequestId,
        /// The method.
        method: String,
        /// The params (`Null` when absent).
        params: Value,
    },
    /// A notification (has `method`, no `id`).
    Notification {
        /// The method, borrowed from the line when it holds no escapes.
        method: Cow<'a, str>,
        /// The params as JSON text, if present.
        params: Option<&'a RawValue>,
    },
    /// Valid JSON that is not a JSON-RPC message we understand.
    Invalid(&'static str),
}

/// Classify one message.
pub(crate) fn classify(message: Envelope<'_>) -> Incoming<'_> {
    let Envelope {
        id,
        method,
        params,
        result,
        error,
    } = message;
    let method = method.map(|raw| method_text(raw).ok_or(()));
    match (method, id) {
        (Some(Ok(method)), Some(id)) => match parse_id(id) {
            Some(id) => Incoming::Request {
                id,
                method: method.into_owned(),
                params: params
                    .and_then(|p| serde_json::from_str(p.get()).ok())
                    .unwrap_or(Value::Null),
            },
            None => Incoming::Invalid("server request with an invalid id"),
        },
        (Some(Ok(method)), None) => Incoming::Notification { method, params },
        (Some(Err(())), _) => Incoming::Invalid("method is not a string"),
        (None, Some(id)) => {
            let Some(id) = parse_id(id) else {
                return Incoming::Invalid("reply with an invalid id");
            };
            if let Some(error) = error {
                let error =
                    serde_json::from_value::<RpcError>(error.clone()).unwrap_or_else(|_| {
                        RpcError {
                            code: -32603,
                            message: format!("malformed error object: {error}"),
                            data: None,
                        }
                    });
                Incoming::Reply {
                    id,
                    outcome: Err(error),
                }
            } else if let Some(result) = result {
                Incoming::Reply {
                    id,
                    outcome: Ok(result),
                }
            } else {
                Incoming::Invalid("reply with neither result nor error")
            }
        }
        (None, None) => Incoming::Invalid("neither method nor id"),
    }
}

fn parse_id(id: Value) -> Option<RequestId> {
    match id {
        Value::Number(n) => n.as_i64().map(RequestId::Integer),
        Value::String(s) => Some(RequestId::String(s)),
        _ => None,
    }
}

/// Remove ANSI escape sequences (colours) from a log line.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classified(v: Value) -> String {
        let text = v.to_string();
        format!("{:?}", classify(envelope(&text).expect("an object")))
    }

    #[test]
    fn classifies_messages() {
        let request =
            json!({"id": 0, "method": "item/commandExecution/requestApproval", "params": {"a": 1}})
                .to_string();
        assert!(matches!(
            classify(envelope(&request).expect("object")),
            Incoming::Request { id: RequestId::Integer(0), method, params }
                if method == "item/commandExecution/requestApproval" && params == json!({"a": 1})
        ));
        let reply = json!({"id": 0, "result": {}}).to_string();
        assert!(matches!(
            classify(envelope(&reply).expect("object")),
            Incoming::Reply { id: RequestId::Integer(0), outcome: Ok(result) } if result == json!({})
        ));
        // A null result is a result.
        let reply = r#"{"id": 1, "result": null}"#;
        assert!(matches!(
            classify(envelope(reply).expect("object")),
            Incoming::Reply {
                id: RequestId::Integer(1),
                outcome: Ok(Value::Null)
            }
        ));
        let error = json!({"id": 3, "error": {"code": -32600, "message": "no"}}).to_string();
        assert!(matches!(
            classify(envelope(&error).expect("object")),
            Incoming::Reply {
                outcome: Err(RpcError { code: -32600, .. }),
                ..
            }
        ));
        let bare = r#"{"method": "turn/started"}"#;
        assert!(matches!(
            classify(envelope(bare).expect("object")),
            Incoming::Notification { method, params: None } if method == "turn/started"
        ));
        // A method is borrowed from the line, unless it has escapes to decode.
        let plain = r#"{"method":"turn/started"}"#;
        assert!(matches!(
            classify(envelope(plain).expect("object")),
            Incoming::Notification {
                method: Cow::Borrowed("turn/started"),
                params: None
            }
        ));
        let escaped = r#"{"method":"turn\/started"}"#;
        assert!(matches!(
            classify(envelope(escaped).expect("object")),
            Incoming::Notification { method: Cow::Owned(method), params: None } if method == "turn/started"
        ));
        assert!(classified(json!({"method": null})).starts_with("Invalid"));
        assert!(classified(json!({"method": ["m"], "id": 1})).starts_with("Invalid"));
        // The params of a notification stay the text that was sent.
        let sent = r#"{"jsonrpc":"2.0","method":"m","params":{"b": [1, 2],"a":"x"}}"#;
        match classify(envelope(sent).expect("object")) {
            Incoming::Notification { params, .. } => {
                assert_eq!(params.map(RawValue::get), Some(r#"{"b": [1, 2],"a":"x"}"#));
            }
            other => panic!("not a notification: {other:?}"),
        }
        assert!(classified(json!({"foo": 1})).starts_with("Invalid"));
        assert!(classified(json!({"id": 1})).starts_with("Invalid"));
        assert!(classified(json!({"method": 1})).starts_with("Invalid"));
        assert!(envelope("[1, 2]").is_none());
        assert!(envelope("not json").is_none());
    }

    #[tokio::test]
    async fn reads_bounded_lines() {
        let data = b"short\r\nthis line is far too long\nok\nlast";
        let mut reader = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            next_line(&mut reader, 10, &mut buf).await.expect("io"),
            Some(Line::Text("short".into()))
        );
        assert_eq!(
            next_line(&mut reader, 10, &mut buf).await.expect("io"),
            Some(Line::TooLong(25))
        );
        assert_eq!(
            next_line(&mut reader, 10, &mut buf).await.expect("io"),
            Some(Line::Text("ok".into()))
        );
        assert_eq!(
            next_line(&mut reader, 10, &mut buf).await.expect("io"),
            Some(Line::Text("last".into()))
        );
        assert_eq!(
            next_line(&mut reader, 10, &mut buf).await.expect("io"),
            None
        );
    }

    /// Lines are read into one buffer, reused while it stays small (no allocation per line),
    /// and let go once a long line grew it; bytes that are not UTF-8 are still replaced.
    #[tokio::test]
    async fn lines_reuse_one_buffer_while_it_stays_small() {
        let long = "x".repeat(LINE_BUFFER_KEPT + 1);
        let data = format!("{{\"a\":1}}\n{{\"b\":2}}\n{long}\nsmall\n");
        let mut bytes = data.into_bytes();
        bytes.extend_from_slice(b"bad \xff byte\n");
        let mut reader = tokio::io::BufReader::with_capacity(64, &bytes[..]);
        let mut buf = Vec::with_capacity(1024);
        let kept = buf.as_ptr();
        let line = next_line(&mut reader, usize::MAX, &mut buf)
            .await
            .expect("io");
        assert!(
            matches!(line, Some(Line::Text(Cow::Borrowed(r#"{"a":1}"#)))),
            "{line:?}"
        );
        let line = next_line(&mut reader, usize::MAX, &mut buf)
            .await
            .expect("io");
        assert!(
            matches!(line, Some(Line::Text(Cow::Borrowed(r#"{"b":2}"#)))),
            "{line:?}"
        );
        assert_eq!(buf.as_ptr(), kept, "the same buffer for every line");
        let line = next_line(&mut reader, usize::MAX, &mut buf)
            .await
            .expect("io");
        assert!(matches!(line, Some(Line::Text(text)) if text.len() == long.len()));
        assert!(buf.capacity() > LINE_BUFFER_KEPT);
        let line = next_line(&mut reader, usize::MAX, &mut buf)
            .await
            .expect("io");
        assert_eq!(line, Some(Line::Text("small".into())));
        assert!(
            buf.capacity() <= LINE_BUFFER_KEPT,
            "a long line's buffer is let go"
        );
        let line = next_line(&mut reader, usize::MAX, &mut buf)
            .await
            .expect("io");
        assert_eq!(line, Some(Line::Text("bad \u{fffd} byte".into())));
    }

    /// Every line of `data` read `chunk` bytes at a time into one buffer, as owned lines.
    async fn all_lines(data: &[u8], chunk: usize, max: usize) -> Vec<Line<'static>> {
        let mut reader = tokio::io::BufReader::with_capacity(chunk, data);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(line) = next_line(&mut reader, max, &mut buf).await.expect("io") {
            lines.push(match line {
                Line::Text(text) => Line::Text(Cow::Owned(text.into_owned())),
                Line::TooLong(len) => Line::TooLong(len),
            });
        }
        lines
    }

    /// Whatever the reads cut a line into: empty lines, a `\r\n` cut between its bytes, a
    /// character cut between reads, bytes that are not UTF-8, a skipped line (nothing of it
    /// left in the buffer for the next one), a line of exactly `max` bytes, a last line
    /// without its newline.
    #[tokio::test]
    async fn lines_read_the_same_whatever_the_reads_cut() {
        let data = b"\na\r\n\xe2\x82\xac\nx\xffy\n1234567\n123456\n\r\nend";
        let expected = [
            Line::Text("".into()),
            Line::Text("a".into()),
            Line::Text("\u{20ac}".into()),
            Line::Text("x\u{fffd}y".into()),
            Line::TooLong(7),
            Line::Text("123456".into()),
            Line::Text("".into()),
            Line::Text("end".into()),
        ];
        for chunk in 1..=data.len() {
            assert_eq!(
                all_lines(data, chunk, 6).await,
                expected,
                "reads of {chunk}"
            );
        }
        assert_eq!(
            all_lines(b"ok\n1234567", 4, 6).await,
            [Line::Text("ok".into()), Line::TooLong(7)]
        );
        assert!(all_lines(b"", 4, 6).await.is_empty());
    }

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32mINFO\u{1b}[0m x"),
            "2026 INFO x"
        );
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
