//! A frame's length is checked when its header arrives (issue 15, item 2): the old
//! server buffered a frame declared at 1 GiB for as long as its payload kept coming
//! (+200 MiB in 1.3 s) and only then refused it.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{frame_header, raw_ws, text_frame};
use crate::support::{ms, reliability, Parley, Secrets, TestDb};

/// A server frame (never masked): opcode and payload; `None` at the end.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x0f, payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declared_at_a_gibibyte_is_refused_at_its_header() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let eve = p.register("eve", &secrets).await;
    let rss_start = crate::support::proc_rss_kib(p.pid());

    let mut s = raw_ws(p.port, &eve.token, None).await;
    let started = Instant::now();
    s.write_all(&frame_header(0x1, 1 << 30)).await.unwrap();
    // Keep sending payload, up to 200 MiB, while the server lets us.
    let chunk = vec![b'a'; 1 << 20];
    let (mut reader, mut writer) = s.into_split();
    let pump = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < 200 << 20 {
            match tokio::time::timeout(Duration::from_secs(5), writer.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                _ => break,
            }
        }
        sent
    });
    // What the server says: `too_large`, then a close with 1009.
    let mut frames = Vec::new();
    let mut closed_at = None;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut b = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&b[..n]),
        }
        // Parse what is complete.
        let mut cursor = std::io::Cursor::new(buf.clone());
        frames.clear();
        while let Some(f) = parse(&mut cursor) {
            frames.push(f);
        }
        if frames.iter().any(|(op, _)| *op == 0x8) {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let rss_peak = crate::support::proc_rss_kib(p.pid());
    let sent = pump.await.unwrap();
    let growth_kib = rss_peak.saturating_sub(rss_start);
    let close = frames.iter().find(|(op, _)| *op == 0x8).cloned();
    reliability(
        "gib_frame_header",
        &[
            ("declared", "1GiB".into()),
            (
                "closed_after",
                closed_at.map(ms).unwrap_or_else(|| "never".into()),
            ),
            (
                "payload_accepted_before_close",
                format!("{}MiB", sent >> 20),
            ),
            ("rss_growth", format!("{}MiB", growth_kib / 1024)),
        ],
    );
    let (_, payload) = close.expect("a close frame");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        1009,
        "close code"
    );
    let text = frames
        .iter()
        .find(|(op, _)| *op == 0x1)
        .map(|(_, p)| String::from_utf8_lossy(p).to_string())
        .unwrap_or_default();
    assert!(text.contains("too_large"), "error before the close: {text}");
    assert!(
        closed_at.unwrap() < Duration::from_secs(2),
        "closed only after {closed_at:?}"
    );
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew {growth_kib} KiB for a frame that was refused at its header"
    );
    assert!(
        sent < 200 << 20,
        "the server took all 200 MiB of the payload"
    );
    p.assert_logs_clean(&secrets);
}

fn parse(c: &mut std::io::Cursor<Vec<u8>>) -> Option<(u8, Vec<u8>)> {
    let buf = c.get_ref();
    let at = c.position() as usize;
    let rest = &buf[at..];
    if rest.len() < 2 {
        return None;
    }
    let (len, hl) = match rest[1] & 0x7f {
        126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
        126 => return None,
        127 if rest.len() >= 10 => (
            u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
            10,
        ),
        127 => return None,
        n => (n as usize, 2),
    };
    if rest.len() < hl + len {
        return None;
    }
    let f = (rest[0] & 0x0f, rest[hl..hl + len].to_vec());
    c.set_position((at + hl + len) as u64);
    Some(f)
}

/// A frame over `limits.ws_frame_bytes` (but under the hard limit) is skipped as it
/// arrives, answered `too_large`, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_skipped_and_the_connection_goes_on() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let eve = p.register("eve2", &secrets).await;
    let mut s = raw_ws(p.port, &eve.token, None).await;
    let big = "x".repeat(3 << 20);
    let mut bytes = text_frame(&big);
    bytes.extend(text_frame(
        &json!({"event": "ping", "ref": "after", "data": {}}).to_string(),
    ));
    s.write_all(&bytes).await.unwrap();
    let mut saw_too_large = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no pong after the oversized frame"
        );
        let (op, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s))
            .await
            .unwrap()
            .expect("connection stays open");
        assert_ne!(op, 0x8, "closed: {payload:?}");
        let text = String::from_utf8_lossy(&payload);
        if text.contains("too_large") {
            saw_too_large = true;
        }
        if text.contains("\"pong\"") {
            assert!(text.contains("\"after\""));
            break;
        }
    }
    assert!(saw_too_large);
    p.assert_logs_clean(&secrets);
}
