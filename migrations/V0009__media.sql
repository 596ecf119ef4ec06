-- Issue 18: photos and files. Voice messages become one kind of upload among three,
-- so audio_files becomes media_files and messages.audio_id messages.media_id. Ids
-- are kept: an old audio id is its media id (GET /api/media/audio/:id and
-- GET /api/media/:id name the same file), and existing rows stay audio.
-- kind: what the bytes are ('file' for anything not recognised, and for every
-- encrypted upload, whose bytes the server cannot read).
-- name: the client's file name, sanitised for display; never part of a path.
-- width/height: an image's size after its EXIF orientation was applied.
-- thumb_name/thumb_bytes: the stored thumbnail (uploads/media/thumbs/), if any.
-- The quota (user_storage.used_bytes) counts `bytes` only: a thumbnail is at most
-- 320 px and a few tens of KiB.
RENAME TABLE audio_files TO media_files;

ALTER TABLE media_files
    ADD COLUMN kind         ENUM('image','audio','file') NOT NULL DEFAULT 'audio' AFTER chat_id,
    ADD COLUMN name         VARCHAR(255)    NOT NULL DEFAULT '' AFTER kind,
    ADD COLUMN width        INT UNSIGNED    NULL AFTER duration_ms,
    ADD COLUMN height       INT UNSIGNED    NULL AFTER width,
    ADD COLUMN thumb_name   VARCHAR(64)     NULL AFTER height,
    ADD COLUMN thumb_bytes  BIGINT UNSIGNED NULL AFTER thumb_name,
    ADD COLUMN encrypted    TINYINT(1)      NOT NULL DEFAULT 0 AFTER thumb_bytes,
    RENAME INDEX uq_audio_files_storage_name TO uq_media_files_storage_name,
    RENAME INDEX uq_audio_files_message TO uq_media_files_message,
    RENAME INDEX ix_audio_files_unattached TO ix_media_files_unattached;

-- The foreign keys keep their names (fk_audio_files_*): renaming one means dropping
-- and re-adding it, a table copy for nothing but a name.

-- New message kinds at the end of the list (an instant change in MariaDB).
ALTER TABLE messages
    RENAME COLUMN audio_id TO media_id,
    MODIFY COLUMN kind ENUM('text','audio','call','image','file') NOT NULL;
