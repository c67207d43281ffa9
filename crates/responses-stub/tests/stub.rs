//! The stub over real sockets, with a minimal hand-written HTTP client.

use std::time::Duration;

use responses_stub::{Behaviour, ResponsesStub, Script, StreamGate};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(10);

/// Send one POST and return the open stream (response not read yet).
async fn post(stub: &ResponsesStub, path: &str, body: &Value) -> TcpStream {
    let mut stream = TcpStream::connect(stub.addr()).await.expect("connect");
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body.as_bytes()).await.expect("write body");
    stream
}

/// Read until the server closes; return (status, body).
async fn read_all(mut stream: TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut raw))
        .await
        .expect("response within bound")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head/body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("json data"))
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

fn user_turn(text: &str) -> Value {
    json!({ "model": "m", "stream": true, "input": [
        { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": text }] }
    ]})
}

#[tokio::test]
async fn text_reply_is_a_complete_stream_and_is_recorded() {
    let stub = ResponsesStub::start(Script::new().then(Behaviour::text("hello")))
        .await
        .expect("start");
    assert!(stub.base_url().starts_with("http://127.0.0.1:"));
    assert!(stub.base_url().ends_with("/v1"));
    let (status, body) = read_all(post(&stub, "/v1/responses", &user_turn("hi")).await).await;
    assert_eq!(status, 200);
    let events = events(&body);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.added",
            "response.output_text.delta",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[3]["item"]["content"][0]["text"], "hello");
    assert!(events[4]["response"]["usage"]["total_tokens"].is_number());

    // Nothing queued any more: the default reply.
    let (_, body) = read_all(post(&stub, "/v1/responses", &user_turn("again")).await).await;
    assert_eq!(events_text(&body), "ok");

    let requests = stub
        .wait_for_requests(2, BOUND)
        .await
        .expect("two requests");
    assert_eq!(requests[0].behaviour, "text");
    assert_eq!(requests[0].user_texts(), ["hi"]);
    assert_eq!(requests[1].user_texts(), ["again"]);
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn an_image_in_the_input_is_answered_and_recorded() {
    let stub = ResponsesStub::start(Script::new().then(Behaviour::text("a pixel")))
        .await
        .expect("start");
    let url = "data:image/png;base64,iVBORw0KGgo=";
    let body = json!({ "model": "m", "stream": true, "input": [
        { "type": "message", "role": "user", "content": [
            { "type": "input_text", "text": "what is this?" },
            { "type": "input_image", "image_url": url }
        ] }
    ]});
    let (status, answer) = read_all(post(&stub, "/v1/responses", &body).await).await;
    assert_eq!(status, 200);
    assert_eq!(events_text(&answer), "a pixel");
    let requests = stub.wait_for_requests(1, BOUND).await.expect("a request");
    assert_eq!(requests[0].user_texts(), ["what is this?"]);
    assert_eq!(requests[0].user_images(), [url]);
}

fn events_text(body: &str) -> String {
    events(body)
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .and_then(|e| e["item"]["content"][0]["text"].as_str().map(str::to_owned))
        .expect("a message")
}

#[tokio::test]
async fn http_error_and_unknown_paths() {
    let stub = ResponsesStub::start(Script::new().then(Behaviour::http_500()))
        .await
        .expect("start");
    let (status, body) = read_all(post(&stub, "/v1/responses", &user_turn("x")).await).await;
    assert_eq!(status, 500);
    assert!(body.contains("internal server error"));
    let (status, _) = read_all(post(&stub, "/v1/other", &json!({})).await).await;
    assert_eq!(status, 404);
    assert_eq!(stub.requests()[1].behaviour, "not_found");
}

#[tokio::test]
async fn function_calls_then_automatic_follow_ups() {
    let stub = ResponsesStub::start(
        Script::new().then(Behaviour::exec_command_escalated("echo hi", "because")),
    )
    .await
    .expect("start");
    let (_, body) = read_all(post(&stub, "/v1/responses", &user_turn("run it")).await).await;
    let events = events(&body);
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let call = &events[1]["item"];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    let args: Value =
        serde_json::from_str(call["arguments"].as_str().expect("string args")).expect("json args");
    assert_eq!(args["cmd"], "echo hi");
    assert_eq!(args["sandbox_permissions"], "require_escalated");

    // The tool result gets the follow-up text.
    let tool_result = json!({ "input": [
        { "type": "message", "role": "user", "content": [{ "type": "input_text", "text": "run it" }] },
        call.clone(),
        { "type": "function_call_output", "call_id": call["call_id"], "output": "hi" }
    ]});
    let (_, body) = read_all(post(&stub, "/v1/responses", &tool_result).await).await;
    assert_eq!(events_text(&body), "done");
    assert!(stub.requests()[1].is_tool_result());

    // A goal continuation gets update_goal complete.
    let goal = json!({ "input": [
        { "type": "message", "role": "user", "content": [{ "type": "input_text",
          "text": format!("{}\nKeep going", responses_stub::GOAL_CONTINUATION_MARKER) }] }
    ]});
    let (_, body) = read_all(post(&stub, "/v1/responses", &goal).await).await;
    let events = self::events(&body);
    assert_eq!(events[1]["item"]["name"], "update_goal");
    assert_eq!(events[1]["item"]["arguments"], r#"{"status":"complete"}"#);
    assert_eq!(stub.requests()[2].behaviour, "function_call:update_goal");
}

#[tokio::test]
async fn slow_stream_is_released_by_the_gate() {
    let gate = StreamGate::new();
    let stub = ResponsesStub::start(Script::new()).await.expect("start");
    stub.push(Behaviour::slow_text(["a", "b"], &gate));
    assert_eq!(stub.queued(), 1);
    let mut stream = post(&stub, "/v1/responses", &user_turn("x")).await;
    // Read until the item is added; no delta may come before the gate opens.
    let mut seen = String::new();
    while !seen.contains("response.output_item.added") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("bound")
            .expect("read");
        assert_ne!(n, 0, "closed early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!seen.contains("output_text.delta"));
    gate.release(1);
    gate.release_all();
    let (_, rest) = {
        let mut raw = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut raw))
            .await
            .expect("bound")
            .expect("read");
        ((), String::from_utf8(raw).expect("utf8"))
    };
    let all = format!("{seen}{rest}");
    let body = all.split_once("\r\n\r\n").expect("head").1;
    let events = events(body);
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(deltas, ["a", "b"]);
    assert_eq!(events_text(body), "ab");
}

#[tokio::test]
async fn hanging_stream_ends_when_the_stub_is_dropped() {
    let stub = ResponsesStub::start(Script::new().then(Behaviour::Hang))
        .await
        .expect("start");
    let mut stream = post(&stub, "/v1/responses", &user_turn("x")).await;
    stub.wait_for_requests(1, BOUND)
        .await
        .expect("request seen");
    // Nothing completes while the stub lives.
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = String::new();
    let quiet = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(quiet.is_err(), "the stream must stay open");
    assert!(!got.contains("response.completed"));
    drop(stub);
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "dropping the stub closes the stream");
}
