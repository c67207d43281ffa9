//! Images attached to a message (`new --image`, `send --image`): local PNG, JPEG, GIF or WebP
//! files, told apart by their magic bytes (never by their names), at most
//! [`MAX_IMAGE_BYTES`] each and [`MAX_IMAGES`] per message, and only for a model whose catalog
//! entry accepts images. [`inspect`] checks files without side effects (the CLI calls it
//! before it asks the daemon, and the daemon again before it records anything); the turn
//! gets each as a `localImage` input, Codex reading the file itself, and the registry keeps
//! only path, size and SHA-256 ([`ImageRef`]). See ADR 0018.

use std::io::Read;
use std::path::Path;

use codex_app_server::AppServer;
use codex_app_server::protocol::UserInput;
use dispatch_contract::types::ModelsOutputCatalogState;
use dispatch_contract::{DispatchError, Hint, operations};
use dispatch_registry::{ImageRef, Registry};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::models;

/// The largest image file a message may carry (20 MiB).
pub const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;
/// The most images one message may carry.
pub const MAX_IMAGES: usize = 16;

/// The image formats Codex takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// GIF (87a or 89a).
    Gif,
    /// WebP (a RIFF container).
    Webp,
}

impl ImageKind {
    /// The format of a file starting with `head`, by its magic bytes.
    pub fn sniff(head: &[u8]) -> Option<ImageKind> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else if head.starts_with(b"\xff\xd8\xff") {
            Some(ImageKind::Jpeg)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(ImageKind::Gif)
        } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else {
            None
        }
    }

    /// Its name, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpeg",
            ImageKind::Gif => "gif",
            ImageKind::Webp => "webp",
        }
    }
}

/// One checked image: what a dry run shows and the registry keeps (with its format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// Its format.
    pub kind: ImageKind,
    /// Path, size and SHA-256.
    pub image: ImageRef,
}

fn refused(path: &str, what: impl std::fmt::Display) -> DispatchError {
    DispatchError::invalid_input(format!("`image`: {path} {what}"))
        .with_hint("give local PNG, JPEG, GIF or WebP files of at most 20 MiB each")
        .with_details(json!({ "field": "image", "path": path }))
}

/// Checks one image file at the absolute `path`: a regular file, at most
/// [`MAX_IMAGE_BYTES`], with the magic bytes of a format Codex takes; reads it once for its
/// SHA-256. Touches nothing.
pub fn inspect_one(path: &str) -> Result<ImageSummary, DispatchError> {
    if !Path::new(path).is_absolute() {
        return Err(refused(path, "is not an absolute path"));
    }
    let file =
        std::fs::File::open(path).map_err(|err| refused(path, format!("cannot be read: {err}")))?;
    let meta = file
        .metadata()
        .map_err(|err| refused(path, format!("cannot be read: {err}")))?;
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(refused(
            path,
            format!(
                "is {} bytes; an image may have at most 20 MiB ({MAX_IMAGE_BYTES} bytes)",
                meta.len()
            ),
        ));
    }
    // Bounded even if the file grows while it is read.
    let mut reader = file.take(MAX_IMAGE_BYTES + 1);
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(16);
    let mut size: u64 = 0;
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|err| refused(path, format!("cannot be read: {err}")))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if head.len() < 16 {
            head.extend(chunk.iter().take(16 - head.len()));
        }
        hasher.update(chunk);
        size += n as u64;
    }
    if size > MAX_IMAGE_BYTES {
        return Err(refused(path, "grew past 20 MiB while it was read"));
    }
    let kind = ImageKind::sniff(&head).ok_or_else(|| {
        refused(
            path,
            "is not a PNG, JPEG, GIF or WebP image (by its first bytes)",
        )
    })?;
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ImageSummary {
        kind,
        image: ImageRef {
            path: path.to_owned(),
            size,
            sha256,
        },
    })
}

/// Checks every image of a message (at most [`MAX_IMAGES`]); see [`inspect_one`].
pub fn inspect(paths: &[String]) -> Result<Vec<ImageSummary>, DispatchError> {
    if paths.len() > MAX_IMAGES {
        return Err(DispatchError::invalid_input(format!(
            "`image`: {} images given; a message may carry at most {MAX_IMAGES}",
            paths.len()
        )));
    }
    paths.iter().map(|path| inspect_one(path)).collect()
}

/// [`inspect`] off the async runtime (files of up to 20 MiB each are read).
pub async fn inspect_blocking(paths: Vec<String>) -> Result<Vec<ImageRef>, DispatchError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || inspect(&paths))
        .await
        .map_err(|err| DispatchError::internal(format!("checking images: {err}")))?
        .map(|checked| checked.into_iter().map(|s| s.image).collect())
}

/// Refuses images for `model` (Codex's default when `None`) when its catalog entry does not
/// list `image` among its input modalities. A model the catalog does not know is not
/// refused: Codex decides.
pub async fn check_model_takes_images(
    server: &AppServer,
    registry: &Registry,
    model: Option<&str>,
) -> Result<(), DispatchError> {
    let mut catalog = models::cached(registry).await?;
    if catalog.catalog_state == ModelsOutputCatalogState::Empty {
        catalog = models::refresh(server, registry).await?;
    }
    let id = model
        .map(str::to_owned)
        .or_else(|| catalog.default_model.clone())
        .or_else(|| {
            catalog
                .models
                .iter()
                .find(|m| m.is_default)
                .map(|m| m.id.clone())
        });
    let Some(id) = id else { return Ok(()) };
    let Some(entry) = catalog.models.iter().find(|m| m.id == id) else {
        return Ok(());
    };
    if entry.input_modalities.iter().any(|m| m == "image") {
        return Ok(());
    }
    let takes: Vec<&str> = catalog
        .models
        .iter()
        .filter(|m| m.input_modalities.iter().any(|i| i == "image"))
        .map(|m| m.id.as_str())
        .collect();
    Err(DispatchError::invalid_input(format!(
        "model `{id}` does not accept images (its input: {})",
        entry.input_modalities.join(", ")
    ))
    .with_hint(
        Hint::new(format!(
            "leave out the images, or use a model that accepts them ({}); {{0}} lists them",
            if takes.is_empty() {
                "none is in the catalog".to_owned()
            } else {
                takes.join(", ")
            }
        ))
        .run(&operations::MODELS, json!({})),
    )
    .with_details(json!({ "field": "image", "model": id })))
}

/// The turn input for a message: its text, then each image as a `localImage`.
pub fn turn_input(text: &str, images: &[ImageRef]) -> Vec<UserInput> {
    let mut input = vec![UserInput::text(text)];
    input.extend(images.iter().map(|image| UserInput::LocalImage {
        detail: None,
        path: image.path.clone(),
    }));
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn formats_are_told_by_magic_bytes() {
        assert_eq!(ImageKind::sniff(PNG), Some(ImageKind::Png));
        assert_eq!(ImageKind::sniff(b"\xff\xd8\xff\xe0"), Some(ImageKind::Jpeg));
        assert_eq!(ImageKind::sniff(b"GIF89a.."), Some(ImageKind::Gif));
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(ImageKind::sniff(b"not an image"), None);
        assert_eq!(ImageKind::sniff(b""), None);
    }

    #[test]
    fn files_are_checked_and_digested() {
        let dir = tempfile::tempdir().expect("tempdir");
        let png = dir.path().join("shot.txt");
        std::fs::write(&png, PNG).expect("write");
        let path = png.display().to_string();
        let checked = inspect(std::slice::from_ref(&path)).expect("a PNG by its bytes");
        assert_eq!(checked[0].kind, ImageKind::Png);
        assert_eq!(checked[0].image.size, PNG.len() as u64);
        assert_eq!(checked[0].image.sha256.len(), 64);

        let text = dir.path().join("fake.png");
        std::fs::write(&text, "hello").expect("write");
        let err = inspect(&[text.display().to_string()]).expect_err("not an image");
        assert!(err.message.contains("not a PNG"), "{err:?}");

        let big = dir.path().join("big.png");
        let file = std::fs::File::create(&big).expect("create");
        file.set_len(MAX_IMAGE_BYTES + 1).expect("grow");
        let err = inspect(&[big.display().to_string()]).expect_err("too big");
        assert!(err.message.contains("20 MiB"), "{err:?}");

        let err = inspect(&["shot.png".to_owned()]).expect_err("relative");
        assert!(err.message.contains("absolute"), "{err:?}");
        let err = inspect(&[dir.path().display().to_string()]).expect_err("a directory");
        assert!(err.message.contains("regular file"), "{err:?}");
        let many = vec![path; MAX_IMAGES + 1];
        let err = inspect(&many).expect_err("too many");
        assert!(err.message.contains("at most 16"), "{err:?}");
    }
}
