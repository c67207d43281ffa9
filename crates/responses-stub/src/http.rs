//! Just enough HTTP/1.1 to read one request per connection and write one response.
//!
//! The stub answers every connection with `connection: close`, so there is no
//! keep-alive, no pipelining and no response framing beyond "the body ends when
//! the connection closes" for event streams.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest header block accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted (Codex sends the whole conversation each turn).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed HTTP request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// What can go wrong reading a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("i/o error reading the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before a complete request arrived")]
    Truncated,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request too large: {0}")]
    TooLarge(&'static str),
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one request (head and body) from `stream`.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(HttpError::TooLarge("header block"));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("header block is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(format!(
            "request line {request_line:?}"
        )));
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("header line {line:?}")));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body: Vec::new(),
    };
    let mut rest = buf.split_off(head_end + 4);

    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(stream, rest).await?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::Malformed(format!("content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(HttpError::TooLarge("body"));
        }
        while rest.len() < len {
            let mut chunk = vec![0u8; (len - rest.len()).min(64 * 1024)];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(HttpError::Truncated);
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        request.body = rest;
    }
    Ok(request)
}

/// Decode a `transfer-encoding: chunked` body, `pending` being bytes already read.
async fn read_chunked<R: AsyncRead + Unpin>(
    stream: &mut R,
    mut pending: Vec<u8>,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(&pending, b"\r\n") {
                break pos;
            }
            fill(stream, &mut pending).await?;
        };
        let size_text = std::str::from_utf8(&pending[..line_end])
            .map_err(|_| HttpError::Malformed("chunk size".into()))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        pending.drain(..line_end + 2);
        if body.len() + size > MAX_BODY {
            return Err(HttpError::TooLarge("body"));
        }
        while pending.len() < size + 2 {
            fill(stream, &mut pending).await?;
        }
        if size == 0 {
            // Trailers are not supported; the terminating CRLF follows at once.
            return Ok(body);
        }
        body.extend_from_slice(&pending[..size]);
        pending.drain(..size + 2);
    }
}

async fn fill<R: AsyncRead + Unpin>(
    stream: &mut R,
    pending: &mut Vec<u8>,
) -> Result<(), HttpError> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(HttpError::Truncated);
    }
    pending.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The head of a response with a known body, closing the connection after it.
pub(crate) fn response_head(
    status: u16,
    content_type: &str,
    content_length: Option<usize>,
) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\nconnection: close\r\ncache-control: no-cache\r\n"
    );
    if let Some(len) = content_length {
        head.push_str(&format!("content-length: {len}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_content_length_body() {
        let raw = b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let req = read_request(&mut &raw[..]).await.expect("parse");
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/responses");
        assert_eq!(req.body, b"hello");
        assert_eq!(req.header("host"), Some("x"));
    }

    #[tokio::test]
    async fn parses_chunked_body() {
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n";
        let req = read_request(&mut &raw[..]).await.expect("parse");
        assert_eq!(req.body, b"hello");
    }

    #[tokio::test]
    async fn truncated_request_is_an_error() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhel";
        assert!(matches!(
            read_request(&mut &raw[..]).await,
            Err(HttpError::Truncated)
        ));
    }
}
