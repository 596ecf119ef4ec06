//! Hostile users: see mod.rs. Attacks on other people's accounts: spelling out an
//! email address through user search, slipping past the login throttle with other
//! spellings of a name, locking the owner out with wrong passwords, scraping search,
//! and bearer tokens written to access logs through the `/ws` URL.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::WsClient;
use crate::support::{ms, reliability, Parley, Redis, Secrets, TestDb, User};

/// Characters an address is spelled with, for the reconstruction attack.
const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789._-+";

/// The users `query` finds, as `attacker` (an error status finds nobody).
async fn search_ids(p: &Parley, attacker: &User, query: &str) -> (StatusCode, Vec<u64>) {
    let res = p
        .http
        .get(p.url("/api/users/search"))
        .query(&[("query", query)])
        .bearer_auth(&attacker.token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    if !status.is_success() {
        return (status, Vec::new());
    }
    let found: Vec<Value> = res.json().await.unwrap();
    for u in &found {
        assert!(u.get("email").is_none(), "another user's email shown: {u}");
    }
    (
        status,
        found.iter().filter_map(|u| u["id"].as_u64()).collect(),
    )
}

/// A login as if from `ip` (the binary trusts loopback's X-Forwarded-For, as behind
/// nginx). Returns the status.
async fn login_from(p: &Parley, ip: &str, login: &str, password: &str) -> StatusCode {
    parley_testkit::client::login_from(&p.http, &p.base(), ip, login, password)
        .await
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_address_cannot_be_spelled_out_through_search() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    // The search limit out of the way: this case is about what a search matches.
    let p = Parley::start(
        &db.url,
        &[("PARLEY__LIMITS__SEARCH_PER_MIN", "1000000".into())],
    )
    .await;
    let address = "victor.k42@mail.example.org";
    let victim = p.register_as("vic", address, &secrets).await;
    let attacker = p.register("mallory", &secrets).await;
    for n in ["ann", "bob", "cyd"] {
        p.register(n, &secrets).await;
    }
    let hit = |ids: &[u64]| ids.contains(&victim.id);

    // The attack: every address has an `@`; grow a fragment that still finds the
    // victim one character at a time, to the right, then to the left.
    let started = Instant::now();
    let mut queries = 0u32;
    let mut known: Option<String> = None;
    for c in ALPHABET.chars() {
        queries += 1;
        let q = format!("@{c}");
        if hit(&search_ids(&p, &attacker, &q).await.1) {
            known = Some(q);
            break;
        }
    }
    if let Some(mut k) = known.clone() {
        for right in [true, false] {
            'grow: loop {
                for c in ALPHABET.chars() {
                    let q = if right {
                        format!("{k}{c}")
                    } else {
                        format!("{c}{k}")
                    };
                    queries += 1;
                    if hit(&search_ids(&p, &attacker, &q).await.1) {
                        k = q;
                        continue 'grow;
                    }
                }
                break;
            }
        }
        known = Some(k);
    }
    let recovered = known.unwrap_or_default();
    // The exact address (in any case) still finds the person.
    let (_, exact) = search_ids(&p, &attacker, &address.to_uppercase()).await;
    // The domain alone, or the local part, find nobody either.
    let (_, domain) = search_ids(&p, &attacker, "mail.example.org").await;
    let (_, local) = search_ids(&p, &attacker, "victor.k42@").await;
    reliability(
        "search_email_reconstruction",
        &[
            ("queries", queries.to_string()),
            (
                "recovered_chars",
                format!("{}/{}", recovered.len(), address.len()),
            ),
            ("recovered", format!("{recovered:?}")),
            ("exact_address_finds_user", hit(&exact).to_string()),
            ("took", ms(started.elapsed())),
        ],
    );
    assert_eq!(
        recovered, "",
        "fragments of the address found the victim ({queries} queries)"
    );
    assert!(hit(&exact), "the whole address must still find the user");
    assert!(
        !hit(&domain) && !hit(&local),
        "a part of the address matched"
    );
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_search_is_rate_limited_per_user() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    // The shipped default (30 a minute).
    let p = Parley::start(&db.url, &[]).await;
    let scraper = p.register("scraper", &secrets).await;
    let other = p.register("other", &secrets).await;
    for i in 0..5 {
        p.register(&format!("member{i}"), &secrets).await;
    }
    let started = Instant::now();
    let (mut ok, mut limited, mut retry_after) = (0u32, 0u32, None);
    for i in 0..100 {
        let res = p
            .http
            .get(p.url("/api/users/search"))
            .query(&[("query", format!("me{}", i % 10))])
            .bearer_auth(&scraper.token)
            .send()
            .await
            .unwrap();
        match res.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited");
                limited += 1;
            }
            s => panic!("search answered {s}"),
        }
    }
    let elapsed = started.elapsed();
    // Someone else searches undisturbed meanwhile.
    let (other_status, _) = search_ids(&p, &other, "member").await;
    reliability(
        "search_rate_limit",
        &[
            ("searches", "100".into()),
            ("answered", ok.to_string()),
            ("rate_limited", limited.to_string()),
            ("retry_after_s", format!("{retry_after:?}")),
            ("other_user", other_status.as_u16().to_string()),
            ("took", ms(elapsed)),
        ],
    );
    // 30 a minute: the burst, plus what refills while the loop runs.
    let refill = (elapsed.as_secs_f64() / 2.0).ceil() as u32;
    assert!(ok <= 30 + refill, "{ok} searches answered");
    assert!(limited >= 100 - 30 - refill, "{limited} refused");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
    assert_eq!(other_status, StatusCode::OK);
}

/// Most verified attempts a schedule of `free` immediate ones, then 1 s, 2 s, 4 s …
/// apart, allows within `elapsed` (plus one for scheduling slack).
fn most_attempts(free: u32, elapsed: Duration) -> u32 {
    free + (elapsed.as_secs_f64() + 1.0).log2().floor() as u32 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_a_name_share_its_login_limit() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    // The shipped per-account settings (the suite's base lifts the old bucket).
    let p = Parley::start(
        &db.url,
        &[("PARLEY__LIMITS__LOGIN_PER_ACCOUNT_PER_MIN", "10".into())],
    )
    .await;
    let victim = p
        .register_as("victor", "victor@example.com", &secrets)
        .await;
    // Each of these reached victor's row under MySQL's utf8mb4_unicode_ci, and each
    // had a throttle bucket of its own.
    let variants = [
        "victor",
        "VICTOR",
        "Victor",
        "\u{ff56}\u{ff49}\u{ff43}\u{ff54}\u{ff4f}\u{ff52}",
        "victor@example.com",
        "VICTOR@EXAMPLE.COM",
        "v\u{ee}ctor@example.com",
        "vi\u{200b}ctor",
        "v\u{1}ictor",
        "victo\u{200d}r",
        "v\u{ee}ctor",
        "\u{feff}victor",
    ];
    let started = Instant::now();
    let (mut verified, mut limited, mut refused) = (0u32, 0u32, 0u32);
    for round in 0..5 {
        for v in variants {
            let ip = format!("198.51.100.{}", 1 + round);
            match login_from(&p, &ip, v, "wrong-password").await {
                StatusCode::UNAUTHORIZED => verified += 1,
                StatusCode::TOO_MANY_REQUESTS => limited += 1,
                StatusCode::BAD_REQUEST => refused += 1,
                s => panic!("{v:?} answered {s}"),
            }
        }
    }
    let elapsed = started.elapsed();
    let bound = most_attempts(5, elapsed);
    // The owner, whose account this all was, still signs in from home.
    let owner = login_from(&p, "192.0.2.10", "victor", &victim.password).await;
    reliability(
        "login_spelling_bypass",
        &[
            ("spellings", variants.len().to_string()),
            ("attempts", (variants.len() * 5).to_string()),
            ("password_checked", verified.to_string()),
            ("rate_limited", limited.to_string()),
            ("refused_invalid_login", refused.to_string()),
            ("bound", bound.to_string()),
            ("owner_from_new_network", owner.as_u16().to_string()),
            ("took", ms(elapsed)),
        ],
    );
    assert!(
        verified <= bound,
        "{verified} wrong passwords checked against one account in {elapsed:?}"
    );
    assert_eq!(
        refused,
        5 * 5,
        "invisible, control and accented names are refused"
    );
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_many_networks_do_not_lock_out_the_owner() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(
        &db.url,
        &[("PARLEY__LIMITS__LOGIN_PER_ACCOUNT_PER_MIN", "10".into())],
    )
    .await;
    let owner = p.register_as("olga", "olga@example.com", &secrets).await;
    // Olga signed in from home before: that network is known.
    assert_eq!(
        login_from(&p, "192.0.2.10", "olga", &owner.password).await,
        StatusCode::OK
    );
    // An attacker with 200 networks, one wrong password from each.
    let started = Instant::now();
    let (mut verified, mut limited) = (0u32, 0u32);
    for i in 0..200u32 {
        let ip = format!("10.{}.{}.9", i / 250, i % 250);
        match login_from(&p, &ip, "olga", "guess-password").await {
            StatusCode::UNAUTHORIZED => verified += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            s => panic!("attempt {i} answered {s}"),
        }
    }
    let elapsed = started.elapsed();
    let bound = most_attempts(5, elapsed);
    // The owner, at home, at once, with and without a typo first.
    let t = Instant::now();
    let typo = login_from(&p, "192.0.2.10", "olga", "olga-typo-password").await;
    let home = login_from(&p, "192.0.2.77", "olga", &owner.password).await;
    let owner_took = t.elapsed();
    reliability(
        "login_lockout",
        &[
            ("attacker_networks", "200".into()),
            ("password_checked", verified.to_string()),
            ("rate_limited", limited.to_string()),
            ("bound", bound.to_string()),
            ("owner_typo", typo.as_u16().to_string()),
            ("owner_login", home.as_u16().to_string()),
            ("owner_took", ms(owner_took)),
            ("took", ms(elapsed)),
        ],
    );
    assert!(
        verified <= bound,
        "{verified} guesses checked in {elapsed:?}"
    );
    assert_eq!(typo, StatusCode::UNAUTHORIZED);
    assert_eq!(home, StatusCode::OK, "the owner was locked out");
    p.assert_logs_clean(&secrets);
}

/// A ticket for `user`, as the web client gets one.
async fn ticket(p: &Parley, user: &User) -> String {
    let res = p
        .http
        .post(p.url("/api/auth/ws-ticket"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "ws-ticket");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ttlSeconds"], 30);
    body["ticket"].as_str().unwrap().to_string()
}

/// The status `/ws?ticket=` is refused with (a real upgrade request), and its code.
async fn refused_upgrade(base: &str, ticket: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!("{base}/ws?ticket={ticket}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or_default();
    (status, body["error"]["code"].as_str().unwrap_or("").into())
}

async fn ready_user(ws_url: &str) -> u64 {
    let mut ws = WsClient::connect(ws_url).await;
    let id = ws.wait_for("ready").await["data"]["userId"]
        .as_u64()
        .unwrap();
    ws.close();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_client_connects_with_one_use_tickets_not_tokens_in_urls() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let ann = p.register("ann", &secrets).await;
    let bob = p.register("bob", &secrets).await;

    // The client side: the shipped SPA asks for a ticket and never puts the token
    // in the URL.
    let socket_js = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/js/socket.js"),
    )
    .unwrap();
    assert!(socket_js.contains("/ws?ticket=") && !socket_js.contains("?token="));

    // A ticket opens a session for the user it was issued to, once.
    let t = ticket(&p, &ann).await;
    secrets.add(t.clone());
    assert_eq!(
        ready_user(&format!("{}/ws?ticket={t}", p.ws_base())).await,
        ann.id
    );
    let reuse = refused_upgrade(&p.base(), &t).await;
    // Bob's ticket is bob's: there is no way to name another user with one.
    let tb = ticket(&p, &bob).await;
    secrets.add(tb.clone());
    assert_eq!(
        ready_user(&format!("{}/ws?ticket={tb}", p.ws_base())).await,
        bob.id
    );
    // A token is not a ticket.
    let token_as_ticket = refused_upgrade(&p.base(), &ann.token).await;

    // 30 s later an unused ticket is worthless.
    let stale = ticket(&p, &ann).await;
    secrets.add(stale.clone());
    tokio::time::sleep(Duration::from_secs(31)).await;
    let expired = refused_upgrade(&p.base(), &stale).await;

    // Scripts may still send the token (documented risk).
    assert_eq!(
        ready_user(&format!("{}/ws?token={}", p.ws_base(), ann.token)).await,
        ann.id
    );
    reliability(
        "ws_ticket",
        &[
            ("ticket_bits", (t.len() * 4).to_string()),
            ("reuse", format!("{}:{}", reuse.0, reuse.1)),
            ("after_31s", format!("{}:{}", expired.0, expired.1)),
            (
                "token_as_ticket",
                format!("{}:{}", token_as_ticket.0, token_as_ticket.1),
            ),
            ("spa_url_has_token", "false".into()),
        ],
    );
    assert!(t.len() * 4 >= 128);
    assert_eq!(reuse, (401, "invalid_ticket".to_string()));
    assert_eq!(expired, (401, "invalid_ticket".to_string()));
    assert_eq!(token_as_ticket, (401, "invalid_ticket".to_string()));
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_issued_by_one_node_works_once_on_any_node() {
    let db = TestDb::fresh();
    let redis = Redis::start();
    let secrets = Secrets::default();
    let cluster = [
        ("PARLEY__REDIS__URL", redis.url()),
        ("PARLEY__PRESENCE__NODE_TTL_SECS", "3".to_string()),
    ];
    let a = Parley::start(&db.url, &cluster).await;
    let b = Parley::start(&db.url, &cluster).await;
    let ann = a.register("ann", &secrets).await;
    let t = ticket(&a, &ann).await;
    secrets.add(t.clone());
    // Issued on A, redeemed on B (nginx may pick either) …
    assert_eq!(
        ready_user(&format!("{}/ws?ticket={t}", b.ws_base())).await,
        ann.id
    );
    // … and then it is gone on both.
    let again_a = refused_upgrade(&a.base(), &t).await;
    let again_b = refused_upgrade(&b.base(), &t).await;
    // Two nodes racing for one ticket: exactly one wins.
    let t2 = ticket(&b, &ann).await;
    secrets.add(t2.clone());
    let (ra, rb) = tokio::join!(
        tokio_tungstenite::connect_async(format!("{}/ws?ticket={t2}", a.ws_base())),
        tokio_tungstenite::connect_async(format!("{}/ws?ticket={t2}", b.ws_base())),
    );
    let winners = usize::from(ra.is_ok()) + usize::from(rb.is_ok());
    reliability(
        "ws_ticket_two_nodes",
        &[
            ("cross_node_redeem", "ok".into()),
            ("reuse_on_a", format!("{}:{}", again_a.0, again_a.1)),
            ("reuse_on_b", format!("{}:{}", again_b.0, again_b.1)),
            ("race_winners", winners.to_string()),
        ],
    );
    assert_eq!(again_a, (401, "invalid_ticket".to_string()));
    assert_eq!(again_b, (401, "invalid_ticket".to_string()));
    assert_eq!(winners, 1, "a ticket opened {winners} sessions");
    a.assert_logs_clean(&secrets);
    b.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_known_on_every_node_while_an_attacker_is_slowed_on_each() {
    let db = TestDb::fresh();
    let redis = Redis::start();
    let secrets = Secrets::default();
    let cluster = [
        ("PARLEY__REDIS__URL", redis.url()),
        ("PARLEY__PRESENCE__NODE_TTL_SECS", "3".to_string()),
    ];
    let a = Parley::start(&db.url, &cluster).await;
    let b = Parley::start(&db.url, &cluster).await;
    let owner = a.register_as("olga", "olga@example.com", &secrets).await;
    // Olga signs in at home through node A.
    assert_eq!(
        login_from(&a, "192.0.2.10", "olga", &owner.password).await,
        StatusCode::OK
    );
    // An attacker with many networks, through node B.
    let started = Instant::now();
    let (mut verified, mut limited) = (0u32, 0u32);
    for i in 0..50u32 {
        match login_from(&b, &format!("10.9.{i}.1"), "olga", "guess-password").await {
            StatusCode::UNAUTHORIZED => verified += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            s => panic!("attempt {i} answered {s}"),
        }
    }
    let elapsed = started.elapsed();
    // Her next login lands on node B, which never saw her: it knows her home all the same.
    let on_b = login_from(&b, "192.0.2.10", "olga", &owner.password).await;
    reliability(
        "login_lockout_two_nodes",
        &[
            ("attacker_networks", "50".into()),
            ("password_checked_on_b", verified.to_string()),
            ("rate_limited_on_b", limited.to_string()),
            ("owner_login_on_b", on_b.as_u16().to_string()),
            ("took", ms(elapsed)),
        ],
    );
    assert!(verified <= most_attempts(5, elapsed));
    assert_eq!(
        on_b,
        StatusCode::OK,
        "the owner was slowed on the other node"
    );
    a.assert_logs_clean(&secrets);
    b.assert_logs_clean(&secrets);
}
