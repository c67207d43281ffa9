//! Turning a leaf command's matches into the operation's JSON input. Values keep their text
//! when they do not parse, so the contract validator (the one place) names the bad field.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use clap::ArgMatches;
use dispatch_contract::DispatchError;
use serde_json::{Map, Value};

/// The command line as text; an argument that is not valid UTF-8 is `invalid_input` naming
/// it (its position, the flag it is the value of, and its bytes, escaped).
pub fn utf8_args(raw: Vec<OsString>) -> Result<Vec<String>, DispatchError> {
    let mut args: Vec<String> = Vec::with_capacity(raw.len());
    for (position, arg) in raw.into_iter().enumerate() {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                let bytes = arg.as_bytes();
                let escaped = bytes.escape_ascii().to_string();
                let which = match (bytes.strip_prefix(b"--"), args.last()) {
                    (Some(rest), _) if rest.contains(&b'=') => {
                        let name = rest.split(|b| *b == b'=').next().unwrap_or_default();
                        format!(
                            "argument {position} (the value of `--{}`)",
                            name.escape_ascii()
                        )
                    }
                    (_, Some(previous)) if position > 1 => {
                        format!(
                            "argument {position} (after `{}`)",
                            previous.escape_default()
                        )
                    }
                    _ => format!("argument {position}"),
                };
                return Err(DispatchError::invalid_input(format!(
                    "{which} is not valid UTF-8: `{escaped}`"
                ))
                .with_hint(
                    "dispatch takes its arguments as UTF-8 text; convert the value (e.g. with `iconv -t UTF-8`)",
                )
                .with_details(serde_json::json!({ "argument": position, "bytes": escaped })));
            }
        }
    }
    Ok(args)
}

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
    // `600` is the JSON number 600 on every surface, whatever the field's type; only text
    // with a fraction or an exponent becomes a float.
    let integer = text.parse::<i64>().ok().map(Value::from);
    let parsed = match kind {
        FieldKind::Integer => integer,
        _ => integer.or_else(|| {
            text.parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
        }),
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
