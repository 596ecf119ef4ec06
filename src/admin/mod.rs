//! Running a community: `parley admin …` (the command line, `cli`) and the account
//! operations it shares with the API (`delete_account`). Logic here, SQL in `db`.

pub mod cli;

use std::path::Path;

use parley_actors::UserId;

use crate::db::sessions::AuthSessionId;
use crate::db::{Db, DbError};
use crate::media::files;

/// How long a password-reset link works.
pub const RESET_VALID_SECS: u64 = 24 * 3600;

/// What deleting an account changed that live clients should hear about.
#[derive(Debug, Default)]
pub struct Departure {
    /// Groups the account left (each with its `left` system message and any
    /// ownership handover), for the API to announce as a member's leaving is.
    pub groups_left: Vec<crate::db::groups::GroupChange>,
    /// Its sessions, revoked (the API applies them to this node at once).
    pub revoked_sessions: Vec<AuthSessionId>,
}

/// Deletes account `user` (the API's `DELETE /api/users/me` and `parley admin user
/// delete`): the database part in one transaction (`Db::delete_account`: names and
/// hash erased, key, uploads and resets gone, sessions revoked), then it leaves its
/// groups through the same path as a member leaving, and its upload files are
/// removed. None when there is no such account or it is deleted already.
pub async fn delete_account(
    db: &Db,
    uploads: &Path,
    user: UserId,
) -> Result<Option<Departure>, DbError> {
    let Some(deleted) = db.delete_account(user).await? else {
        return Ok(None);
    };
    let mut departure = Departure {
        revoked_sessions: deleted.revoked_sessions,
        ..Departure::default()
    };
    for chat in deleted.groups {
        if let Ok(change) = db.leave_chat(chat, user).await? {
            departure.groups_left.push(change);
        }
    }
    // After the commit: a file whose row is gone is never served, and a crash here
    // leaves an orphan file, never a row pointing at nothing.
    for m in &deleted.uploads {
        files::remove(uploads, m.kind, &m.storage_name, m.thumb_name.as_deref()).await;
    }
    tracing::info!(user_id = %user, uploads = deleted.uploads.len(), "account deleted");
    Ok(Some(departure))
}
