//! `parley [--config F] admin …`: users, invites and numbers, against the database
//! `serve` uses (same `Settings`; no JWT secret needed, like `migrate`). Output is
//! for people, or one JSON document with `--json`. A refusal (no such user, bad
//! input) is `AdminError`: printed on stderr by `main`, exit status 1.

use clap::{Args, Subcommand};
use parley_actors::UserId;
use serde_json::{json, Value};

use super::{delete_account, RESET_VALID_SECS};
use crate::config::Settings;
use crate::db::accounts::{AccountKey, AccountRow};
use crate::db::invites::InviteId;
use crate::db::users::{Identity, InsertOutcome, TakenField};
use crate::db::{Db, DbError};
use crate::domain::token::SecretToken;
use crate::domain::{Email, Username};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Accounts: list, show, create, disable, enable, delete, reset-password.
    #[command(subcommand)]
    User(UserCommand),
    /// Invites for `auth.registration = "invite"`: create, list, revoke.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Counts of users, chats, messages, uploads, sessions and invites.
    Stats,
    /// Web Push: generate-keys.
    #[command(subcommand)]
    Push(PushCommand),
}

#[derive(Subcommand, Debug)]
pub enum PushCommand {
    /// Prints a new VAPID key pair: the private key for the secrets file
    /// (`PARLEY__PUSH__VAPID_PRIVATE_KEY`), the public key for information. Needs no
    /// database. Changing the key invalidates every browser's subscription.
    GenerateKeys,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Every account, in id order.
    List,
    /// One account (by id, email or username).
    Show { user: String },
    /// A new account without a password: prints a link (valid 24 h) where its
    /// owner sets one.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
    },
    /// The account can no longer sign in, and every session of it is closed.
    Disable { user: String },
    /// Undoes `disable`.
    Enable { user: String },
    /// Deletes the account as its owner would (README, "Operating a community").
    Delete {
        user: String,
        /// Confirms: deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Prints a one-time link (valid 24 h) to set a new password.
    ResetPassword { user: String },
}

#[derive(Subcommand, Debug)]
pub enum InviteCommand {
    /// A new invite: prints its token and the registration link.
    Create {
        /// Registrations it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime: `30m`, `12h`, `7d` … or `never`.
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// Every invite, newest first (tokens are not stored, so not shown).
    List,
    /// The invite can no longer be used.
    Revoke { id: u64 },
}

/// Why an admin command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Most uses one invite may have.
const MAX_INVITE_USES: u32 = 100_000;

/// Runs one admin command; what it prints goes to stdout.
pub async fn run(settings: &Settings, db: &Db, args: AdminArgs) -> Result<(), AdminError> {
    let out = Output { json: args.json };
    match args.command {
        AdminCommand::User(cmd) => user(settings, db, out, cmd).await,
        AdminCommand::Invite(cmd) => invite(settings, db, out, cmd).await,
        AdminCommand::Stats => stats(db, out).await,
        AdminCommand::Push(PushCommand::GenerateKeys) => {
            generate_push_keys(out);
            Ok(())
        }
    }
}

/// Runs a command that needs no database; false when `args` is not one.
pub fn run_offline(args: &AdminArgs) -> bool {
    match args.command {
        AdminCommand::Push(PushCommand::GenerateKeys) => {
            generate_push_keys(Output { json: args.json });
            true
        }
        _ => false,
    }
}

fn generate_push_keys(out: Output) {
    let (private, public) = crate::push::vapid::generate();
    out.print(
        || {
            format!(
                "# Web Push (VAPID) key pair. The private key goes into the secrets file\n\
                 # (/etc/parley/parley.env); keep it secret and keep it: a new one ends\n\
                 # every browser's subscription.\n\
                 PARLEY__PUSH__VAPID_PRIVATE_KEY={private}\n\
                 # Public key (served by GET /api/push/vapid-public-key): {public}"
            )
        },
        || json!({"privateKey": private, "publicKey": public}),
    );
}

#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    /// Prints `text` for people, or `value` with `--json`.
    fn print(self, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", value());
        } else {
            println!("{}", text());
        }
    }
}

/// `12`, `ann`, `ann@example.org`: an id when it is all digits.
fn key_of(raw: &str) -> AccountKey {
    match raw.parse::<u64>() {
        Ok(id) => AccountKey::Id(UserId(id)),
        Err(_) => AccountKey::Name(raw.trim().to_owned()),
    }
}

async fn find(db: &Db, raw: &str) -> Result<AccountRow, AdminError> {
    db.account(&key_of(raw))
        .await?
        .ok_or_else(|| AdminError::Refused(format!("no account {raw:?}")))
}

fn state(a: &AccountRow) -> &'static str {
    if a.deleted_at.is_some() {
        "deleted"
    } else if a.disabled_at.is_some() {
        "disabled"
    } else if !a.has_password {
        "no password yet"
    } else {
        "active"
    }
}

fn account_json(a: &AccountRow) -> Value {
    let (email, username) = match &a.identity {
        Identity::Active { email, username } => (Some(email.as_str()), Some(username.as_str())),
        Identity::Deleted => (None, None),
    };
    json!({
        "id": a.id,
        "email": email,
        "username": username,
        "state": state(a),
        "createdAt": a.created_at,
        "lastSeenAt": a.last_seen_at,
        "disabledAt": a.disabled_at,
        "deletedAt": a.deleted_at,
    })
}

fn account_line(a: &AccountRow) -> String {
    let (email, username) = match &a.identity {
        Identity::Active { email, username } => (email.as_str(), username.as_str()),
        Identity::Deleted => ("-", "(deleted account)"),
    };
    let seen = a
        .last_seen_at
        .map(|t| t.to_string())
        .unwrap_or_else(|| "never".into());
    format!(
        "{:>8}  {:<24} {:<32} {:<16} created {}  last seen {}",
        a.id,
        username,
        email,
        state(a),
        a.created_at,
        seen
    )
}

fn reset_link(settings: &Settings, token: &SecretToken) -> String {
    format!(
        "{}/reset?token={}",
        settings.server.public_url,
        token.as_str()
    )
}

async fn issue_reset(db: &Db, settings: &Settings, user: UserId) -> Result<String, AdminError> {
    let token = SecretToken::generate();
    db.create_password_reset(user, &token.hash(), RESET_VALID_SECS)
        .await?;
    Ok(reset_link(settings, &token))
}

async fn user(
    settings: &Settings,
    db: &Db,
    out: Output,
    cmd: UserCommand,
) -> Result<(), AdminError> {
    match cmd {
        UserCommand::List => {
            // Paged, so a large community is printed as it is read.
            let mut after = UserId(0);
            let mut all = Vec::new();
            loop {
                let page = db.accounts_after(after, 500).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for a in &page {
                    if out.json {
                        all.push(account_json(a));
                    } else {
                        println!("{}", account_line(a));
                    }
                }
            }
            if out.json {
                println!("{}", Value::Array(all));
            }
        }
        UserCommand::Show { user } => {
            let a = find(db, &user).await?;
            out.print(|| account_line(&a), || account_json(&a));
        }
        UserCommand::Create { email, username } => {
            let email = Email::parse(&email).map_err(|e| AdminError::Refused(e.message))?;
            let username =
                Username::parse(&username).map_err(|e| AdminError::Refused(e.message))?;
            let id = match db.insert_user(&email, &username, None).await? {
                InsertOutcome::Created(id) => id,
                InsertOutcome::Taken(TakenField::Email) => {
                    return Err(AdminError::Refused("email is already registered".into()))
                }
                InsertOutcome::Taken(TakenField::Username) => {
                    return Err(AdminError::Refused("username is already taken".into()))
                }
            };
            let link = issue_reset(db, settings, id).await?;
            out.print(
                || {
                    format!(
                        "created account {id} ({}); it has no password yet.\n\
                         Send its owner this link to set one (valid 24 h, once):\n{link}",
                        username.as_str()
                    )
                },
                || json!({"id": id, "username": username.as_str(), "link": link}),
            );
        }
        UserCommand::Disable { user } => {
            let a = find(db, &user).await?;
            if !db.set_disabled(a.id, true).await? {
                return Err(AdminError::Refused(format!("account {} is deleted", a.id)));
            }
            // Every node reads the revocation log and closes the sockets (4001).
            let revoked = db.revoke_auth_sessions(a.id, None).await?;
            out.print(
                || {
                    format!(
                        "disabled account {}; {} session(s) signed out",
                        a.id,
                        revoked.len()
                    )
                },
                || json!({"id": a.id, "disabled": true, "revoked": revoked.len()}),
            );
        }
        UserCommand::Enable { user } => {
            let a = find(db, &user).await?;
            if !db.set_disabled(a.id, false).await? {
                return Err(AdminError::Refused(format!("account {} is deleted", a.id)));
            }
            out.print(
                || format!("enabled account {}", a.id),
                || json!({"id": a.id, "disabled": false}),
            );
        }
        UserCommand::Delete { user, yes } => {
            if !yes {
                return Err(AdminError::Refused(
                    "deleting an account cannot be undone: add --yes".into(),
                ));
            }
            let a = find(db, &user).await?;
            let Some(departure) = delete_account(db, &settings.storage.uploads_dir, a.id).await?
            else {
                return Err(AdminError::Refused(format!(
                    "account {} is deleted already",
                    a.id
                )));
            };
            out.print(
                || {
                    format!(
                        "deleted account {}; it left {} group(s)",
                        a.id,
                        departure.groups_left.len()
                    )
                },
                || json!({"id": a.id, "deleted": true, "groupsLeft": departure.groups_left.len()}),
            );
        }
        UserCommand::ResetPassword { user } => {
            let a = find(db, &user).await?;
            if a.deleted_at.is_some() {
                return Err(AdminError::Refused(format!("account {} is deleted", a.id)));
            }
            let link = issue_reset(db, settings, a.id).await?;
            out.print(
                || format!("one-time link for account {} (valid 24 h):\n{link}", a.id),
                || json!({"id": a.id, "link": link}),
            );
        }
    }
    Ok(())
}

/// `30m`, `12h`, `7d`, `90s` → seconds; `never` → None.
pub fn parse_lifetime(raw: &str) -> Result<Option<u64>, AdminError> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let bad = || {
        AdminError::Refused(format!(
            "--expires {raw:?}: write a number and a unit (s, m, h, d), e.g. 7d, or never"
        ))
    };
    let unit = raw.chars().last().ok_or_else(bad)?;
    let n: u64 = raw[..raw.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86400),
        _ => None,
    }
    .ok_or_else(bad)?;
    // Ten years is "never" in all but name; more would overflow DATETIME.
    if secs == 0 || secs > 10 * 365 * 86400 {
        return Err(bad());
    }
    Ok(Some(secs))
}

async fn invite(
    settings: &Settings,
    db: &Db,
    out: Output,
    cmd: InviteCommand,
) -> Result<(), AdminError> {
    match cmd {
        InviteCommand::Create { uses, expires } => {
            if !(1..=MAX_INVITE_USES).contains(&uses) {
                return Err(AdminError::Refused(format!(
                    "--uses must be 1 to {MAX_INVITE_USES}"
                )));
            }
            let lifetime = parse_lifetime(&expires)?;
            let token = SecretToken::generate();
            let id = db.create_invite(&token.hash(), uses, lifetime).await?;
            let link = format!(
                "{}/register?invite={}",
                settings.server.public_url,
                token.as_str()
            );
            let mode = settings.auth.registration.as_str();
            out.print(
                || {
                    let mut s = format!(
                        "invite {id}: {uses} use(s), expires {}\ntoken: {}\nlink:  {link}",
                        if lifetime.is_some() { expires.as_str() } else { "never" },
                        token.as_str()
                    );
                    if mode != "invite" {
                        s.push_str(&format!(
                            "\nnote: auth.registration is \"{mode}\"; invites are only asked for in \"invite\" mode"
                        ));
                    }
                    s
                },
                || {
                    json!({"id": id.0, "token": token.as_str(), "link": link, "uses": uses,
                           "expiresInSecs": lifetime})
                },
            );
        }
        InviteCommand::List => {
            let rows = db.invites().await?;
            out.print(
                || {
                    if rows.is_empty() {
                        return "no invites".into();
                    }
                    rows.iter()
                        .map(|i| {
                            let state = if i.revoked_at.is_some() {
                                "revoked"
                            } else if i.usable {
                                "usable"
                            } else if i.uses >= i.max_uses {
                                "used up"
                            } else {
                                "expired"
                            };
                            let expires = i
                                .expires_at
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "never".into());
                            format!(
                                "{:>6}  {:<8} used {}/{}  expires {}  created {}",
                                i.id, state, i.uses, i.max_uses, expires, i.created_at
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
                || {
                    Value::Array(
                        rows.iter()
                            .map(|i| {
                                json!({"id": i.id.0, "uses": i.uses, "maxUses": i.max_uses,
                                       "expiresAt": i.expires_at, "revokedAt": i.revoked_at,
                                       "createdAt": i.created_at, "usable": i.usable})
                            })
                            .collect(),
                    )
                },
            );
        }
        InviteCommand::Revoke { id } => {
            if !db.revoke_invite(InviteId(id)).await? {
                return Err(AdminError::Refused(format!(
                    "no invite {id}, or it is revoked already"
                )));
            }
            out.print(
                || format!("revoked invite {id}"),
                || json!({"id": id, "revoked": true}),
            );
        }
    }
    Ok(())
}

async fn stats(db: &Db, out: Output) -> Result<(), AdminError> {
    let s = db.stats().await?;
    out.print(
        || {
            format!(
                "users:          {} ({} disabled, {} deleted; {} seen in the last day)\n\
                 chats:          {} direct, {} groups\n\
                 messages:       {}\n\
                 uploads:        {} ({} bytes)\n\
                 live sessions:  {}\n\
                 usable invites: {}",
                s.users,
                s.disabled,
                s.deleted,
                s.seen_last_day,
                s.direct_chats,
                s.groups,
                s.messages,
                s.uploads,
                s.upload_bytes,
                s.live_sessions,
                s.usable_invites
            )
        },
        || {
            json!({"users": s.users, "disabled": s.disabled, "deleted": s.deleted,
                   "seenLastDay": s.seen_last_day, "directChats": s.direct_chats,
                   "groups": s.groups, "messages": s.messages, "uploads": s.uploads,
                   "uploadBytes": s.upload_bytes, "liveSessions": s.live_sessions,
                   "usableInvites": s.usable_invites})
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;

    #[test]
    fn lifetimes_have_a_unit_and_a_bound() {
        assert_eq!(parse_lifetime("7d").unwrap(), Some(7 * 86400));
        assert_eq!(parse_lifetime("12h").unwrap(), Some(12 * 3600));
        assert_eq!(parse_lifetime("30m").unwrap(), Some(1800));
        assert_eq!(parse_lifetime("90s").unwrap(), Some(90));
        assert_eq!(parse_lifetime("never").unwrap(), None);
        for bad in [
            "",
            "7",
            "d",
            "0d",
            "-1d",
            "7w",
            "99999999999d",
            "1.5h",
            "7dd",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
