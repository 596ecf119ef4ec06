-- The full-text index leaves the messages table (issue 17's bench: InnoDB's FULLTEXT
-- maintenance on every INSERT into messages cost ~40% of send throughput). Search
-- rows live in message_search, written by a background indexer after a message is
-- stored (src/search_index.rs) and, for edits and deletes, in the change's own
-- transaction. search_text is what the index sees: the words of a plaintext,
-- non-call message's text or caption, each prefixed with 'c<chat id>w'
-- (src/domain/search_text.rs). A row exists only for a message that can be found.
SET SESSION innodb_ft_enable_stopword = OFF;
CREATE TABLE message_search (
    message_id   BIGINT UNSIGNED NOT NULL,
    search_text  TEXT            NOT NULL,
    PRIMARY KEY (message_id),
    FULLTEXT KEY ft_message_search (search_text)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO message_search (message_id, search_text)
    SELECT id, search_text FROM messages
    WHERE search_text IS NOT NULL AND search_text <> '' AND deleted_at IS NULL;

-- FORCE rebuilds the table, which also drops the hidden FTS_DOC_ID column and its
-- unique index that the old FULLTEXT index had added to every row and INSERT.
ALTER TABLE messages DROP INDEX ft_messages_search, DROP COLUMN search_text, FORCE;
