//! Input newtypes: each `parse` is the only way in, so the core never holds an
//! unchecked email, username or password.

mod device;
mod email;
pub mod fold;
mod login;
mod password;
pub mod search_text;
pub mod token;
mod username;

pub use device::Device;
pub use email::Email;
pub use login::Login;
pub use password::Password;
pub use username::Username;

use parley_actors::ErrorCode;

/// Why an input was refused: a stable code and a message for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    pub code: ErrorCode,
    pub message: String,
}

impl InvalidInput {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        InvalidInput {
            code,
            message: message.into(),
        }
    }
}

impl From<InvalidInput> for crate::error::ApiError {
    fn from(e: InvalidInput) -> Self {
        crate::error::ApiError::BadRequest {
            code: e.code,
            message: e.message,
        }
    }
}
