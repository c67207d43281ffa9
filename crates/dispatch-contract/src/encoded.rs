//! [`Encoded`]: an item of an output that the daemon may hand over already encoded (the
//! contract's `encoded_outputs`, e.g. `list`'s lanes, whose text the daemon keeps per lane).
//! Either form encodes to the same text, and decoding gives the typed form, so a reader of
//! a decoded output (the CLI, MCP, the RPC client) holds a `T`; a reader of the daemon's own
//! answer asks for it ([`Encoded::typed`], [`Encoded::decode`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The JSON text of a `T`, encoded once (compact, as every answer is written); the value
/// itself is not kept.
pub struct EncodedText<T> {
    text: Box<RawValue>,
    of: PhantomData<fn() -> T>,
}

impl<T: Serialize> EncodedText<T> {
    /// Encodes `value`.
    pub fn encode(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self {
            text: serde_json::value::to_raw_value(value)?,
            of: PhantomData,
        })
    }
}

impl<T> EncodedText<T> {
    /// The JSON text.
    pub fn text(&self) -> &str {
        self.text.get()
    }
}

impl<T: DeserializeOwned> EncodedText<T> {
    /// The value the text was encoded from, read back from the text.
    pub fn decode(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.text.get())
    }
}

impl<T> fmt::Debug for EncodedText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedText")
            .field(&self.text.get())
            .finish()
    }
}

/// An item of an output: a value encoded with the output, or the text of a value encoded
/// before (shared with whoever keeps it). Both encode to the same text (the text of an
/// [`EncodedText`] is written as it is); decoding always gives [`Encoded::Typed`].
///
/// The shared form writes its text through `serde_json`'s raw values: encode outputs holding
/// it with `serde_json` (as every surface does), or into a `serde_json::Value`.
pub enum Encoded<T> {
    /// A value to be encoded with the output.
    Typed(T),
    /// The text of a value, encoded before.
    Shared(Arc<EncodedText<T>>),
}

impl<T> Encoded<T> {
    /// The value, when this holds it ([`Encoded::Typed`]: every decoded output's items).
    pub fn typed(&self) -> Option<&T> {
        match self {
            Encoded::Typed(value) => Some(value),
            Encoded::Shared(_) => None,
        }
    }
}

impl<T: DeserializeOwned + Clone> Encoded<T> {
    /// The value: the one held, or the shared text read back.
    pub fn decode(&self) -> Result<Cow<'_, T>, serde_json::Error> {
        match self {
            Encoded::Typed(value) => Ok(Cow::Borrowed(value)),
            Encoded::Shared(encoded) => encoded.decode().map(Cow::Owned),
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

/// Two typed values are equal when the values are; otherwise when their texts are (a value
/// that does not encode equals nothing but itself, typed).
impl<T: PartialEq + Serialize> PartialEq for Encoded<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Encoded::Typed(a), Encoded::Typed(b)) => a == b,
            (Encoded::Shared(a), Encoded::Shared(b)) => a.text() == b.text(),
            (Encoded::Typed(value), Encoded::Shared(encoded))
            | (Encoded::Shared(encoded), Encoded::Typed(value)) => {
                serde_json::to_string(value).is_ok_and(|text| text == encoded.text())
            }
        }
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
        note: String,
    }

    /// Both forms encode to the same text, alone and inside an output (as a value tree too),
    /// compare equal, and the shared text decodes to the value.
    #[test]
    fn both_forms_encode_to_the_same_text_and_decode_to_the_value() {
        let item = Item {
            name: "tab\tand é \"q\"".into(),
            at: None,
            note: String::new(),
        };
        let typed = Encoded::Typed(item.clone());
        let shared = Encoded::Shared(Arc::new(EncodedText::encode(&item).unwrap()));
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
        assert_eq!(shared, typed);
        assert_eq!(shared, shared.clone());
        let other = Encoded::Typed(Item {
            at: Some(1),
            ..item.clone()
        });
        assert_ne!(other, shared);
        assert_eq!(typed.typed(), Some(&item));
        assert_eq!(shared.typed(), None);
        assert_eq!(shared.decode().unwrap().into_owned(), item);
        assert_eq!(typed.decode().unwrap().into_owned(), item);
        let Encoded::Shared(kept) = &shared else {
            panic!("shared")
        };
        assert_eq!(kept.text(), text);
    }

    #[test]
    fn decoding_gives_the_typed_form() {
        let back: Vec<Encoded<Item>> =
            serde_json::from_str(r#"[{"name":"a","at":null,"note":""}]"#).unwrap();
        assert!(matches!(&back[0], Encoded::Typed(o) if o.name == "a"));
    }
}
