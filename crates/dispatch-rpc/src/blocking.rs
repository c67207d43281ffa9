//! The one-shot call without an async runtime: the same HTTP/1.1 POST as [`crate::oneshot`],
//! written and read with blocking `std` socket calls, for a process that makes one call and
//! exits (a CLI command). Starting a tokio runtime and hyper's connection task for that one
//! exchange cost a CLI call more than the exchange itself (ADR 0025).
//!
//! Everything but the transport is shared with the async path: the request's params and size
//! check, the operation's deadline (`Operation::call_timeout`), the vetting of who serves the
//! socket, the reading of the JSON-RPC answer and every error it maps to.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use dispatch_contract::DispatchError;
use serde_json::value::RawValue;

use crate::call::EncodedCall;
use crate::client::{
    connect_failed, older_than_surface, post_outcome, timed_out, unreachable, vet_peer,
};
use crate::oneshot::{Answer, Failure, MAX_RESPONSE_BYTES, read_answer};

/// The most bytes of a response head read, and the most headers parsed in it.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The least a read asks of the socket (the buffer's first capacity).
const MIN_READ: usize = 4 * 1024;
/// The most a read asks of the socket, as the 16 KiB chunk it replaced did.
const MAX_READ: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;

/// Sends `call` (encoded, and checked against the request size limit, by
/// [`EncodedCall::new`]) to the daemon at `socket`, once, blocking this thread until the
/// answer or the operation's deadline: the daemon's result as the JSON text it wrote. Errors
/// are those of `DaemonClient::connect` then `DaemonClient::send`.
pub fn call_text_blocking(
    socket: &Path,
    call: &EncodedCall<'_>,
) -> Result<Box<RawValue>, DispatchError> {
    let (op, deadline) = (call.op(), call.deadline());
    let stream = connect(socket).map_err(|err| connect_failed(socket, &err))?;
    let peer = rustix::net::sockopt::socket_peercred(&stream)
        .map_err(|err| unreachable(socket, std::io::Error::from(err)))?;
    vet_peer(socket, peer.uid.as_raw())?;
    let answer = match exchange(stream, &call.body(), Instant::now() + deadline) {
        Err(Exchange::TimedOut) => return Err(timed_out(op, deadline)),
        Err(Exchange::Failed(failure)) => Err(failure),
        Ok(answer) => Ok(answer),
    };
    post_outcome(socket, op, answer)
        .map_err(|err| older_than_surface(op, call.surface().is_some(), err))
}

/// Connects to `socket` without waiting: when the daemon's queue of connections is full (it
/// accepts none: stopped, or stuck), the connect fails at once (`EAGAIN`), as the async
/// client's non-blocking connect does, instead of blocking with no deadline. The stream is
/// blocking again once connected.
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(socket)?)?;
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(UnixStream::from(fd))
}

/// How an exchange ended without an answer.
enum Exchange {
    /// The deadline passed first.
    TimedOut,
    /// As on the async path.
    Failed(Failure),
}

impl From<Failure> for Exchange {
    fn from(failure: Failure) -> Exchange {
        Exchange::Failed(failure)
    }
}

/// Writes the request and reads the whole answer by `deadline`.
fn exchange(mut stream: UnixStream, body: &[u8], deadline: Instant) -> Result<Answer, Exchange> {
    let head = format!(
        "POST / HTTP/1.1\r\nhost: dispatchd.local\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    let sent = send(&mut stream, &request, deadline);
    let mut reader = Reader {
        stream,
        buffer: Vec::with_capacity(MIN_READ),
        deadline,
    };
    match (sent, reader.answer()) {
        (_, Ok(answer)) => Ok(answer),
        // The daemon may answer (a refusal) and close before the whole request was sent: its
        // answer counts, and only without one is the failed write the failure.
        (Err(failed), Err(_)) => Err(failed),
        (Ok(()), Err(failed)) => Err(failed),
    }
}

/// Writes all of `bytes` by `deadline`: each write may wait only for what is left of it.
fn send(stream: &mut UnixStream, mut bytes: &[u8], deadline: Instant) -> Result<(), Exchange> {
    while !bytes.is_empty() {
        set_timeout(stream, deadline, UnixStream::set_write_timeout)?;
        match stream.write(bytes) {
            Ok(0) => return Err(lost("the daemon stopped reading the call")),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(io_failure(&err)),
        }
    }
    Ok(())
}

fn io_failure(err: &std::io::Error) -> Exchange {
    match err.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Exchange::TimedOut,
        _ => Exchange::Failed(Failure::Lost(err.to_string())),
    }
}

/// Sets the socket's read or write timeout to what is left until `deadline`.
fn set_timeout(
    stream: &UnixStream,
    deadline: Instant,
    set: fn(&UnixStream, Option<Duration>) -> std::io::Result<()>,
) -> Result<(), Exchange> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Exchange::TimedOut);
    }
    set(stream, Some(left)).map_err(|err| io_failure(&err))
}

/// The read side of an exchange: bytes read but not yet used, and the deadline.
struct Reader {
    stream: UnixStream,
    buffer: Vec<u8>,
    deadline: Instant,
}

impl Reader {
    /// Reads more bytes into the buffer; `false` at the end of the stream.
    ///
    /// The bytes are read straight into the buffer's free space, as much as it has (what
    /// `exact` reserved for a body), at least `MIN_READ` and at most `MAX_READ` bytes: only
    /// that space is zeroed, and nothing is copied. A small answer (`daemon status`, ~600
    /// bytes) zeroes 4 KiB of the buffer instead of a 16 KiB chunk on the stack, whose fresh
    /// pages were 4 of the call's page faults (ADR 0026).
    fn fill(&mut self) -> Result<bool, Exchange> {
        set_timeout(&self.stream, self.deadline, UnixStream::set_read_timeout)?;
        let start = self.buffer.len();
        let free = self.buffer.capacity() - start;
        self.buffer
            .resize(start + free.clamp(MIN_READ, MAX_READ), 0);
        let read = loop {
            match self.stream.read(&mut self.buffer[start..]) {
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                read => break read,
            }
        };
        let got = read.as_ref().map_or(0, |n| *n);
        self.buffer.truncate(start + got);
        match read {
            Ok(n) => Ok(n > 0),
            Err(err) => Err(io_failure(&err)),
        }
    }

    /// Reads the response: its head (after any interim `1xx` heads), then a body of
    /// `content-length` bytes, in chunks, up to the end of the connection, or none (`101`,
    /// `204`, `304`).
    fn answer(&mut self) -> Result<Answer, Exchange> {
        let (status, head_len, framing) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or_default();
                    match status {
                        // An interim answer (`100 Continue`...) comes before the real one.
                        100 | 102..=199 => {
                            self.buffer.drain(..len);
                            continue;
                        }
                        // These never carry a body, whatever their headers say (RFC 9112,
                        // 6.3); `101 Switching Protocols` is final, and no answer to a call.
                        101 | 204 | 304 => break (status, len, Framing::Length(0)),
                        _ => break (status, len, framing(response.headers)?),
                    }
                }
                Ok(httparse::Status::Partial) if self.buffer.len() <= MAX_HEAD_BYTES => {
                    if !self.fill()? {
                        return Err(lost("the daemon closed the connection before answering"));
                    }
                }
                Ok(httparse::Status::Partial) => {
                    return Err(lost("the answer's head is too large"));
                }
                Err(err) => return Err(lost(&format!("the answer is not HTTP/1.1: {err}"))),
            }
        };
        self.buffer.drain(..head_len);
        let body = match framing {
            Framing::Length(len) => self.exact(len)?,
            Framing::Chunked => self.chunked()?,
            Framing::Close => self.until_closed()?,
        };
        read_answer(status, body).map_err(Exchange::Failed)
    }

    /// The next `len` bytes of the body.
    fn exact(&mut self, len: usize) -> Result<Vec<u8>, Exchange> {
        if len > MAX_RESPONSE_BYTES {
            return Err(Failure::TooLarge.into());
        }
        // One allocation of the announced size, instead of a buffer doubled read by read.
        self.buffer.reserve(len.saturating_sub(self.buffer.len()));
        while self.buffer.len() < len {
            if !self.fill()? {
                return Err(lost(
                    "the daemon closed the connection in the middle of its answer",
                ));
            }
        }
        let rest = self.buffer.split_off(len);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    /// A body sent in chunks (`transfer-encoding: chunked`), its trailers skipped.
    fn chunked(&mut self) -> Result<Vec<u8>, Exchange> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| lost("the answer's chunk size is not a number"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > MAX_RESPONSE_BYTES {
                return Err(Failure::TooLarge.into());
            }
            body.extend_from_slice(&self.exact(size)?);
            if !self.line()?.is_empty() {
                return Err(lost("the answer's chunk is longer than its size"));
            }
        }
    }

    /// One line of the chunked framing, without its line end.
    fn line(&mut self) -> Result<String, Exchange> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(lost("the answer's chunk framing is too long"));
            }
            if !self.fill()? {
                return Err(lost(
                    "the daemon closed the connection in the middle of its answer",
                ));
            }
        }
    }

    /// A body that ends when the daemon closes the connection.
    fn until_closed(&mut self) -> Result<Vec<u8>, Exchange> {
        while self.fill()? {
            if self.buffer.len() > MAX_RESPONSE_BYTES {
                return Err(Failure::TooLarge.into());
            }
        }
        Ok(std::mem::take(&mut self.buffer))
    }
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, Exchange> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Ok(Framing::Chunked);
    }
    match value("content-length") {
        Some(len) => len
            .parse()
            .map(Framing::Length)
            .map_err(|_| lost("the answer's content-length is not a number")),
        None => Ok(Framing::Close),
    }
}

fn lost(why: &str) -> Exchange {
    Exchange::Failed(Failure::Lost(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    use dispatch_contract::{ErrorCode, Operation, operations};
    use jsonrpsee::RpcModule;
    use serde_json::{Value, json};

    use super::*;
    use crate::DaemonClient;

    /// A daemon that answers every connection's request with `answer` (written in the pieces
    /// given, so that a head or a body arrives in several reads), then closes it.
    fn scripted(pieces: Vec<Vec<u8>>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0_u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            // The body too: a connection closed with unread bytes is reset, not closed.
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length = head
                .split("content-length: ")
                .nth(1)
                .and_then(|rest| rest.split("\r\n").next())
                .and_then(|len| len.parse::<usize>().ok())
                .unwrap_or_default();
            let mut body = vec![0_u8; length];
            let _read = stream.read_exact(&mut body);
            for piece in pieces {
                let _sent = stream.write_all(&piece);
                let _sent = stream.flush();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        (dir, socket)
    }

    fn status() -> &'static Operation {
        &operations::DAEMON_STATUS
    }

    /// A `daemon status` call on its own thread, if it ends within `bound` (its deadline is far
    /// longer): `None` when it is still waiting.
    fn status_within(
        socket: &Path,
        bound: Duration,
    ) -> Option<Result<Box<RawValue>, DispatchError>> {
        let (done, outcome) = std::sync::mpsc::channel();
        let path = socket.to_owned();
        std::thread::spawn(move || {
            let _sent = done.send(call_blocking(&path, status(), json!({})));
        });
        outcome.recv_timeout(bound).ok()
    }

    /// A call of `op` with `input`, encoded then sent as the runner does.
    fn call_blocking(
        socket: &Path,
        op: &Operation,
        input: Value,
    ) -> Result<Box<RawValue>, DispatchError> {
        call_text_blocking(
            socket,
            &EncodedCall::new(op, input).map_err(DispatchError::from)?,
        )
    }

    fn text(answer: Result<Box<RawValue>, DispatchError>) -> Result<String, DispatchError> {
        answer.map(|raw| raw.get().to_owned())
    }

    /// Against the real server: the blocking call answers what the async client answers,
    /// results as the daemon wrote them and errors as the same `DispatchError`.
    #[test]
    fn the_blocking_call_answers_as_the_async_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut module = RpcModule::new(());
        module
            .register_method("daemon_status", |_, _, _| json!({"z": 1, "a": [true, "é"]}))
            .expect("daemon_status");
        module
            .register_method("get", |_, _, _| {
                Err::<Value, _>(crate::server::rpc_error(
                    &DispatchError::new(ErrorCode::NotFound, "no lane `x`").with_hint("list them"),
                ))
            })
            .expect("get");
        let listener = runtime
            .block_on(async { tokio::net::UnixListener::bind(&socket) })
            .expect("bind");
        runtime.spawn(crate::serve(listener, module, async move {
            let _ = stopped.await;
        }));
        for op in [status(), &operations::GET] {
            let input = json!({"lane": "x"});
            let blocking = text(call_blocking(&socket, op, input.clone()));
            let async_answer = runtime.block_on(async {
                let client = DaemonClient::connect(&socket).await?;
                client.call_text(op, input).await
            });
            assert_eq!(blocking, text(async_answer), "{}", op.id);
        }
        assert_eq!(
            text(call_blocking(&socket, status(), json!({}))),
            Ok(r#"{"z":1,"a":[true,"é"]}"#.to_owned())
        );
        let err = call_blocking(&socket, &operations::GET, json!({})).expect_err("an error");
        assert_eq!(err.code, ErrorCode::NotFound);
        let _ = stop.send(());
    }

    /// Answers in pieces, in chunks, and delimited by the end of the connection are read
    /// whole.
    #[test]
    fn every_framing_of_the_answer_is_read_whole() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"pid":7}}"#;
        let length = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let (half, rest) = body.split_at(20);
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![[length.as_bytes(), body].concat()],
            vec![
                length.as_bytes()[..10].to_vec(),
                length.as_bytes()[10..].to_vec(),
                half.to_vec(),
                rest.to_vec(),
            ],
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                format!("{:x}\r\n", half.len()).into_bytes(),
                [half, b"\r\n"].concat(),
                format!("{:X};ext=1\r\n", rest.len()).into_bytes(),
                [rest, b"\r\n0\r\nx-trailer: 1\r\n\r\n"].concat(),
            ],
            vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec(),
                body.to_vec(),
            ],
            // Interim heads before the answer, one of them in the same read as the answer.
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                [b"HTTP/1.1 102 Processing\r\n\r\n", length.as_bytes(), body].concat(),
            ],
        ];
        for (n, pieces) in cases.into_iter().enumerate() {
            let (_dir, socket) = scripted(pieces);
            assert_eq!(
                text(call_blocking(&socket, status(), json!({}))),
                Ok(r#"{"pid":7}"#.to_owned()),
                "case {n}"
            );
        }
    }

    /// An answer many reads long (a `list` of many lanes), sent in pieces of odd sizes, in
    /// each framing: every byte arrives once and in order, whatever the buffer's free space
    /// at each read.
    #[test]
    fn a_large_answer_in_many_pieces_is_read_whole() {
        let pad: String = (0..150_000_u32)
            .map(|i| char::from(b'a' + u8::try_from(i % 26).expect("a letter")))
            .collect();
        let result = format!(r#"{{"pad":"{pad}"}}"#);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#).into_bytes();
        let pieces =
            |bytes: &[u8]| -> Vec<Vec<u8>> { bytes.chunks(7_777).map(<[u8]>::to_vec).collect() };
        let length = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        let mut chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for chunk in body.chunks(40_000) {
            chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            chunked.extend_from_slice(chunk);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let cases = [
            [length.as_bytes(), &body].concat(),
            chunked,
            [
                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".as_slice(),
                &body,
            ]
            .concat(),
        ];
        for (n, answer) in cases.iter().enumerate() {
            let (_dir, socket) = scripted(pieces(answer));
            assert_eq!(
                text(call_blocking(&socket, status(), json!({}))),
                Ok(result.clone()),
                "case {n}"
            );
        }
    }

    /// A refusal, a cut answer, a connection closed without one, an answer over the size cap
    /// and nothing listening each give the error the async client gives.
    #[test]
    fn failures_are_the_errors_of_the_async_path() {
        let limit = DispatchError::new(ErrorCode::DaemonUnreachable, "serving its limit");
        let refusal =
            json!({"jsonrpc": "2.0", "id": null, "error": crate::server::rpc_error(&limit)})
                .to_string()
                .into_bytes();
        let full = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            refusal.len()
        );
        let err = same_failure(vec![full.into_bytes(), refusal], true);
        assert_eq!((err.code, err.message), (limit.code, limit.message));

        let err = same_failure(
            vec![b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()],
            true,
        );
        assert_eq!(err.code, ErrorCode::DaemonUnreachable);
        assert!(err.message.contains("connection limit"), "{}", err.message);

        // Lost in the middle of the answer, or before it: the same error, whose detail (what
        // the transport said) differs between the two readers.
        let err = same_failure(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"".to_vec()],
            false,
        );
        assert_eq!(err.code, ErrorCode::DaemonUnreachable);
        assert!(
            err.message.starts_with("lost the daemon during"),
            "{}",
            err.message
        );

        let err = same_failure(vec![], false);
        assert_eq!(err.code, ErrorCode::DaemonUnreachable);
        assert!(
            err.message.starts_with("lost the daemon during"),
            "{}",
            err.message
        );

        // Refused as soon as the head announces more than the limit (the async reader counts
        // the bytes as they come, so a body that never comes is a lost daemon there).
        let too_large = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_RESPONSE_BYTES + 1
        );
        let (_dir, socket) = scripted(vec![too_large.into_bytes()]);
        let err = call_blocking(&socket, status(), json!({})).expect_err("too large");
        assert_eq!(err, crate::answer::too_large_answer(status()));

        let dir = tempfile::tempdir().expect("tempdir");
        let nobody = dir.path().join("none.sock");
        let err = call_blocking(&nobody, status(), json!({})).expect_err("nobody there");
        let theirs = runtime()
            .block_on(DaemonClient::connect(&nobody))
            .map(|_| ())
            .expect_err("nobody there");
        assert_eq!((&err.code, &err.message), (&theirs.code, &theirs.message));
        assert_eq!(err.code, ErrorCode::DaemonUnreachable);
        assert!(
            err.message.starts_with("cannot reach the daemon at"),
            "{}",
            err.message
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// The error of a call to a daemon that writes `pieces`, which the blocking call and the
    /// async client both report with the same code (and the same message when
    /// `same_message`).
    fn same_failure(pieces: Vec<Vec<u8>>, same_message: bool) -> DispatchError {
        let (_dir, mine) = scripted(pieces.clone());
        let ours = call_blocking(&mine, status(), json!({})).expect_err("blocking");
        let (_dir, other) = scripted(pieces);
        let theirs = runtime()
            .block_on(async {
                let client = DaemonClient::connect(&other).await?;
                client.call_text(status(), json!({})).await
            })
            .expect_err("async");
        assert_eq!(ours.code, theirs.code, "{ours:?} / {theirs:?}");
        if same_message {
            let theirs = theirs
                .message
                .replace(&*other.to_string_lossy(), &mine.to_string_lossy());
            assert_eq!(ours.message, theirs);
        }
        ours
    }

    /// A daemon that accepts no connection (its queue full) is unreachable at once; the
    /// call never waits for a connection without a deadline.
    #[test]
    fn a_daemon_that_accepts_nothing_is_unreachable_at_once() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let addr = SocketAddrUnix::new(&socket).expect("address");
        let listener =
            rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).expect("socket");
        rustix::net::bind(&listener, &addr).expect("bind");
        rustix::net::listen(&listener, 0).expect("listen");
        // Fill the queue: connections nobody accepts, until the next one would wait.
        let mut queued = Vec::new();
        for _ in 0..1024 {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::NONBLOCK,
                None,
            )
            .expect("socket");
            if rustix::net::connect(&fd, &addr).is_err() {
                break;
            }
            queued.push(fd);
        }
        let answer = status_within(&socket, Duration::from_secs(20))
            .expect("the call waited for a connection the daemon never accepts");
        let err = answer.expect_err("nothing accepted the connection");
        assert_eq!(err.code, ErrorCode::DaemonUnreachable, "{}", err.message);
        drop(queued);
    }

    /// A `101`, `204` or `304` has no body whatever its headers say: the call ends when its
    /// head arrives, not when the daemon closes the connection (here, never) or at the
    /// deadline.
    #[test]
    fn an_answer_without_a_body_is_read_without_waiting_for_one() {
        for head in [
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let socket = dir.path().join("s.sock");
            let listener = UnixListener::bind(&socket).expect("bind");
            let (release, held) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let _sent = stream.write_all(head.as_bytes());
                // Keep the connection open until the test is over.
                let _ = held.recv();
            });
            let answer = status_within(&socket, Duration::from_secs(5))
                .expect("the call waited for a body that a 204 or 304 never has");
            let err = answer.expect_err("no result in an empty answer");
            assert_eq!(
                err.code,
                ErrorCode::DaemonUnreachable,
                "{head}: {}",
                err.message
            );
            drop(release);
        }
    }

    /// A daemon that never reads the call ends the exchange at its deadline, not later.
    #[test]
    fn a_daemon_that_reads_nothing_times_out_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let stream = UnixStream::connect(&socket).expect("connect");
        let (_held, _) = listener.accept().expect("accept");
        // More than the socket's buffers hold, so that the writes wait for a reader.
        let call = vec![b' '; 8 * 1024 * 1024];
        let started = Instant::now();
        let outcome = exchange(stream, &call, started + Duration::from_millis(300));
        let waited = started.elapsed();
        assert!(matches!(outcome, Err(Exchange::TimedOut)));
        // Each write waits for what is left of the deadline only: one full timeout per write
        // would take twice as long at least.
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(550),
            "{waited:?}"
        );
    }

    /// A daemon that never answers ends the exchange at its deadline, not later.
    #[test]
    fn a_silent_daemon_times_out_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let stream = UnixStream::connect(&socket).expect("connect");
        let (_held, _) = listener.accept().expect("accept");
        let started = Instant::now();
        let outcome = exchange(stream, b"{}", started + Duration::from_millis(200));
        let waited = started.elapsed();
        assert!(matches!(outcome, Err(Exchange::TimedOut)));
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
