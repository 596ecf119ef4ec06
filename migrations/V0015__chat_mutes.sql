-- Issue 20: a member may mute a chat's notifications (Web Push), until a time or
-- until they unmute (9999-12-31 23:59:59). NULL: not muted. Only the push engine
-- reads it, per message, for the few members it considers (chat_id, user_id is
-- the primary key).
ALTER TABLE chat_members ADD COLUMN muted_until DATETIME(3) NULL;
