//! Turning a leaf command's matches into the operation's JSON input. Values keep their text
//! when they do not parse, so the contract validator (the one place) names the bad field.

use clap::ArgMatches;
use serde_json::{Map, Value};

/// How a field's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A flag: `true` when given, omitted otherwise.
    Flag,
    /// An integer.
    Integer,
    /// A number.
    Number,
    /// A string.
    Text,
    /// Repeated strings.
    TextList,
}

/// One input field of an operation, as the generated command tree declares it.
#[derive(Debug)]
pub struct Field {
    /// The input property (and clap argument id).
    pub name: &'static str,
    /// How its text becomes JSON.
    pub kind: FieldKind,
}

fn number(text: &str, kind: FieldKind) -> Value {
    let parsed = match kind {
        FieldKind::Integer => text.parse::<i64>().ok().map(Value::from),
        _ => text
            .parse::<f64>()
            .ok()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// The JSON input for `fields` from `matches`; fields not given are omitted, so the
/// contract's defaults apply.
pub fn input_from_matches(fields: &[Field], matches: &ArgMatches) -> Value {
    let mut input = Map::new();
    for field in fields {
        let value = match field.kind {
            FieldKind::Flag => matches.get_flag(field.name).then_some(Value::Bool(true)),
            FieldKind::TextList => matches
                .get_many::<String>(field.name)
                .map(|values| Value::Array(values.map(|v| Value::String(v.clone())).collect())),
            FieldKind::Text => matches
                .get_one::<String>(field.name)
                .map(|v| Value::String(v.clone())),
            FieldKind::Integer | FieldKind::Number => matches
                .get_one::<String>(field.name)
                .map(|v| number(v, field.kind)),
        };
        if let Some(value) = value {
            input.insert(field.name.to_owned(), value);
        }
    }
    Value::Object(input)
}
