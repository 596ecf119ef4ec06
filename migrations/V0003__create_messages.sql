-- Messages. (sender_id, client_id) is unique: the same client id from the same sender
-- is the same message, so a retried send can never store a duplicate.
-- e2ee holds the encryption envelope as the client sent it; the server never reads it.
CREATE TABLE messages (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    chat_id     BIGINT UNSIGNED NOT NULL,
    sender_id   BIGINT UNSIGNED NOT NULL,
    client_id   VARCHAR(64)     NOT NULL,
    kind        ENUM('text','audio','call') NOT NULL,
    content     TEXT            NOT NULL,
    audio_id    BIGINT UNSIGNED NULL,
    encrypted   TINYINT(1)      NOT NULL DEFAULT 0,
    e2ee        MEDIUMTEXT      NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_messages_sender_client (sender_id, client_id),
    KEY ix_messages_chat_id (chat_id, id),
    CONSTRAINT fk_messages_chat FOREIGN KEY (chat_id) REFERENCES chats (id),
    CONSTRAINT fk_messages_sender FOREIGN KEY (sender_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
