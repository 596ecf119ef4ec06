//! The setup most tests start from, written once: ann and bob, registered in that
//! order, and their direct chat (created by ann).

use crate::app::TestApp;
use crate::binary::{Parley, Secrets};
use crate::client::TestUser;

/// ann, bob and their direct chat.
#[derive(Debug, Clone)]
pub struct AnnBob {
    pub ann: TestUser,
    pub bob: TestUser,
    pub chat: u64,
}

impl TestApp {
    /// Registers ann and bob and opens their direct chat.
    pub async fn ann_bob(&self) -> AnnBob {
        let ann = self.register("ann").await;
        let bob = self.register("bob").await;
        let chat = self.direct_chat(&ann, &bob).await;
        AnnBob { ann, bob, chat }
    }
}

impl Parley {
    /// Registers ann and bob (their secrets noted) and opens their direct chat.
    pub async fn ann_bob(&self, secrets: &Secrets) -> AnnBob {
        let ann = self.register("ann", secrets).await;
        let bob = self.register("bob", secrets).await;
        let chat = self.direct_chat(&ann, &bob).await;
        AnnBob { ann, bob, chat }
    }
}
