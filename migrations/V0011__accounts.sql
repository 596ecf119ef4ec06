-- Issue 19: sign-in sessions, disabled and deleted accounts.
--
-- Every login or registration creates an auth_sessions row; its id travels in the
-- token as `sid`. Revoking sets revoked_at (the row stays: the revocation log every
-- node polls is "rows whose revoked_at is recent", see src/auth/sessions.rs).
-- last_seen_at is written in batches by each node, never per request.
CREATE TABLE auth_sessions (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id       BIGINT UNSIGNED NOT NULL,
    device        VARCHAR(100)    NOT NULL,
    source        VARCHAR(45)     NULL,
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_seen_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at    DATETIME(3)     NULL,
    PRIMARY KEY (id),
    KEY ix_auth_sessions_user (user_id, revoked_at),
    KEY ix_auth_sessions_revoked (revoked_at),
    CONSTRAINT fk_auth_sessions_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A disabled account cannot sign in; a deleted one keeps only its id (its messages
-- stay in other people's chats, shown as from "Deleted account"): email, username
-- and password hash become NULL, which frees them (a UNIQUE key admits many NULLs).
ALTER TABLE users
    MODIFY email         VARCHAR(254) NULL,
    MODIFY username      VARCHAR(32)  NULL,
    MODIFY password_hash VARCHAR(255) NULL,
    ADD COLUMN disabled_at DATETIME(3) NULL,
    ADD COLUMN deleted_at  DATETIME(3) NULL;
