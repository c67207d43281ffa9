//! [`Encoded`]: an item of an output that the daemon may hand over already encoded (the
//! contract's `encoded_outputs`, e.g. `list`'s lanes, whose text the daemon keeps per lane).
//! Either form encodes to the same text, and decoding gives the typed form, so a reader of
//! the output sees a `T` either way.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A value and its JSON text, encoded once (compact, as every answer is written).
pub struct EncodedValue<T> {
    value: T,
    text: Box<RawValue>,
}

impl<T: Serialize> EncodedValue<T> {
    /// Encodes `value` and keeps both; a value that does not encode comes back with why.
    pub fn encode(value: T) -> Result<Self, (T, serde_json::Error)> {
        match serde_json::value::to_raw_value(&value) {
            Ok(text) => Ok(Self { value, text }),
            Err(err) => Err((value, err)),
        }
    }
}

impl<T> EncodedValue<T> {
    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Its JSON text.
    pub fn text(&self) -> &str {
        self.text.get()
    }
}

impl<T: fmt::Debug> fmt::Debug for EncodedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedValue")
            .field("value", &self.value)
            .field("text", &self.text.get())
            .finish()
    }
}

/// An item of an output: a value encoded with the output, or a value already encoded (shared
/// with whoever keeps it). Both encode to the same text (the text of an [`EncodedValue`] is
/// its value's, written as it is); decoding always gives [`Encoded::Typed`]. It dereferences
/// to the value, so readers do not care which form they hold.
///
/// The shared form writes its text through `serde_json`'s raw values: encode outputs holding
/// it with `serde_json` (as every surface does), or into a `serde_json::Value`.
pub enum Encoded<T> {
    /// A value to be encoded with the output.
    Typed(T),
    /// A value with its text, encoded before.
    Shared(Arc<EncodedValue<T>>),
}

impl<T> Deref for Encoded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Encoded::Typed(value) => value,
            Encoded::Shared(encoded) => &encoded.value,
        }
    }
}

impl<T> From<T> for Encoded<T> {
    fn from(value: T) -> Self {
        Encoded::Typed(value)
    }
}

impl<T: Clone> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        match self {
            Encoded::Typed(value) => Encoded::Typed(value.clone()),
            Encoded::Shared(encoded) => Encoded::Shared(Arc::clone(encoded)),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encoded::Typed(value) => f.debug_tuple("Typed").field(value).finish(),
            Encoded::Shared(encoded) => f.debug_tuple("Shared").field(encoded).finish(),
        }
    }
}

/// Equal when the values are, whichever form holds them.
impl<T: PartialEq> PartialEq for Encoded<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Serialize> Serialize for Encoded<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Encoded::Typed(value) => value.serialize(serializer),
            Encoded::Shared(encoded) => encoded.text.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Encoded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Encoded::Typed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Item {
        name: String,
        at: Option<u64>,
        note: &'static str,
    }

    /// Both forms encode to the same text, alone and inside an output (as a value tree too),
    /// and decode to the typed form, equal to the value.
    #[test]
    fn both_forms_encode_to_the_same_text_and_decode_typed() {
        let item = Item {
            name: "tab\tand é \"q\"".into(),
            at: None,
            note: "",
        };
        let typed = Encoded::Typed(item.clone());
        let shared = Encoded::Shared(Arc::new(EncodedValue::encode(item.clone()).unwrap()));
        let text = serde_json::to_string(&item).unwrap();
        assert_eq!(serde_json::to_string(&typed).unwrap(), text);
        assert_eq!(serde_json::to_string(&shared).unwrap(), text);
        let both = vec![typed.clone(), shared.clone()];
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            format!("[{text},{text}]")
        );
        assert_eq!(
            serde_json::to_value(&both).unwrap(),
            serde_json::json!([item, item])
        );
        assert_eq!(typed, shared);
        assert_eq!(shared.name, item.name);
        let Encoded::Shared(kept) = &shared else {
            panic!("shared")
        };
        assert_eq!(kept.text(), text);
        assert_eq!(kept.value(), &item);
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Owned {
        name: String,
    }

    #[test]
    fn decoding_gives_the_typed_form() {
        let back: Vec<Encoded<Owned>> = serde_json::from_str(r#"[{"name":"a"}]"#).unwrap();
        assert!(matches!(&back[0], Encoded::Typed(o) if o.name == "a"));
    }
}
