//! Newline-delimited JSON framing: bounded line reading and message classification.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::error::RpcError;
use crate::protocol::RequestId;

/// One line read by [`next_line`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line (without its terminator), lossily decoded as UTF-8.
    Text(String),
    /// A line longer than the limit; it was skipped. Holds its length.
    TooLong(usize),
}

/// Read the next `\n`-terminated line, never buffering more than `max` bytes of it.
/// `Ok(None)` at end of stream. A final unterminated line is returned as a line.
pub(crate) async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
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
        let (chunk_len, consumed, done) = match available.iter().position(|&b| b == b'\n') {
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
    Ok(Some(Line::Text(String::from_utf8_lossy(&buf).into_owned())))
}

/// What a line from the App Server is.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
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
        /// The method.
        method: String,
        /// The params (`Null` when absent).
        params: Value,
    },
    /// Valid JSON that is not a JSON-RPC message we understand.
    Invalid(&'static str),
}

/// Classify one decoded JSON object. `"jsonrpc"` is not required.
pub(crate) fn classify(mut message: Map<String, Value>) -> Incoming {
    let id = message.remove("id");
    let method = message.remove("method");
    let params = message.remove("params").unwrap_or(Value::Null);
    match (method, id) {
        (Some(Value::String(method)), Some(id)) => match parse_id(id) {
            Some(id) => Incoming::Request { id, method, params },
            None => Incoming::Invalid("server request with an invalid id"),
        },
        (Some(Value::String(method)), None) => Incoming::Notification { method, params },
        (Some(_), _) => Incoming::Invalid("method is not a string"),
        (None, Some(id)) => {
            let Some(id) = parse_id(id) else {
                return Incoming::Invalid("reply with an invalid id");
            };
            if let Some(error) = message.remove("error") {
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
            } else if let Some(result) = message.remove("result") {
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

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(
            classify(obj(
                json!({"id": 0, "method": "item/commandExecution/requestApproval", "params": {"a": 1}})
            )),
            Incoming::Request {
                id: RequestId::Integer(0),
                method: "item/commandExecution/requestApproval".into(),
                params: json!({"a": 1})
            }
        );
        assert_eq!(
            classify(obj(json!({"id": 0, "result": {}}))),
            Incoming::Reply {
                id: RequestId::Integer(0),
                outcome: Ok(json!({}))
            }
        );
        assert!(matches!(
            classify(obj(
                json!({"id": 3, "error": {"code": -32600, "message": "no"}})
            )),
            Incoming::Reply {
                outcome: Err(RpcError { code: -32600, .. }),
                ..
            }
        ));
        assert_eq!(
            classify(obj(json!({"method": "turn/started"}))),
            Incoming::Notification {
                method: "turn/started".into(),
                params: Value::Null
            }
        );
        assert!(matches!(
            classify(obj(json!({"foo": 1}))),
            Incoming::Invalid(_)
        ));
        assert!(matches!(
            classify(obj(json!({"id": 1}))),
            Incoming::Invalid(_)
        ));
    }

    #[tokio::test]
    async fn reads_bounded_lines() {
        let data = b"short\r\nthis line is far too long\nok\nlast";
        let mut reader = tokio::io::BufReader::with_capacity(4, &data[..]);
        assert_eq!(
            next_line(&mut reader, 10).await.expect("io"),
            Some(Line::Text("short".into()))
        );
        assert_eq!(
            next_line(&mut reader, 10).await.expect("io"),
            Some(Line::TooLong(25))
        );
        assert_eq!(
            next_line(&mut reader, 10).await.expect("io"),
            Some(Line::Text("ok".into()))
        );
        assert_eq!(
            next_line(&mut reader, 10).await.expect("io"),
            Some(Line::Text("last".into()))
        );
        assert_eq!(next_line(&mut reader, 10).await.expect("io"), None);
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
