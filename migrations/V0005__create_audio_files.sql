-- Uploaded voice messages. storage_name is random and server-chosen; the client's
-- file name is never stored in a path. message_id stays NULL until the audio is
-- sent, so unattached uploads can be found and removed after a while.
CREATE TABLE audio_files (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    uploader_id   BIGINT UNSIGNED NOT NULL,
    chat_id       BIGINT UNSIGNED NOT NULL,
    storage_name  VARCHAR(64)     NOT NULL,
    mime          VARCHAR(32)     NOT NULL,
    bytes         BIGINT UNSIGNED NOT NULL,
    duration_ms   INT UNSIGNED    NULL,
    message_id    BIGINT UNSIGNED NULL,
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_audio_files_storage_name (storage_name),
    UNIQUE KEY uq_audio_files_message (message_id),
    KEY ix_audio_files_unattached (message_id, created_at),
    CONSTRAINT fk_audio_files_uploader FOREIGN KEY (uploader_id) REFERENCES users (id),
    CONSTRAINT fk_audio_files_chat FOREIGN KEY (chat_id) REFERENCES chats (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
