//! Request/reply over the WebSocket: a frame with a fresh `ref`, and its one reply
//! (`ack` or `error`). The message actions of issue 17 (reply, edit, delete, react)
//! read as one line each in a test.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::client::WsClient;

/// Refs unique across every client of the test binary, so a reply is never taken
/// for another's.
static NEXT_REF: AtomicU64 = AtomicU64::new(1);

impl WsClient {
    /// Sends `event` with `data` and returns its reply frame (`ack` or `error`); frames
    /// that arrive first go to `skipped`, as with `reply_to`.
    pub async fn request(&mut self, event: &str, data: Value) -> Value {
        let reference = format!("rq-{}", NEXT_REF.fetch_add(1, Ordering::Relaxed));
        self.send(json!({"event": event, "ref": reference, "data": data}));
        self.reply_to(&reference).await
    }

    /// Sends `event` with `data` without waiting, for requests that race each other;
    /// returns its ref for [`WsClient::replies`].
    pub fn fire(&self, event: &str, data: Value) -> String {
        let reference = format!("rq-{}", NEXT_REF.fetch_add(1, Ordering::Relaxed));
        assert!(self.send(json!({"event": event, "ref": reference, "data": data})));
        reference
    }

    /// The replies to these refs, in the order of `refs`, however they arrive (a
    /// refusal may overtake an ack); other frames go to `skipped`, in order.
    pub async fn replies(&mut self, refs: &[String]) -> Vec<Value> {
        let mut got = std::collections::HashMap::new();
        let earlier = std::mem::take(&mut self.skipped);
        for v in earlier {
            match v["ref"].as_str().filter(|r| refs.iter().any(|x| x == r)) {
                Some(r) => {
                    got.insert(r.to_string(), v);
                }
                None => self.skipped.push(v),
            }
        }
        while got.len() < refs.len() {
            let v = self.next().await;
            match v["ref"].as_str().filter(|r| refs.iter().any(|x| x == r)) {
                Some(r) => {
                    got.insert(r.to_string(), v);
                }
                None => self.skipped.push(v),
            }
        }
        refs.iter().map(|r| got.remove(r).unwrap()).collect()
    }

    /// The `data` of the `ack` to this request; fails the test on an `error`.
    pub async fn acked(&mut self, event: &str, data: Value) -> Value {
        let reply = self.request(event, data.clone()).await;
        assert_eq!(reply["event"], "ack", "{event} {data}: {reply}");
        reply["data"].clone()
    }

    /// The error code this request is refused with; fails the test on an `ack`.
    pub async fn refused(&mut self, event: &str, data: Value) -> String {
        let reply = self.request(event, data.clone()).await;
        assert_eq!(
            reply["event"], "error",
            "{event} {data} was not refused: {reply}"
        );
        assert!(
            reply["data"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error has a message: {reply}"
        );
        reply["data"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `message:edit` of a plaintext message: the ack's `{message, changeId}`.
    pub async fn edit(&mut self, message: &Value, content: &str) -> Value {
        self.acked(
            "message:edit",
            json!({"messageId": message["id"], "content": content}),
        )
        .await
    }

    /// `message:delete` (for everyone): the ack's `changeId` (null when already deleted).
    pub async fn delete(&mut self, message: &Value) -> Value {
        self.acked("message:delete", json!({"messageId": message["id"]}))
            .await["changeId"]
            .clone()
    }

    /// `message:react`: the ack's `changeId` (null when it changed nothing).
    pub async fn react(&mut self, message: &Value, emoji: &str, active: bool) -> Value {
        self.acked(
            "message:react",
            json!({"messageId": message["id"], "emoji": emoji, "active": active}),
        )
        .await["changeId"]
            .clone()
    }

    /// A text message answering `original`: the stored message from the ack.
    pub async fn send_reply(
        &mut self,
        chat: u64,
        client_id: &str,
        text: &str,
        original: &Value,
    ) -> Value {
        self.acked(
            "message:send",
            json!({"chatId": chat, "clientId": client_id, "kind": "text",
                   "content": text, "replyToId": original["id"]}),
        )
        .await
    }
}
