//! Who is calling: JWTs, password hashes and the login throttle.

pub mod extractor;
pub mod jwt;
pub mod password;
pub mod throttle;

pub use extractor::AuthUser;
pub use jwt::JwtKeys;
pub use password::Hasher;
pub use throttle::LoginThrottle;
