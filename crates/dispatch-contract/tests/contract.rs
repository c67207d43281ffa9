//! The contract's run-time rules that every surface shares: how long a client waits for a
//! call, what the validator says about a bad field, and that CLI-only fields are not part of
//! the input an operation takes.

use std::time::Duration;

use dispatch_contract::types::SendInput;
use dispatch_contract::{
    DEFAULT_CALL_TIMEOUT, ErrorCode, OPERATIONS, decode_input, longest_call_timeout, operations,
    validate_cli_input, validate_input,
};
use serde_json::{Value, json};

#[test]
fn a_call_waits_for_its_own_bound_plus_a_margin() {
    let watch = &operations::WATCH;
    let bound = watch.bound.expect("watch is bounded by its timeout");
    assert_eq!(bound.field, "timeout");
    assert_eq!(bound.maximum, 600.0);
    let longest = watch.call_timeout(&json!({"lane": "a", "timeout": 600}));
    assert!(longest > Duration::from_secs(600), "{longest:?}");
    assert!(longest <= longest_call_timeout());
    let long = watch.call_timeout(&json!({"lane": "a", "timeout": 300.5}));
    assert!(long > Duration::from_secs_f64(300.5), "{long:?}");
    // The default never shrinks: a short watch, or one with the default timeout, waits as
    // long as any other call.
    assert_eq!(
        watch.call_timeout(&json!({"lane": "a", "timeout": 1})),
        DEFAULT_CALL_TIMEOUT
    );
    assert_eq!(
        watch.call_timeout(&json!({"lane": "a"})),
        DEFAULT_CALL_TIMEOUT
    );
    // Out-of-range values are refused by the validator; the deadline stays bounded anyway.
    for odd in [json!(-1), json!("NaN"), json!(1e300)] {
        let deadline = watch.call_timeout(&json!({"lane": "a", "timeout": odd}));
        assert!(deadline <= longest_call_timeout(), "{odd}: {deadline:?}");
    }
    assert_eq!(
        operations::GET.call_timeout(&json!({"lane": "a"})),
        DEFAULT_CALL_TIMEOUT
    );
    assert!(longest_call_timeout() < Duration::from_secs(3600));
}

#[test]
fn a_bad_field_is_named_with_what_it_expects() {
    let err = validate_input(&operations::WATCH, &json!({"lane": "a", "timeout": "NaN"}))
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(
        err.message
            .contains("`timeout`: \"NaN\" is not of type \"number\" (expected a number greater than 0 and at most 600)"),
        "{}",
        err.message
    );
    assert_eq!(
        err.details["problems"][0]["expected"],
        "a number greater than 0 and at most 600"
    );
    let err = validate_input(&operations::LIST, &json!({"status": "sleepy"})).expect_err("refused");
    assert!(
        err.message.contains("expected one of `idle`"),
        "{}",
        err.message
    );
}

#[test]
fn a_nul_is_named_and_a_long_value_is_not_echoed() {
    let err = validate_input(&operations::SEARCH, &json!({"query": "a\u{0}b"})).expect_err("NUL");
    assert!(err.message.contains("NUL"), "{}", err.message);
    let long = "x".repeat(100_000) + "\u{0}";
    let err =
        validate_input(&operations::SEND, &json!({"lane": "a", "text": long})).expect_err("NUL");
    assert!(err.message.len() < 500, "{}", err.message);
}

#[test]
fn a_large_message_is_decoded_in_reasonable_time() {
    // The NUL pattern is checked by the validator and by the typed decoding; neither may
    // fall over on a large message.
    // A message at Codex's limit (1,048,576 characters) is valid; one more is refused.
    let text = format!("{}x", "word ".repeat(209_715));
    let started = std::time::Instant::now();
    let input: SendInput =
        decode_input(json!({"lane": "a", "text": text})).expect("a message at the limit is valid");
    assert_eq!(input.text.map(|t| t.len()), Some(1_048_576));
    assert!(started.elapsed() < Duration::from_secs(20));
    let over = format!("{text}y");
    let err = validate_input(&operations::SEND, &json!({"lane": "a", "text": over}))
        .expect_err("over the limit");
    assert!(err.message.contains("text"), "{}", err.message);
}

#[test]
fn file_inputs_are_cli_only() {
    for op in OPERATIONS {
        let wire: Value = serde_json::from_str(op.input_schema).expect("schema");
        let cli: Value = serde_json::from_str(op.cli_input_schema).expect("schema");
        for (file, text) in op.file_inputs {
            assert!(wire["properties"].get(file).is_none(), "{}.{file}", op.id);
            assert!(cli["properties"].get(file).is_some(), "{}.{file}", op.id);
            assert!(wire["properties"].get(text).is_some(), "{}.{text}", op.id);
        }
    }
    let with_file = json!({"lane": "a", "text_file": "/etc/passwd"});
    assert!(validate_cli_input(&operations::SEND, &with_file).is_ok());
    let err = validate_input(&operations::SEND, &with_file).expect_err("not on the wire");
    assert!(err.message.contains("text_file"), "{}", err.message);
}
