//! Every example of every contract file, run against a real daemon through the MCP surface
//! (which takes the example's JSON input as it is), and its output checked against the
//! operation's output schema. Operations only the CLI offers have no MCP tool: their examples
//! run through the same `Runner` both surfaces use, in this process.

mod support;

use dispatch_contract::{OPERATIONS, Operation, Surface, validate_output};
use serde_json::{Value, json};

/// `actual` matches `expected` when every key of an expected object matches, arrays match
/// item by item, and the string `"*"` matches anything.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(s), _) if s == "*" => true,
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        (e, a) => e == a,
    }
}

#[test]
fn every_contract_example_holds_against_a_real_daemon() {
    let home = support::Home::new();
    home.up();
    let mut mcp = home.mcp_all();
    mcp.initialize();
    let home_dir = home.path();
    let paths = dispatch_home::Paths::from_lookup(|name| {
        (name == "DISPATCH_HOME").then(|| home_dir.clone())
    })
    .expect("paths");
    let runner = (
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        dispatch_client::Runner::new(paths),
    );
    let mut ran = 0;
    for op in OPERATIONS {
        let examples: Vec<Value> = serde_json::from_str(op.examples).expect("examples JSON");
        for example in examples {
            let title = example["title"].as_str().unwrap_or_default();
            let result = if op.on(Surface::Mcp) {
                mcp.call(&format!("dispatch_{}", op.id), example["input"].clone())
            } else {
                run_in_process(&runner, op, example["input"].clone())
            };
            let content = &result["structuredContent"];
            if let Some(code) = example["error"].as_str() {
                let error = support::mcp_error_body(&result);
                assert_eq!(error["code"], code, "`{}`: {title}: {result}", op.id);
            } else {
                assert_eq!(result["isError"], false, "`{}`: {title}: {result}", op.id);
                validate_output(op, content)
                    .unwrap_or_else(|err| panic!("`{}`: {title}: {err:?}", op.id));
                assert!(
                    matches(&example["output"], content),
                    "`{}`: {title}: expected {} got {content}",
                    op.id,
                    example["output"]
                );
            }
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} examples ran");
}

/// Runs `op` in this process as a front end would, answering in the shape of an MCP tool
/// result (`structuredContent`, or the error JSON as text) so both kinds of example read alike.
fn run_in_process(
    (runtime, runner): &(tokio::runtime::Runtime, dispatch_client::Runner),
    op: &'static Operation,
    input: Value,
) -> Value {
    match runtime.block_on(runner.run(op, input)) {
        Ok(output) => json!({ "isError": false, "structuredContent": output }),
        Err(err) => json!({
            "isError": true,
            "content": [{ "type": "text", "text": err.to_json().to_string() }],
        }),
    }
}
