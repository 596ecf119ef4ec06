//! Attachments (issue 18): what an upload is and what it is called (`kind`), where
//! it lives on disk (`files`), how an image is checked, cleaned and thumbnailed
//! (`images`) on bounded workers (`pool`), and the sweep of uploads never sent
//! (`sweep`). Receiving the body is `crate::upload`; the routes `routes::media`.

pub mod files;
pub mod images;
pub mod kind;
pub mod pool;
pub mod sweep;

pub use kind::{display_name, ImageType, MediaKind, Sniffed};
pub use pool::ImagePool;

/// `/api/media/<id>`: where a media's bytes are downloaded.
pub fn media_url(id: parley_actors::MediaId) -> String {
    format!("/api/media/{id}")
}

/// `/api/media/<id>/thumbnail`.
pub fn thumbnail_url(id: parley_actors::MediaId) -> String {
    format!("/api/media/{id}/thumbnail")
}
