//! Hostile users: see mod.rs.
