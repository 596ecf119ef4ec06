//! Who is calling: JWTs, sign-in sessions, password hashes, the login throttle and
//! WebSocket tickets.

pub mod confirm;
pub mod extractor;
pub mod jwt;
pub mod known_sources;
pub mod login_delay;
pub mod password;
pub mod sessions;
pub mod throttle;
pub mod ticket;

pub use extractor::AuthUser;
pub use jwt::JwtKeys;
pub use password::Hasher;
pub use sessions::AuthSessions;
pub use throttle::LoginThrottle;
pub use ticket::WsTickets;
