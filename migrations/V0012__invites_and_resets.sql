-- Issue 19: invitations, password resets, and what account export pages by.
--
-- Tokens are random (256 bits) and only their SHA-256 is stored: a copy of the
-- database (a backup, a replica) cannot be used to register or to take an account.
-- invites: a registration in `auth.registration = "invite"` mode consumes one use;
-- the row is locked (FOR UPDATE) in the transaction that inserts the user, so two
-- registrations racing for the last use cannot both win, and a refused registration
-- (a taken username) burns nothing. expires_at NULL: never expires.
CREATE TABLE invites (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token_hash  BINARY(32)      NOT NULL,
    max_uses    INT UNSIGNED    NOT NULL,
    uses        INT UNSIGNED    NOT NULL DEFAULT 0,
    expires_at  DATETIME(3)     NULL,
    revoked_at  DATETIME(3)     NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_invites_token (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One-time password reset links made by `parley admin user reset-password` (and
-- `admin user create`, which sets no password). used_at set: spent.
CREATE TABLE password_resets (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token_hash  BINARY(32)      NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    expires_at  DATETIME(3)     NOT NULL,
    used_at     DATETIME(3)     NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_password_resets_token (token_hash),
    KEY ix_password_resets_user (user_id),
    CONSTRAINT fk_password_resets_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- GET /api/users/me/export pages through the messages a user sent in the order of
-- uq_messages_sender_client (sender_id, client_id), which every message has. A
-- (sender_id, id) index would give id order, but a third secondary index on the
-- hottest table cost the fan-out bench's p99 50 -> 130 ms; exports are rare.
