//! Real processes for the fault tests, from the test kit (testkit/): the `parley`
//! binary (started, SIGKILLed, SIGTERMed and started again on the same port), a
//! private `redis-server`, a private MariaDB, plus what every test needs around them
//! (users, tokens, MySQL rows, log checks, /proc and /metrics samples, the
//! `RELIABILITY:` lines, the one-case-at-a-time lock).

pub use parley_testkit::binary::{assert_lines_clean, bin, exclusive, Parley, Secrets, SuiteLock};
pub use parley_testkit::client::{
    alg_none_token, register, sign_token, unix_now, TestUser, TestUser as User,
};
pub use parley_testkit::db::{
    chat_members, count, drop_database_blocking, message_rows, mysql, Mariadb, Redis, Row, TestDb,
};
pub use parley_testkit::fixture::AnnBob;
pub use parley_testkit::util::{
    is_root, ms, percentile, proc_rss_kib, reliability, signal, wait_until, TempDir,
};
