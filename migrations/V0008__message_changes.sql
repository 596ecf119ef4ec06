-- Issue 17: replies, edits, deletes for everyone, reactions and search.
-- reply_to_id: the message this one answers (same chat, checked when sent).
-- edited_at / deleted_at: a deleted row keeps its id and place but loses its content,
-- envelope and media (set empty / NULL by the delete itself).
-- search_text: what the full-text index sees — the words of a plaintext text message,
-- each prefixed with 'w' (see src/domain/search_text.rs for why); NULL for encrypted,
-- call, audio and deleted messages, so they can never match.
ALTER TABLE messages
    ADD COLUMN reply_to_id  BIGINT UNSIGNED NULL AFTER e2ee,
    ADD COLUMN edited_at    DATETIME(3)     NULL AFTER created_at,
    ADD COLUMN deleted_at   DATETIME(3)     NULL AFTER edited_at,
    ADD COLUMN search_text  TEXT            NULL;

-- Stopwords off for the index built here: with the 'w' prefix nothing would be one,
-- but the server's list could still hold words of another language.
SET SESSION innodb_ft_enable_stopword = OFF;
ALTER TABLE messages ADD FULLTEXT INDEX ft_messages_search (search_text);

-- Every edit, delete and reaction, in the order stored: its id is the changeId a
-- client syncs from. kind 'react' rows carry the emoji, whether it was added and the
-- count after the change (so a replayed event equals the live one).
CREATE TABLE message_changes (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    chat_id     BIGINT UNSIGNED NOT NULL,
    message_id  BIGINT UNSIGNED NOT NULL,
    kind        ENUM('edit','delete','react') NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    emoji       VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    active      TINYINT(1)      NULL,
    count       INT UNSIGNED    NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY ix_message_changes_chat (chat_id, id),
    CONSTRAINT fk_message_changes_chat FOREIGN KEY (chat_id) REFERENCES chats (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Who reacted with what. The emoji compares byte for byte (utf8mb4_bin): under
-- unicode_ci distinct emoji can compare equal. change_id is the change that added
-- the reaction: reactions are listed in that order, the one a live client sees them
-- arrive in (a time would not do: two reactions can share a millisecond, and one
-- that waited for the message's lock would sort before the one that held it).
CREATE TABLE message_reactions (
    message_id  BIGINT UNSIGNED NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    emoji       VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    change_id   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (message_id, emoji, user_id),
    KEY ix_message_reactions_user (message_id, user_id),
    CONSTRAINT fk_message_reactions_message FOREIGN KEY (message_id) REFERENCES messages (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
