//! The daemon's idle flag: whether no lane is running a turn or waiting on an approval, as of
//! the latest count of the registry's lanes. A client restarts a stale daemon only when it
//! says so (`Dispatch::idle`).
//!
//! Counts run concurrently (the event pump's after a batch, an operation's after it recorded
//! a started turn), and the one that began last may finish first. Each count takes a ticket
//! before it reads, and a result is kept only if no count with a later ticket was kept
//! already: a count that began earlier read an older snapshot, and letting it land last
//! would say "idle" about a lane whose turn the later count saw start.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::convert::lock;

/// The flag and the order of the counts that set it.
#[derive(Debug)]
pub(crate) struct IdleFlag {
    idle: AtomicBool,
    /// The last ticket handed out.
    issued: AtomicU64,
    /// The ticket of the count whose result the flag holds.
    kept: Mutex<u64>,
}

/// A count's place in line, taken before it reads the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(u64);

impl IdleFlag {
    /// Idle, as a daemon with no lanes is.
    pub(crate) fn new() -> IdleFlag {
        IdleFlag {
            idle: AtomicBool::new(true),
            issued: AtomicU64::new(0),
            kept: Mutex::new(0),
        }
    }

    /// Whether the daemon is idle, as of the latest count kept.
    pub(crate) fn get(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// A ticket for a count about to read the registry.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.issued.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Keeps the result of the count holding `ticket`, unless a later count's is kept.
    pub(crate) fn settle(&self, ticket: Ticket, idle: bool) {
        let mut kept = lock(&self.kept);
        if ticket.0 > *kept {
            *kept = ticket.0;
            self.idle.store(idle, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_that_began_earlier_never_overrides_a_later_one() {
        let flag = IdleFlag::new();
        assert!(flag.get());
        let earlier = flag.ticket();
        let later = flag.ticket();
        // The later count saw a turn start and finished first.
        flag.settle(later, false);
        // The earlier one read the registry before that turn was recorded.
        flag.settle(earlier, true);
        assert!(
            !flag.get(),
            "an older snapshot said idle over a running turn"
        );
        let next = flag.ticket();
        flag.settle(next, true);
        assert!(flag.get());
    }
}
