-- One current end-to-end public key per user (SPKI PEM), with its fingerprint:
-- lowercase hex SHA-256 of the DER bytes.
CREATE TABLE public_keys (
    user_id      BIGINT UNSIGNED NOT NULL,
    public_key   TEXT            NOT NULL,
    fingerprint  CHAR(64)        NOT NULL,
    updated_at   DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id),
    CONSTRAINT fk_public_keys_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
