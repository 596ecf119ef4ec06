-- Call log: one row per call, written when it ends; the chat also gets a system
-- message (messages.kind = 'call') so the history shows it.
CREATE TABLE calls (
    call_id      VARCHAR(64)     NOT NULL,
    chat_id      BIGINT UNSIGNED NOT NULL,
    caller_id    BIGINT UNSIGNED NOT NULL,
    callee_id    BIGINT UNSIGNED NOT NULL,
    video        TINYINT(1)      NOT NULL,
    started_at   DATETIME(3)     NOT NULL,
    answered_at  DATETIME(3)     NULL,
    ended_at     DATETIME(3)     NULL,
    end_reason   VARCHAR(32)     NULL,
    PRIMARY KEY (call_id),
    KEY ix_calls_chat (chat_id, started_at),
    CONSTRAINT fk_calls_chat FOREIGN KEY (chat_id) REFERENCES chats (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
