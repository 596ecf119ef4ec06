//! The seam between the realtime core and Web Push (issue 20). The core only
//! *offers* events for users who have no visible session on this node; the push
//! engine (`parley::push`, which knows MySQL, subscriptions, mute settings and
//! HTTP) decides the rest off the message path. `offer` must never block or await:
//! the engine puts it in a bounded queue and drops the oldest when full.

use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

use crate::ids::{CallId, ChatId, MessageId, UserId};

/// What happened, as much as the engine needs to build a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A stored message. `preview` is the text (or caption) of a plaintext message,
    /// `None` for an encrypted one: the engine never sees its content.
    Message {
        chat: ChatId,
        message: MessageId,
        sender: UserId,
        preview: Option<Arc<str>>,
    },
    /// An incoming call, for the callee.
    Call {
        chat: ChatId,
        call: CallId,
        caller: UserId,
    },
}

/// An event and the users who may need a push for it: recipients without a
/// visible session on the offering node (the engine asks the cluster about the
/// other nodes, then mute settings and subscriptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOffer {
    pub users: SmallVec<[UserId; 4]>,
    pub event: PushEvent,
}

/// Where offers go. Implementations return at once (a bounded queue).
pub trait PushSink: Send + Sync + 'static {
    fn offer(&self, offer: PushOffer);
}

/// The sink until one is attached (and for processes without push): drops all.
#[derive(Default)]
pub struct PushSlot(OnceLock<Arc<dyn PushSink>>);

impl PushSlot {
    /// Attaches the engine; a second attach is ignored (one engine per process).
    pub fn attach(&self, sink: Arc<dyn PushSink>) {
        let _ = self.0.set(sink);
    }

    /// Whether an engine is attached: callers skip building offers when not.
    pub fn attached(&self) -> bool {
        self.0.get().is_some()
    }

    pub fn offer(&self, offer: PushOffer) {
        if let Some(sink) = self.0.get() {
            sink.offer(offer);
        }
    }
}
