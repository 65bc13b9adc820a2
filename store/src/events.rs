//! Commit notifications: subscribers learn what each successful commit changed, after it is durable.
//!
//! The store stays query-agnostic: an event carries term ids only. Subscribers get an unbounded
//! `std::sync::mpsc` channel each, so a commit never waits for (or fails because of) a slow subscriber; a
//! subscriber that dropped its receiver is forgotten at the next commit.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use crate::keys::IdQuad;
use crate::term::TermId;

/// At most this many added (and, separately, removed) quads are listed in one [`CommitEvent`]; the counts
/// stay exact and [`CommitEvent::truncated`] says when the lists are cut.
pub const COMMIT_EVENT_QUAD_CAP: usize = 10_000;

/// What one successful commit changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitEvent {
    /// [`crate::Store::data_version`] after the commit.
    pub data_version: u64,
    /// Graphs with an added or removed quad, or created or dropped; [`TermId::DEFAULT_GRAPH`] for the
    /// default graph. Sorted, no duplicates. Empty and `truncated` for bulk loads (not tracked there).
    pub graphs_touched: Vec<TermId>,
    /// Quads added (exact count).
    pub inserted: u64,
    /// Quads removed (exact count).
    pub removed: u64,
    /// Added quads, at most [`COMMIT_EVENT_QUAD_CAP`].
    pub added: Vec<IdQuad>,
    /// Removed quads, at most [`COMMIT_EVENT_QUAD_CAP`].
    pub removed_quads: Vec<IdQuad>,
    /// True when `added`, `removed_quads` or `graphs_touched` are incomplete (a capped list or a bulk
    /// load): a subscriber matching on them must then assume anything may have changed.
    pub truncated: bool,
}

/// The subscriber list kept in the store.
#[derive(Default)]
pub(crate) struct Subscribers {
    senders: Mutex<Vec<Sender<CommitEvent>>>,
}

impl Subscribers {
    pub(crate) fn subscribe(&self) -> Receiver<CommitEvent> {
        let (tx, rx) = channel();
        if let Ok(mut s) = self.senders.lock() {
            s.push(tx);
        }
        rx
    }

    /// Sends `event` to every live subscriber; never blocks (unbounded channels).
    pub(crate) fn publish(&self, event: impl FnOnce() -> CommitEvent) {
        let Ok(mut senders) = self.senders.lock() else {
            return;
        };
        if senders.is_empty() {
            return;
        }
        let event = event();
        senders.retain(|s| s.send(event.clone()).is_ok());
    }
}
