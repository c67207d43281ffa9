//! Reading back the items of an output that the daemon may hand over already encoded
//! (`x-dispatch.encoded_outputs`, [`Encoded`]) for a renderer: a decoded answer holds them
//! typed and they are borrowed; one still in its text is decoded, and a text that does not
//! decode is an `internal` error, never rendered as text.

use std::borrow::Cow;

use dispatch_contract::{DispatchError, Encoded};
use serde::de::DeserializeOwned;

/// The values of `items`, borrowed where they are typed; `what` names one item in the error
/// when one does not read back (`a lane of `list``).
pub fn read_back<'a, T: DeserializeOwned + Clone>(
    items: &'a [Encoded<T>],
    what: &str,
) -> Result<Vec<Cow<'a, T>>, DispatchError> {
    items
        .iter()
        .map(|item| {
            item.decode().map_err(|err| {
                DispatchError::internal(format!("{what} did not read back from its text: {err}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use dispatch_contract::{EncodedText, ErrorCode};
    use serde::{Deserialize, Serialize};

    use super::*;

    /// Encodes as `{"a":..}` but decodes only from `{"b":..}`: a text that does not read back.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OneWay {
        #[serde(rename(serialize = "a", deserialize = "b"))]
        value: u8,
    }

    #[test]
    fn typed_and_shared_items_read_back_to_their_values() {
        let item = OneWay { value: 7 };
        let items = vec![Encoded::Typed(item.clone())];
        let back = read_back(&items, "an item").unwrap();
        assert!(matches!(back[0], Cow::Borrowed(_)));
        assert_eq!(*back[0], item);
        let lanes = vec![Encoded::Shared(Arc::new(
            EncodedText::encode(&serde_json::json!({"ref": "ab"})).unwrap(),
        ))];
        assert_eq!(read_back(&lanes, "a value").unwrap()[0]["ref"], "ab");
    }

    /// A text that does not decode is an `internal` error naming the item, not output.
    #[test]
    fn an_item_that_does_not_read_back_is_an_internal_error() {
        let items = vec![
            Encoded::Typed(OneWay { value: 1 }),
            Encoded::Shared(Arc::new(EncodedText::encode(&OneWay { value: 2 }).unwrap())),
        ];
        let err = read_back(&items, "a lane of `list`").unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(
            err.message
                .starts_with("a lane of `list` did not read back from its text: missing field `b`"),
            "{}",
            err.message
        );
    }
}
