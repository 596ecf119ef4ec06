#!/usr/bin/env bash
# Measures message search on MariaDB: the FULLTEXT index ft_message_search as the
# server fills and queries it (tokens that name their chat, src/domain/search_text.rs
# and src/db/search.rs), against the same index over bare words (one token per word
# whatever the chat, filtered by chat afterwards), and against a LIKE scan over the
# user's chats. Makes a throwaway database, applies migrations/ to it, fills it with
# 200,000 messages over 50 chats, times each query and prints a Markdown table (the
# README's "Search: MariaDB full-text index, measured"), then drops the database.
#
#   scripts/search-bench.sh                  # about 3 minutes on 2 cores
#   MYSQL="mysql -uparley -pparley -h127.0.0.1" scripts/search-bench.sh
#   RUNS=11 KEEP=1 scripts/search-bench.sh   # more runs per query; keep the database
#   REUSE=1 scripts/search-bench.sh          # time again on the database KEEP=1 kept
#
# MYSQL is the client command (default: root over TCP, as CI has it); its account
# needs CREATE/DROP on `parley_searchbench`. Nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

MYSQL=${MYSQL:-mysql -uroot -h127.0.0.1}
DB=${DB:-parley_searchbench}
RUNS=${RUNS:-7}
sql() { $MYSQL --default-character-set=utf8mb4 -N -B "$@"; }

[ "${KEEP:-0}" = 1 ] || trap 'sql -e "DROP DATABASE IF EXISTS $DB"' EXIT
if [ "${REUSE:-0}" != 1 ]; then
echo "creating $DB and applying migrations/" >&2
sql -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
for f in migrations/V*.sql; do sql "$DB" <"$f"; done

echo "filling: 100 users, 50 chats, 200,000 messages (about two minutes)" >&2
sql "$DB" >/dev/null <<'SQL'
-- user 1 is in all 50 chats, user 2 in chats 1 to 3, the others in 2 chats each
INSERT INTO users (id, email, username, password_hash)
  SELECT seq, CONCAT('u', seq, '@bench.invalid'), CONCAT('u', seq), 'x' FROM seq_1_to_100;
INSERT INTO chats (id, kind, title, created_by)
  SELECT seq, 'group', CONCAT('chat ', seq), 1 FROM seq_1_to_50;
INSERT INTO chat_members (chat_id, user_id) SELECT seq, 1 FROM seq_1_to_50;
INSERT INTO chat_members (chat_id, user_id) SELECT seq, 2 FROM seq_1_to_3;
INSERT IGNORE INTO chat_members (chat_id, user_id)
  SELECT 1 + (u.seq * 7 + k.seq * 13) % 50, u.seq FROM seq_3_to_100 u CROSS JOIN seq_0_to_1 k;
-- a vocabulary of 20,000 words made of syllables, the most frequent the shortest:
-- ranks 0-29 are 'kan', 'lon', …, 30-899 two syllables, the rest three
CREATE TEMPORARY TABLE syl (i INT PRIMARY KEY, s VARCHAR(4));
INSERT INTO syl VALUES (0,'ka'),(1,'lo'),(2,'mi'),(3,'ne'),(4,'ru'),(5,'sa'),(6,'te'),(7,'vo'),
 (8,'bi'),(9,'da'),(10,'fe'),(11,'go'),(12,'hu'),(13,'ji'),(14,'po'),(15,'re'),(16,'si'),
 (17,'tu'),(18,'za'),(19,'xo'),(20,'ma'),(21,'ni'),(22,'ol'),(23,'pa'),(24,'qu'),(25,'ro'),
 (26,'su'),(27,'ti'),(28,'ve'),(29,'wy');
CREATE TEMPORARY TABLE vocab (i INT PRIMARY KEY, w VARCHAR(16));
INSERT INTO vocab
  SELECT v.seq, CASE WHEN v.seq < 30 THEN CONCAT(a.s, 'n')
                     WHEN v.seq < 900 THEN CONCAT(a.s, b.s)
                     ELSE CONCAT(a.s, b.s, c.s) END
  FROM seq_0_to_19999 v
  JOIN syl a ON a.i = v.seq % 30
  JOIN syl b ON b.i = (v.seq DIV 30) % 30
  JOIN syl c ON c.i = (v.seq DIV 900) % 30;
-- 3 to 14 words a message, ranks log-uniform (Zipf-like: rank r has probability ~1/r),
-- deterministic (seeded RAND)
CREATE TEMPORARY TABLE picks (m INT, k INT, r INT, PRIMARY KEY (m, k));
INSERT INTO picks
  SELECT m.seq, k.seq, FLOOR(POW(20000, RAND(m.seq * 31 + k.seq))) - 1
  FROM seq_1_to_200000 m JOIN seq_1_to_14 k ON k.seq <= 3 + m.seq * 7 % 12;
-- messages take the chats in turn, as on a live server; 5 % are encrypted (no text)
-- and 1 % call traces, with no row in message_search; the others get a row holding
-- index_text(chat, content) (for these plain words: each word behind 'c<chat>w'), as
-- the server's indexer writes it
INSERT INTO messages (id, chat_id, sender_id, client_id, kind, content, encrypted, created_at)
  SELECT t.id, t.chat_id, 1, CONCAT('b', t.id),
         IF(t.id % 100 = 11, 'call', 'text'),
         CASE WHEN t.id % 100 = 11 THEN '{"outcome":"missed"}' WHEN t.id % 20 = 7 THEN '' ELSE t.content END,
         t.id % 20 = 7,
         TIMESTAMPADD(SECOND, t.id, '2026-01-01')
  FROM (SELECT p.m AS id, 1 + p.m % 50 AS chat_id,
               CONCAT(GROUP_CONCAT(v.w ORDER BY p.k SEPARATOR ' '),
                      -- a rare word, in 12 messages of different chats
                      IF(p.m % 16661 = 5, ' zebrafish', '')) AS content
        FROM picks p JOIN vocab v ON v.i = p.r GROUP BY p.m) t;
INSERT INTO message_search (message_id, search_text)
  SELECT id, CONCAT('c', chat_id, 'w', REPLACE(content, ' ', CONCAT(' c', chat_id, 'w')))
  FROM messages WHERE kind = 'text' AND encrypted = 0 AND content <> '';
-- the alternative: the same words as bare tokens ('wkan'), one posting list per word
-- for the whole server
SET SESSION innodb_ft_enable_stopword = OFF;
CREATE TABLE messages_words LIKE message_search;
ALTER TABLE messages_words DROP INDEX ft_message_search, ADD FULLTEXT INDEX ft_words (search_text);
INSERT INTO messages_words (message_id, search_text)
  SELECT id, CONCAT('w', REPLACE(content, ' ', ' w'))
  FROM messages WHERE kind = 'text' AND encrypted = 0 AND content <> '';
ANALYZE TABLE messages, message_search, messages_words, chat_members;
SQL
fi

# The median and the slowest of $RUNS runs of one statement, in ms, timed inside
# the server session (no connection set-up counted; rows are read by the client).
time_ms() {
  local q=$1 i
  for ((i = 0; i < RUNS; i++)); do
    printf 'SET @t0 = SYSDATE(6);\n%s;\nSELECT CONCAT("T ", TIMESTAMPDIFF(MICROSECOND, @t0, SYSDATE(6)) / 1000);\n' "$q"
  done | sql "$DB" | sed -n 's/^T //p' | sort -n | awk '{a[NR]=$1} END {printf "%.1f (max %.1f)", a[int((NR+1)/2)], a[NR]}'
}

COLS="m.id, m.chat_id, m.sender_id, m.client_id, m.kind, m.content, m.media_id, m.encrypted, m.e2ee, m.created_at, a.mime, a.bytes, a.duration_ms"
FILTER="s.message_id < 18446744073709551615 AND m.kind <> 'call' AND m.encrypted = 0 AND m.deleted_at IS NULL"
# The server's query (src/db/search.rs, without its SET STATEMENT time limit): $1 user,
# $2 AGAINST expression, $3 extra condition (the chat), $4 index table.
fts() {
  echo "SELECT $COLS FROM ${4:-message_search} s JOIN messages m ON m.id = s.message_id JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = $1 LEFT JOIN media_files a ON a.id = m.media_id WHERE MATCH(s.search_text) AGAINST('$2' IN BOOLEAN MODE) ${3:-} AND $FILTER ORDER BY s.message_id DESC LIMIT 21"
}
# The naive alternative: a substring of the content, message by message.
like() {
  echo "SELECT $COLS FROM messages m JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = $1 LEFT JOIN media_files a ON a.id = m.media_id WHERE m.content LIKE '%$2%' ${3:-} AND ${FILTER//s.message_id/m.id} ORDER BY m.id DESC LIMIT 21"
}
# The server's expression (QueryWords::against) for words $2 in chats $1: one group of
# required words per chat.
per_chat() {
  local chats=$1 w out="" group c
  for c in $chats; do
    group=""
    for w in $2; do group="$group +c${c}w$w*"; done
    out="$out (${group# })"
  done
  echo "${out# }"
}
# The same words grouped by word instead (any chat for each word).
per_word() {
  local chats=$1 w out="" group c
  for w in $2; do
    group=""
    for c in $chats; do group="$group c${c}w$w*"; done
    out="$out +(${group# })"
  done
  echo "${out# }"
}

echo "EXPLAIN of the server's query (user 2, all chats):" >&2
sql "$DB" -e "EXPLAIN $(fts 2 "$(per_chat '1 2 3' kan)")" >&2

ALL=$(seq -s ' ' 1 50)
echo
echo "| words | messages holding them (of 200,000) | searched | Parley: tokens per chat, ms | bare words, ms | LIKE '%word%', ms |"
echo "|---|---|---|---|---|---|"
for w in kan ka fene zebrafish "zebrafish kan"; do
  bare=""; for x in $w; do bare="$bare +w$x*"; done; bare=${bare# }
  n=$(sql "$DB" -e "SELECT COUNT(*) FROM messages_words s WHERE MATCH(s.search_text) AGAINST('$bare' IN BOOLEAN MODE)")
  for scope in "all chats of a user in 50" "all chats of a user in 3" "one chat"; do
    case $scope in
      "all chats of a user in 50") u=1; extra=""; chats=$ALL ;;
      "all chats of a user in 3") u=2; extra=""; chats="1 2 3" ;;
      "one chat") u=1; extra="AND m.chat_id = 7"; chats=7 ;;
    esac
    p=$(time_ms "$(fts $u "$(per_chat "$chats" "$w")")")
    f=$(time_ms "$(fts $u "$bare" "$extra" messages_words)")
    if [ "$w" = "zebrafish kan" ]; then l="—"; else l=$(time_ms "$(like $u "$w" "$extra")"); fi
    echo "| \`$w\` | $n | $scope | $p | $f | $l |"
  done
done
# The order of the words: InnoDB narrows term by term.
p=$(time_ms "$(fts 1 "$(per_chat "$ALL" 'kan zebrafish')")")
f=$(time_ms "$(fts 1 '+wkan* +wzebrafish*' '' messages_words)")
echo "| \`kan zebrafish\` (the common word first) | 4 | all chats of a user in 50 | $p | $f | |"
# Grouped by word rather than by chat.
p=$(time_ms "$(fts 1 "$(per_word "$ALL" 'zebrafish kan')")")
echo "| \`zebrafish kan\`, grouped by word: \`+(c1wzebrafish* c2wzebrafish* …) +(c1wkan* …)\` | 4 | all chats of a user in 50 | $p | | |"
