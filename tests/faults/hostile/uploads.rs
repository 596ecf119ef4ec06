//! Hostile users: see mod.rs. Disk exhaustion through voice-message uploads (issue 15,
//! item 7): a burst of uploads is cut by the per-user rate and storage quota,
//! concurrent uploads cannot overshoot the quota, and uploads stop at the uploads
//! file system's free-space floor — while streaming too. A refused or abandoned
//! upload leaves no file, no row and no reservation; other users go on uploading.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use parley_testkit::media::{audio_form, files_in, upload_audio, webm, SmallDisk};

use crate::support::{
    count, exclusive, ms, percentile, reliability, Parley, Secrets, TestDb, User,
};

const MIB: usize = 1024 * 1024;

/// One upload as the SPA makes it (multipart with a Content-Length): status, body,
/// Retry-After, and how long the answer took.
async fn upload(p: &Parley, user: &User, chat: u64, len: usize) -> (u16, Value, String, Duration) {
    let form = audio_form(chat, webm(len), "note.webm");
    let t = Instant::now();
    let res = upload_audio(
        &p.http,
        &p.url("/api/messages/upload-audio"),
        &user.token,
        form,
    )
    .await;
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, retry, t.elapsed())
}

/// The multipart body of an upload of `len` bytes, split around the file's bytes so
/// a test can send the head, part of the file, and the rest when it likes.
fn multipart_parts(chat: u64, len: usize) -> (String, Vec<u8>, Vec<u8>, Vec<u8>) {
    let boundary = "HostileUploadBoundary".to_string();
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chatId\"\r\n\r\n{chat}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.webm\"\r\nContent-Type: audio/webm\r\n\r\n"
    )
    .into_bytes();
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (boundary, head, webm(len), tail)
}

/// An upload whose body the test feeds chunk by chunk (with its Content-Length, as
/// a browser sends it): the sender, and the request in flight.
struct SlowUpload {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    rest: Vec<Bytes>,
    request: tokio::task::JoinHandle<Result<(u16, Value), String>>,
}

impl SlowUpload {
    async fn start(p: &Parley, user: &User, chat: u64, len: usize, first: usize) -> SlowUpload {
        let (boundary, head, file, tail) = multipart_parts(chat, len);
        let total = head.len() + file.len() + tail.len();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            );
        let req = p
            .http
            .post(p.url("/api/messages/upload-audio"))
            .bearer_auth(&user.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("content-length", total.to_string())
            .body(reqwest::Body::wrap_stream(stream));
        let request = tokio::spawn(async move {
            match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    Ok((status, res.json().await.unwrap_or(Value::Null)))
                }
                Err(e) => Err(e.to_string()),
            }
        });
        let mut chunks: Vec<Bytes> = vec![Bytes::from(head)];
        chunks.extend(file.chunks(64 * 1024).map(Bytes::copy_from_slice));
        chunks.push(Bytes::from(tail));
        let mut sent = 0;
        let mut rest = chunks.into_iter();
        for c in rest.by_ref() {
            sent += c.len();
            tx.send(Ok(c)).await.unwrap();
            if sent >= first {
                break;
            }
        }
        SlowUpload {
            tx,
            rest: rest.collect(),
            request,
        }
    }

    async fn finish(self) -> Result<(u16, Value), String> {
        for c in self.rest {
            if self.tx.send(Ok(c)).await.is_err() {
                break;
            }
        }
        drop(self.tx);
        self.request.await.unwrap()
    }

    /// The client goes away mid-upload.
    fn abort(self) {
        self.request.abort();
    }
}

async fn usage(p: &Parley, user: &User) -> Value {
    p.http
        .get(p.url("/api/media/usage"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_uploads_is_cut_by_the_rate_and_the_quota() {
    let _one_at_a_time = exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    // A quota of 5 MiB (+ room for the multipart framing of each reservation) and the
    // default rate of 10 a minute; no free-space floor in the way (tested below).
    let quota = 5 * MIB as u64 + 64 * 1024;
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__LIMITS__USER_STORAGE_BYTES", quota.to_string()),
            ("PARLEY__LIMITS__UPLOADS_PER_MIN", "10".into()),
            ("PARLEY__STORAGE__MIN_FREE_BYTES", "0".into()),
        ],
    )
    .await;
    let big = p.register("hoarder", &secrets).await;
    let fast = p.register("spammer", &secrets).await;
    let other = p.register("bystander", &secrets).await;
    let chat_big = p.direct_chat(&big, &other).await;
    let chat_fast = p.direct_chat(&fast, &other).await;
    let audio = p.uploads.join("audio");

    // The attack of the issue: 30 × 1 MiB at once. The quota cuts it.
    let t = Instant::now();
    let results =
        futures_util::future::join_all((0..30).map(|_| upload(&p, &big, chat_big, MIB))).await;
    let burst = t.elapsed();
    let accepted_big = results.iter().filter(|r| r.0 == 201).count();
    let over_quota: Vec<Duration> = results
        .iter()
        .filter(|r| r.0 == 413 && code(&r.1) == "quota_exceeded")
        .map(|r| r.3)
        .collect();
    let stored_big: u64 = results
        .iter()
        .filter(|r| r.0 == 201)
        .map(|r| r.1["bytes"].as_u64().unwrap())
        .sum();
    let quota_message = results
        .iter()
        .find(|r| r.0 == 413)
        .map(|r| r.1["error"]["message"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();

    // Small files, as fast as possible: the rate cuts it.
    let t = Instant::now();
    let mut fast_results = Vec::new();
    for _ in 0..30 {
        fast_results.push(upload(&p, &fast, chat_fast, 20 * 1024).await);
    }
    let fast_burst = t.elapsed();
    let accepted_fast = fast_results.iter().filter(|r| r.0 == 201).count();
    let limited: Vec<&(u16, Value, String, Duration)> = fast_results
        .iter()
        .filter(|r| r.0 == 429 && code(&r.1) == "rate_limited")
        .collect();
    let limited_times: Vec<Duration> = limited.iter().map(|r| r.3).collect();

    // Someone else is not affected.
    let (other_status, other_body, _, _) = upload(&p, &other, chat_big, 100 * 1024).await;

    let files = files_in(&audio);
    let rows = count(&db.url, "SELECT COUNT(*) FROM media_files").await;
    let reservations = count(&db.url, "SELECT COUNT(*) FROM upload_reservations").await;
    let usage_big = usage(&p, &big).await;

    reliability(
        "hostile-upload-burst",
        &[
            ("burst", "30x1MiB concurrent".into()),
            ("quota_bytes", quota.to_string()),
            ("accepted", format!("{accepted_big}/30")),
            ("stored_bytes", stored_big.to_string()),
            ("refused_413", over_quota.len().to_string()),
            ("refusal_p50", ms(percentile(&over_quota, 50.0))),
            ("refusal_max", ms(percentile(&over_quota, 100.0))),
            ("burst_total", ms(burst)),
            ("small_burst", "30x20KiB sequential".into()),
            ("small_accepted", format!("{accepted_fast}/30")),
            ("refused_429", limited.len().to_string()),
            ("refusal_429_p50", ms(percentile(&limited_times, 50.0))),
            (
                "retry_after_s",
                limited.first().map(|r| r.2.clone()).unwrap_or_default(),
            ),
            ("small_burst_total", ms(fast_burst)),
            ("bystander_upload", other_status.to_string()),
            ("files", files.len().to_string()),
            ("rows", rows.to_string()),
            ("reservations_left", reservations.to_string()),
        ],
    );

    // The quota: five 1 MiB files fit, never a sixth, whatever the concurrency.
    assert_eq!(accepted_big, 5, "{results:?}");
    assert!(stored_big <= quota);
    assert_eq!(over_quota.len(), 25, "{results:?}");
    assert!(
        quota_message.contains(&quota.to_string()),
        "the message says what is allowed: {quota_message}"
    );
    assert_eq!(usage_big["storageUsedBytes"].as_u64(), Some(stored_big));
    assert_eq!(usage_big["storageQuotaBytes"].as_u64(), Some(quota));
    // The rate: ten a minute, the rest 429 with a Retry-After of about 6 s.
    assert_eq!(accepted_fast, 10, "{fast_results:?}");
    assert_eq!(limited.len(), 20, "{fast_results:?}");
    for r in &limited {
        let secs: u64 = r.2.parse().unwrap_or(0);
        assert!((1..=6).contains(&secs), "Retry-After {:?}", r.2);
    }
    // Waiting Retry-After is enough (it is rounded up, not down).
    let wait: u64 = limited.last().unwrap().2.parse().unwrap();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (again, again_body, _, _) = upload(&p, &fast, chat_fast, 20 * 1024).await;
    assert_eq!(again, 201, "after Retry-After: {again_body}");
    assert_eq!(other_status, 201, "{other_body}");
    // Nothing left behind by the refused ones.
    assert_eq!(files.len(), 5 + 10 + 1, "{files:?}");
    assert!(
        files.iter().all(|f| !f.starts_with(".upload-")),
        "{files:?}"
    );
    assert_eq!(rows, 16);
    assert_eq!(reservations, 0);
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_holds_its_room_and_gives_it_back_when_abandoned() {
    let _one_at_a_time = exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let quota = (3 * MIB / 2) as u64; // room for one 1 MiB file, not two
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__LIMITS__USER_STORAGE_BYTES", quota.to_string()),
            ("PARLEY__STORAGE__MIN_FREE_BYTES", "0".into()),
        ],
    )
    .await;
    let a = p.register("slowa", &secrets).await;
    let b = p.register("slowb", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;

    // A slow upload has its reservation: a second one at the same time does not fit.
    let slow = SlowUpload::start(&p, &a, chat, MIB, 128 * 1024).await;
    let reservations_are = |n: u64| {
        let url = db.url.clone();
        move || {
            let url = url.clone();
            async move { count(&url, "SELECT COUNT(*) FROM upload_reservations").await == n }
        }
    };
    let reserved =
        crate::support::wait_until(Duration::from_secs(10), "reservation", reservations_are(1))
            .await;
    let (second, second_body, _, second_took) = upload(&p, &a, chat, MIB).await;
    // The client goes away: the reservation and the partial file go too.
    slow.abort();
    let released = crate::support::wait_until(
        Duration::from_secs(10),
        "reservation released",
        reservations_are(0),
    )
    .await;
    let audio = p.uploads.join("audio");
    crate::support::wait_until(Duration::from_secs(10), "partial file removed", || {
        let left = files_in(&audio);
        async move { left.is_empty() }
    })
    .await;
    // Room again: the same upload now fits.
    let (third, third_body, _, _) = upload(&p, &a, chat, MIB).await;
    // And a completed slow upload is stored like any other.
    let rows = count(&db.url, "SELECT COUNT(*) FROM media_files").await;

    reliability(
        "hostile-upload-in-flight",
        &[
            ("quota_bytes", quota.to_string()),
            ("reservation_seen_after", ms(reserved)),
            (
                "concurrent_second",
                format!("{second}:{}", code(&second_body)),
            ),
            ("second_refused_in", ms(second_took)),
            ("released_after_abort", ms(released)),
            ("after_release", third.to_string()),
            ("rows", rows.to_string()),
        ],
    );
    assert_eq!(second, 413, "{second_body}");
    assert_eq!(code(&second_body), "quota_exceeded");
    assert_eq!(third, 201, "{third_body}");
    assert_eq!(rows, 1);
    assert_eq!(files_in(&audio).len(), 1);
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stop_at_the_free_space_floor_before_and_while_streaming() {
    let _one_at_a_time = exclusive().await;
    let disk = SmallDisk::mount("16m");
    let floor = 8 * MIB as u64;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(
        &db.url,
        &[
            (
                "PARLEY__STORAGE__UPLOADS_DIR",
                disk.dir.path().display().to_string(),
            ),
            ("PARLEY__STORAGE__MIN_FREE_BYTES", floor.to_string()),
            ("PARLEY__LIMITS__UPLOADS_PER_MIN", "1000".into()),
        ],
    )
    .await;
    let a = p.register("floora", &secrets).await;
    let b = p.register("floorb", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;
    let audio = disk.dir.path().join("audio");

    // 1 MiB at a time until the floor: 16 MiB with 8 MiB kept free leaves room for
    // about seven, and the disk never goes below the floor.
    let mut accepted = 0;
    let mut refusal = None;
    for _ in 0..16 {
        let (status, body, _, took) = upload(&p, &a, chat, MIB).await;
        match status {
            201 => accepted += 1,
            _ => {
                refusal = Some((status, body, took));
                break;
            }
        }
    }
    let free_at_floor = disk.free();
    let (status, body, took) = refusal.expect("the floor refuses an upload");
    let rows_before = count(&db.url, "SELECT COUNT(*) FROM media_files").await;

    // While streaming: an upload that fits starts, then the disk fills from elsewhere
    // (a log, the database): the upload stops at the floor, leaving nothing behind.
    let filler = disk.dir.path().join("filler");
    let files_before = files_in(&audio).len();
    std::fs::remove_file(audio.join(files_in(&audio)[0].clone())).unwrap();
    std::fs::remove_file(audio.join(files_in(&audio)[0].clone())).unwrap();
    let slow = SlowUpload::start(&p, &b, chat, 2 * MIB, 384 * 1024).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let room = disk.free();
    std::fs::write(&filler, vec![0u8; (room - floor + MIB as u64 / 2) as usize]).unwrap();
    let mid = slow.finish().await;
    let files_after = files_in(&audio);
    let rows_after = count(&db.url, "SELECT COUNT(*) FROM media_files").await;
    let reservations = count(&db.url, "SELECT COUNT(*) FROM upload_reservations").await;
    std::fs::remove_file(&filler).unwrap();
    let (after, after_body, _, _) = upload(&p, &b, chat, MIB).await;

    reliability(
        "hostile-upload-disk-floor",
        &[
            ("disk", "tmpfs 16MiB".into()),
            ("min_free_bytes", floor.to_string()),
            ("accepted_1MiB", accepted.to_string()),
            ("refused", format!("{status}:{}", code(&body))),
            ("refused_in", ms(took)),
            ("free_at_floor", free_at_floor.to_string()),
            (
                "mid_stream",
                match &mid {
                    Ok((s, b)) => format!("{s}:{}", code(b)),
                    Err(e) => format!("error:{e}"),
                },
            ),
            (
                "files_left_mid_stream",
                (files_after.len() as i64 - (files_before as i64 - 2)).to_string(),
            ),
            ("reservations_left", reservations.to_string()),
            ("after_freeing", after.to_string()),
        ],
    );
    assert!((5..=8).contains(&accepted), "accepted {accepted}");
    assert_eq!(status, 507, "{body}");
    assert_eq!(code(&body), "storage_full");
    assert!(
        free_at_floor >= floor,
        "free {free_at_floor} < floor {floor}"
    );
    assert_eq!(rows_before, accepted);
    let (mid_status, mid_body) = mid.expect("the refusal reaches the client");
    assert_eq!(mid_status, 507, "{mid_body}");
    assert_eq!(code(&mid_body), "storage_full");
    assert_eq!(files_after.len() + 2, files_before, "{files_after:?}");
    assert!(files_after.iter().all(|f| !f.starts_with(".upload-")));
    // The two files removed by hand keep their rows; the refused upload added none.
    assert_eq!(rows_after, rows_before);
    assert_eq!(reservations, 0);
    assert_eq!(after, 201, "{after_body}");
    p.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swept_unsent_uploads_give_their_quota_back() {
    let _one_at_a_time = exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let quota = 2 * MIB as u64 + 64 * 1024;
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__LIMITS__USER_STORAGE_BYTES", quota.to_string()),
            ("PARLEY__STORAGE__MIN_FREE_BYTES", "0".into()),
            ("PARLEY__STORAGE__UNATTACHED_AUDIO_TTL_SECS", "1".into()),
        ],
    )
    .await;
    let a = p.register("swepta", &secrets).await;
    let b = p.register("sweptb", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;
    let (first, _, _, _) = upload(&p, &a, chat, MIB).await;
    let (second, _, _, _) = upload(&p, &a, chat, MIB).await;
    let (full, full_body, _, _) = upload(&p, &a, chat, MIB).await;
    let used_full = usage(&p, &a).await["storageUsedBytes"].as_u64();
    // Never sent: the sweep deletes them, and their bytes leave the user's total.
    let swept = crate::support::wait_until(Duration::from_secs(15), "swept", || {
        let url = db.url.clone();
        async move { count(&url, "SELECT COUNT(*) FROM media_files").await == 0 }
    })
    .await;
    let used_after = usage(&p, &a).await["storageUsedBytes"].as_u64();
    let (again, again_body, _, _) = upload(&p, &a, chat, MIB).await;
    reliability(
        "hostile-upload-swept-quota",
        &[
            ("quota_bytes", quota.to_string()),
            ("third_upload", format!("{full}:{}", code(&full_body))),
            ("swept_after", ms(swept)),
            ("used_before_sweep", format!("{used_full:?}")),
            ("used_after_sweep", format!("{used_after:?}")),
            ("upload_after_sweep", again.to_string()),
        ],
    );
    assert_eq!((first, second), (201, 201));
    assert_eq!(full, 413, "{full_body}");
    assert_eq!(used_full, Some(2 * MIB as u64));
    assert_eq!(used_after, Some(0));
    assert_eq!(again, 201, "{again_body}");
    p.assert_logs_clean(&secrets);
}
