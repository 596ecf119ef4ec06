-- Issue 19: group roles, removal that keeps history, system messages, blocking.
--
-- Roles: every member row says owner, admin or member. A group has one owner; a
-- direct chat has two members and no owner (its rows stay 'member').
ALTER TABLE chat_members
    ADD COLUMN role ENUM('owner','admin','member') NOT NULL DEFAULT 'member';

-- Existing groups: the creator owns the group if still in it ...
UPDATE chat_members cm JOIN chats c ON c.id = cm.chat_id
    SET cm.role = 'owner'
    WHERE c.kind = 'group' AND cm.user_id = c.created_by;

-- ... else the oldest member (joined first; the lowest id breaks ties). The picks
-- are materialised first: MariaDB refuses an UPDATE reading its own table directly.
CREATE TEMPORARY TABLE group_owner_picks (
    chat_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL
);
INSERT INTO group_owner_picks (chat_id, user_id)
    SELECT x.chat_id, MIN(x.user_id)
    FROM chat_members x
    JOIN chats c ON c.id = x.chat_id AND c.kind = 'group'
    JOIN (SELECT chat_id, MIN(joined_at) AS first FROM chat_members GROUP BY chat_id) f
        ON f.chat_id = x.chat_id AND f.first = x.joined_at
    WHERE NOT EXISTS (SELECT 1 FROM chat_members o WHERE o.chat_id = x.chat_id AND o.role = 'owner')
    GROUP BY x.chat_id;
UPDATE chat_members cm JOIN group_owner_picks p ON p.chat_id = cm.chat_id AND p.user_id = cm.user_id
    SET cm.role = 'owner';
DROP TEMPORARY TABLE group_owner_picks;

-- Former members. A removed (or departed) member's chat_members row is deleted, so
-- every path that asks "is this a member?" (rooms, fan-out, sync, catch-up, search,
-- receipts, media, calls, edits, envelopes, the chat list) answers "no" without
-- knowing about removals at all. What a former member keeps is read here, by the
-- history route only: the messages of the chat up to and including `left_after`
-- (the system message that recorded their removal). Re-adding them deletes the row.
CREATE TABLE chat_departures (
    chat_id     BIGINT UNSIGNED NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    left_after  BIGINT UNSIGNED NOT NULL,
    left_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (chat_id, user_id),
    KEY ix_chat_departures_user (user_id),
    CONSTRAINT fk_chat_departures_chat FOREIGN KEY (chat_id) REFERENCES chats (id),
    CONSTRAINT fk_chat_departures_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Group changes are messages of kind 'system' (content: JSON {action, actorId,
-- userIds, title?}), stored in the change's transaction. At the end of the list:
-- an instant change in MariaDB.
ALTER TABLE messages
    MODIFY COLUMN kind ENUM('text','audio','call','image','file','system') NOT NULL;

-- Blocks: blocker_id does not want to hear from blocked_id. Looked up by both
-- sides (a direct chat is refused if either blocked the other).
CREATE TABLE user_blocks (
    blocker_id  BIGINT UNSIGNED NOT NULL,
    blocked_id  BIGINT UNSIGNED NOT NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (blocker_id, blocked_id),
    KEY ix_user_blocks_blocked (blocked_id, blocker_id),
    CONSTRAINT fk_user_blocks_blocker FOREIGN KEY (blocker_id) REFERENCES users (id),
    CONSTRAINT fk_user_blocks_blocked FOREIGN KEY (blocked_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
