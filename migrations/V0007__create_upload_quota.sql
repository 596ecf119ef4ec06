-- Upload quota and rate (issue 15). user_storage keeps each user's stored bytes as a
-- running total, changed in the same transaction as the audio_files row it counts
-- (insert on upload, delete by the unattached-upload sweep), so a quota check is one
-- row read instead of a SUM over every upload the user ever made. Its row is also
-- the lock that serializes one user's concurrent uploads, and carries the upload
-- rate's state (GCRA: the theoretical arrival time, unix milliseconds).
CREATE TABLE user_storage (
    user_id        BIGINT UNSIGNED NOT NULL,
    used_bytes     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    upload_tat_ms  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id),
    CONSTRAINT fk_user_storage_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO user_storage (user_id, used_bytes)
    SELECT uploader_id, SUM(bytes) FROM audio_files GROUP BY uploader_id;

-- Uploads in flight: the bytes an upload may still write, taken before its body is
-- read, so concurrent uploads of one user cannot together overshoot the quota. A row
-- is deleted when its upload is stored (same transaction) or refused; one left by a
-- crash is swept after storage.unattached_audio_ttl_secs.
CREATE TABLE upload_reservations (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id     BIGINT UNSIGNED NOT NULL,
    bytes       BIGINT UNSIGNED NOT NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY ix_upload_reservations_user (user_id),
    KEY ix_upload_reservations_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
