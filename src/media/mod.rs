//! Attachments (issue 18): what an upload is and what it is called (`kind`), where
//! it lives on disk (`files`), how an image is checked, cleaned and thumbnailed
//! (`images`) on bounded workers (`pool`), and the sweep of uploads never sent
//! (`sweep`). Receiving the body is `crate::upload`; the routes `routes::media`.

pub mod files;
pub mod images;
pub mod kind;
pub mod pool;
pub mod sweep;

pub use kind::{display_name, ImageType, Sniffed};
// The kind and the upload object are the actors' too (a message's `media`).
pub use parley_actors::attachment::{media_url, thumbnail_url, MediaInfo, MediaKind};
pub use pool::ImagePool;
