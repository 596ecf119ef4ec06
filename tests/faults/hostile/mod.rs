//! Hostile users (issue 15): each attack one account could make on everyone else,
//! reproduced against the real binary, and what happens now. Every case prints a
//! `RELIABILITY:` line with its figures for the README's Security table.

mod accounts;
mod chats;
mod frames;
mod receipts;
mod rooms;
mod stall;
mod uploads;

pub use parley_testkit::raw::{frame_header, raw_ws, text_frame};
