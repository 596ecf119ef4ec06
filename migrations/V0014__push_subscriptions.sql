-- Issue 20: Web Push subscriptions. One row per browser (its endpoint is unique: a
-- browser's endpoint belongs to whoever subscribed last on it), tied to the sign-in
-- session that made it: revoking the session deletes the row in the same
-- transaction (src/db/sessions.rs, src/db/accounts.rs); purging old session rows
-- cascades. p256dh (65 bytes) and auth (16 bytes) are the browser's keys for the
-- RFC 8291 encryption. failures counts consecutive failed sends (reset on success).
CREATE TABLE push_subscriptions (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id          BIGINT UNSIGNED NOT NULL,
    auth_session_id  BIGINT UNSIGNED NOT NULL,
    endpoint         VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    p256dh           VARBINARY(65)   NOT NULL,
    auth             VARBINARY(16)   NOT NULL,
    created_at       DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_success_at  DATETIME(3)     NULL,
    failures         INT UNSIGNED    NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY uq_push_subscriptions_endpoint (endpoint),
    KEY ix_push_subscriptions_user (user_id, id),
    KEY ix_push_subscriptions_session (auth_session_id),
    CONSTRAINT fk_push_subscriptions_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT fk_push_subscriptions_session FOREIGN KEY (auth_session_id)
        REFERENCES auth_sessions (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
