//! A session's catch-up, as plain state: which page to ask the store for next, which
//! live messages to hold meanwhile, and what to release when it is over. The
//! session actor does the I/O (store calls, timers, socket writes) and asks this
//! what comes next, so the rules below are unit-tested without an actor.
//!
//! The rules: on connect, every message not yet delivered is pushed, oldest first;
//! live messages arriving meanwhile are held and written after it, minus those the
//! catch-up already wrote (each message arrives once), then `ready`. After a
//! cluster outage the node announces a replay (`Hold`: hold live messages from now)
//! and then asks for it (`Resync`: every message after a floor); a replay asked for
//! while one runs is run before anything held is released, so per-sender order
//! survives the outage. Whatever is held is bounded: past the bound the session
//! closes with 1013 and its client reconnects and syncs.

use std::collections::HashSet;
use std::time::Duration;

use crate::directory::Deliver;
use crate::ids::MessageId;

/// How long a session holds live messages for a replay that was announced
/// (`Hold`) before running it anyway.
pub(crate) const HOLD_MAX: Duration = Duration::from_secs(5);

/// Live messages held back while a catch-up or a `sync` streams, and their size.
#[derive(Default)]
pub(crate) struct Held {
    frames: Vec<Deliver>,
    bytes: usize,
}

/// More is held than the session may buffer for a client: close it (the client
/// reconnects and syncs) rather than hold without end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooFarBehind;

impl TooFarBehind {
    /// "Try again later": the WebSocket close code the session sends.
    pub(crate) const CODE: u16 = 1013;
    pub(crate) const REASON: &'static str = "too far behind; reconnect and sync";
}

impl Held {
    /// Holds `d`; refused once what is held passes `limit` bytes.
    pub(crate) fn push(&mut self, d: Deliver, limit: usize) -> Result<(), TooFarBehind> {
        self.bytes += d.frame.len();
        self.frames.push(d);
        if self.bytes > limit {
            return Err(TooFarBehind);
        }
        Ok(())
    }

    /// What is held, in arrival order.
    pub(crate) fn into_frames(self) -> Vec<Deliver> {
        self.frames
    }
}

/// Where the next page of a catch-up starts, and what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub after: MessageId,
    /// Every message of the user's chats (a replay), not only the undelivered.
    pub everything: bool,
}

/// What the session does once a catch-up's last page is written.
pub(crate) enum Finish {
    /// A replay was asked for meanwhile: run it before releasing what is held.
    Fetch(Fetch),
    /// Over: write `release` (live messages held, minus those the catch-up already
    /// wrote), then `ready` with the count pushed, if set (a resync sends none).
    Done {
        release: Vec<Deliver>,
        ready: Option<usize>,
    },
}

/// The catch-up of one session (idle once it is over).
pub(crate) struct CatchUp {
    run: Option<Run>,
    /// The current run is a resync: no second `ready`.
    resyncing: bool,
}

struct Run {
    held: Held,
    sent: HashSet<MessageId>,
    pushed: usize,
    /// A replay after a cluster outage: every message, not only the undelivered.
    everything: bool,
    /// A page query is out (else: only holding live messages, waiting for `Resync`).
    running: bool,
    /// A replay asked for while one ran: run it before releasing what is held.
    again: Option<MessageId>,
}

impl Run {
    fn new(everything: bool, running: bool) -> Run {
        Run {
            held: Held::default(),
            sent: HashSet::new(),
            pushed: 0,
            everything,
            running,
            again: None,
        }
    }

    /// Keeps the lowest floor asked for, so nothing between two replays is missed.
    fn again(&mut self, after: MessageId) {
        self.again = Some(self.again.map_or(after, |a| a.min(after)));
    }
}

impl CatchUp {
    /// A new session's catch-up: the undelivered, from the start; its first page is
    /// asked for once the session is registered.
    pub(crate) fn connecting() -> CatchUp {
        CatchUp {
            run: Some(Run::new(false, true)),
            resyncing: false,
        }
    }

    /// A page query is out or due: `sync` waits for it.
    pub(crate) fn is_fetching(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.running)
    }

    /// Whether the next page reads every message (a replay) or the undelivered.
    pub(crate) fn everything(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.everything)
    }

    /// Where live messages go while a catch-up runs or a replay is awaited.
    pub(crate) fn held(&mut self) -> Option<&mut Held> {
        self.run.as_mut().map(|r| &mut r.held)
    }

    /// A page was written: these messages need not be written again when released.
    pub(crate) fn sent(&mut self, ids: impl ExactSizeIterator<Item = MessageId>) {
        if let Some(r) = self.run.as_mut() {
            r.pushed += ids.len();
            r.sent.extend(ids);
        }
    }

    /// The last page is written (or the store failed): what comes next.
    pub(crate) fn finish(&mut self) -> Finish {
        if let Some(r) = self.run.as_mut() {
            if let Some(after) = r.again.take() {
                r.everything = after.0 > 0;
                return Finish::Fetch(Fetch {
                    after,
                    everything: r.everything,
                });
            }
        }
        let Some(r) = self.run.take() else {
            return Finish::Done {
                release: Vec::new(),
                ready: None,
            };
        };
        let mut release = r.held.into_frames();
        release.retain(|d| !d.message.is_some_and(|id| r.sent.contains(&id)));
        let ready = (!std::mem::take(&mut self.resyncing)).then_some(r.pushed);
        Finish::Done { release, ready }
    }

    /// A replay is announced (`Hold`): hold live messages from now. True when the
    /// session should run the replay itself after [`HOLD_MAX`] if no `Resync` came
    /// (see [`CatchUp::hold_expired`]).
    pub(crate) fn hold(&mut self, after: MessageId) -> bool {
        match self.run.as_mut() {
            Some(r) if r.running => {
                r.again(after);
                false
            }
            // Already holding for a replay to come.
            Some(_) => false,
            None => {
                self.run = Some(Run::new(true, false));
                self.resyncing = true;
                true
            }
        }
    }

    /// [`HOLD_MAX`] after a `Hold`: still holding with no replay running, so the
    /// session runs it anyway rather than hold for ever.
    pub(crate) fn hold_expired(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.running)
    }

    /// A replay is asked for (`Resync`; `after` 0: no floor is known, the
    /// undelivered as on connect). The page to fetch now, or `None` when one is
    /// running already (the replay then runs after it).
    pub(crate) fn resync(&mut self, after: MessageId) -> Option<Fetch> {
        let everything = after.0 > 0;
        match self.run.as_mut() {
            Some(r) if r.running => {
                r.again(after);
                return None;
            }
            Some(r) => {
                r.running = true;
                r.everything = everything;
            }
            None => {
                self.run = Some(Run::new(everything, true));
                self.resyncing = true;
            }
        }
        Some(Fetch { after, everything })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: u64) -> Deliver {
        Deliver {
            frame: format!("m{id}").into(),
            message: Some(MessageId(id)),
        }
    }

    fn frames(release: &[Deliver]) -> Vec<&str> {
        release.iter().map(|d| &*d.frame).collect()
    }

    fn done(f: Finish) -> (Vec<Deliver>, Option<usize>) {
        match f {
            Finish::Done { release, ready } => (release, ready),
            Finish::Fetch(f) => panic!("expected the end, got a fetch {f:?}"),
        }
    }

    fn hold_live(c: &mut CatchUp, d: Deliver) {
        let held = c.held().expect("holding");
        held.push(d, usize::MAX).expect("within the bound");
    }

    #[test]
    fn connect_holds_live_messages_and_drops_those_already_pushed() {
        let mut c = CatchUp::connecting();
        assert!(c.is_fetching());
        assert!(!c.everything(), "a connect pushes only the undelivered");
        hold_live(&mut c, live(5));
        hold_live(&mut c, Deliver::frame("typing".into()));
        hold_live(&mut c, live(7));
        // The catch-up's page found 4 and 5 (5 arrived live meanwhile, too).
        c.sent([MessageId(4), MessageId(5)].into_iter());
        let (release, ready) = done(c.finish());
        assert_eq!(frames(&release), ["typing", "m7"]);
        assert_eq!(ready, Some(2), "ready counts what the catch-up pushed");
        assert!(c.held().is_none(), "live messages flow again");
        assert!(!c.is_fetching());
    }

    #[test]
    fn pushed_counts_every_page() {
        let mut c = CatchUp::connecting();
        c.sent([MessageId(1), MessageId(2)].into_iter());
        c.sent([MessageId(3)].into_iter());
        let (release, ready) = done(c.finish());
        assert!(release.is_empty());
        assert_eq!(ready, Some(3));
    }

    #[test]
    fn a_finished_catch_up_finishes_once() {
        let mut c = CatchUp::connecting();
        done(c.finish());
        let (release, ready) = done(c.finish());
        assert!(release.is_empty());
        assert_eq!(ready, None, "a second ready is never sent");
        assert!(
            c.resync(MessageId(0)).is_some(),
            "a later resync starts a new run"
        );
    }

    #[test]
    fn hold_then_resync_replays_everything_after_the_floor_without_a_second_ready() {
        let mut c = CatchUp::connecting();
        done(c.finish());
        assert!(c.hold(MessageId(10)), "the session arms its hold timer");
        assert!(!c.is_fetching(), "holding only, until the Resync");
        assert!(c.hold_expired());
        hold_live(&mut c, live(12));
        hold_live(&mut c, live(13));
        let fetch = c.resync(MessageId(10)).expect("runs now");
        assert_eq!(
            fetch,
            Fetch {
                after: MessageId(10),
                everything: true
            }
        );
        assert!(c.is_fetching());
        assert!(
            !c.hold_expired(),
            "the timer does nothing once the replay runs"
        );
        c.sent([MessageId(11), MessageId(12)].into_iter());
        let (release, ready) = done(c.finish());
        assert_eq!(frames(&release), ["m13"], "12 came with the replay");
        assert_eq!(ready, None, "a resync sends no second ready");
    }

    #[test]
    fn a_second_hold_while_holding_arms_no_second_timer() {
        let mut c = CatchUp::connecting();
        done(c.finish());
        assert!(c.hold(MessageId(10)));
        assert!(!c.hold(MessageId(3)));
        // The Resync brings its own floor.
        assert_eq!(c.resync(MessageId(8)).map(|f| f.after), Some(MessageId(8)));
    }

    #[test]
    fn resync_without_floor_sends_the_undelivered() {
        let mut c = CatchUp::connecting();
        done(c.finish());
        let fetch = c.resync(MessageId(0)).expect("runs now");
        assert!(!fetch.everything);
        assert!(!c.everything());
        let (_, ready) = done(c.finish());
        assert_eq!(ready, None);
    }

    #[test]
    fn replays_asked_for_while_one_runs_go_first_from_the_lowest_floor() {
        let mut c = CatchUp::connecting();
        hold_live(&mut c, live(30));
        assert!(!c.hold(MessageId(20)), "a running catch-up arms no timer");
        assert!(
            c.resync(MessageId(15)).is_none(),
            "queued behind the running one"
        );
        assert!(c.resync(MessageId(25)).is_none());
        c.sent([MessageId(29)].into_iter());
        let Finish::Fetch(again) = c.finish() else {
            panic!("the queued replay must run before anything is released");
        };
        assert_eq!(
            again,
            Fetch {
                after: MessageId(15),
                everything: true
            }
        );
        assert!(c.everything());
        assert!(c.held().is_some(), "still holding during the replay");
        c.sent([MessageId(16), MessageId(30)].into_iter());
        let (release, ready) = done(c.finish());
        assert!(release.is_empty(), "30 came with the replay");
        assert_eq!(ready, Some(3), "the connect's ready, counting both runs");
    }

    #[test]
    fn a_queued_replay_with_no_floor_reads_the_undelivered() {
        let mut c = CatchUp::connecting();
        assert!(c.resync(MessageId(0)).is_none());
        let Finish::Fetch(again) = c.finish() else {
            panic!("expected the queued replay");
        };
        assert!(!again.everything);
    }

    #[test]
    fn holding_is_bounded() {
        let mut c = CatchUp::connecting();
        let held = c.held().expect("holding");
        assert_eq!(held.push(live(1), 4), Ok(()), "2 bytes of 4");
        assert_eq!(held.push(live(2), 4), Ok(()), "4 bytes of 4");
        assert_eq!(held.push(live(3), 4), Err(TooFarBehind));
        assert_eq!(TooFarBehind::CODE, 1013);
    }

    #[test]
    fn idle_catch_up_holds_nothing() {
        let mut c = CatchUp::connecting();
        done(c.finish());
        assert!(c.held().is_none());
        assert!(!c.hold_expired());
        assert!(!c.everything());
        c.sent([MessageId(1)].into_iter());
    }
}
