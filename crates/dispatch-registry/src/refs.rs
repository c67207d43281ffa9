//! Lane refs: six random base62 characters, drawn from the operating system's random source.

use std::path::Path;

use crate::RegistryError;

/// The characters a ref is made of, in ASCII order.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The length of every ref.
pub(crate) const REF_LEN: usize = 6;

/// Bytes at or above this are rejected, so that `byte % 62` is uniform (248 = 4 × 62).
const UNBIASED_LIMIT: u8 = 248;

/// Draws a fresh random ref.
pub(crate) fn random_ref(path: &Path) -> Result<String, RegistryError> {
    let mut out = String::with_capacity(REF_LEN);
    let mut buf = [0_u8; 16];
    while out.len() < REF_LEN {
        getrandom::fill(&mut buf).map_err(|err| {
            RegistryError::io(
                path,
                std::io::Error::other(format!("reading the random source for a lane ref: {err}")),
            )
        })?;
        for byte in buf {
            if out.len() == REF_LEN {
                break;
            }
            if byte < UNBIASED_LIMIT {
                out.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    Ok(out)
}

/// A fresh receipt id for a delivery: `r` and twelve random base62 characters (71 bits).
pub fn receipt_id() -> Result<String, std::io::Error> {
    let mut out = String::from("r");
    let mut buf = [0_u8; 32];
    while out.len() < 13 {
        getrandom::fill(&mut buf).map_err(|err| {
            std::io::Error::other(format!("reading the random source for a receipt id: {err}"))
        })?;
        for byte in buf {
            if out.len() == 13 {
                break;
            }
            if byte < UNBIASED_LIMIT {
                out.push(char::from(BASE62[usize::from(byte % 62)]));
            }
        }
    }
    Ok(out)
}

/// Whether `text` could be (a prefix of) a ref: 1 to 6 base62 characters.
pub(crate) fn could_be_ref_prefix(text: &str) -> bool {
    (1..=REF_LEN).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn random_refs_are_six_base62_characters_and_differ() {
        let path = Path::new("registry.db");
        let refs: Vec<String> = (0..200).map(|_| random_ref(path).unwrap()).collect();
        for lane_ref in &refs {
            assert_eq!(lane_ref.len(), REF_LEN, "{lane_ref}");
            assert!(lane_ref.bytes().all(|b| BASE62.contains(&b)), "{lane_ref}");
        }
        let mut unique = refs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            refs.len(),
            "200 random refs should not collide"
        );
    }

    #[test]
    fn ref_prefixes_are_short_base62_strings() {
        assert!(could_be_ref_prefix("a"));
        assert!(could_be_ref_prefix("0k7M4a"));
        assert!(!could_be_ref_prefix(""));
        assert!(!could_be_ref_prefix("0k7M4a1"));
        assert!(!could_be_ref_prefix("@h"));
        assert!(!could_be_ref_prefix("a-b"));
    }
}
