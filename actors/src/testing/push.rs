//! A [`PushSink`] that records every offer, for tests of what the core offers.

use std::sync::{Arc, Mutex, PoisonError};

use crate::push::{PushOffer, PushSink};

#[derive(Default)]
pub struct RecordingSink {
    offers: Mutex<Vec<PushOffer>>,
}

impl RecordingSink {
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    /// Every offer so far, oldest first.
    pub fn offers(&self) -> Vec<PushOffer> {
        self.offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl PushSink for RecordingSink {
    fn offer(&self, offer: PushOffer) {
        self.offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(offer);
    }
}
