-- Chats and their members. A direct chat carries direct_key = "<lower id>:<higher id>",
-- unique, so "create or return the existing one" cannot race into two chats.
-- The chat list orders by the newest message (messages(chat_id, id) answers MAX(id)
-- per chat from the index), so the send path writes nothing here.
CREATE TABLE chats (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    kind              ENUM('direct','group') NOT NULL,
    title             VARCHAR(100)    NULL,
    direct_key        VARCHAR(41)     NULL,
    created_by        BIGINT UNSIGNED NOT NULL,
    created_at        DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_chats_direct_key (direct_key),
    CONSTRAINT fk_chats_created_by FOREIGN KEY (created_by) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Per-recipient delivery and read state is kept as two watermarks per member:
-- every message of the chat with id <= delivered_up_to (read_up_to) and another
-- sender counts as delivered (read) to this member. One row per member instead of
-- one row per message and recipient keeps group fan-out O(1) in writes.
CREATE TABLE chat_members (
    chat_id          BIGINT UNSIGNED NOT NULL,
    user_id          BIGINT UNSIGNED NOT NULL,
    joined_at        DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    delivered_up_to  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    read_up_to       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id),
    KEY ix_chat_members_user (user_id, chat_id),
    CONSTRAINT fk_chat_members_chat FOREIGN KEY (chat_id) REFERENCES chats (id),
    CONSTRAINT fk_chat_members_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
