//! What showing a lane depends on besides its row: the settings and the clock ([`View`]),
//! and the readings of the clock for which what was made from them holds ([`Holds`]). The
//! clock's reading is private to this module: a conversion reaches it only through
//! [`View::now_ms`] and [`View::has_passed`], which narrow the span, so no comparison can
//! bypass it.

use std::sync::atomic::{AtomicI64, Ordering};

/// The clock readings for which what a conversion made stays the same: every `now` with
/// `from <= now < until` (Unix epoch milliseconds). Each comparison with the clock narrows
/// it to the side of its deadline that `now` was on; reading the clock's value itself
/// empties it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holds {
    /// The earliest reading it holds for.
    from: i64,
    /// The first reading past the latest it holds for.
    until: i64,
}

impl Holds {
    /// For every reading of the clock: nothing made read it.
    pub const ALWAYS: Holds = Holds {
        from: i64::MIN,
        until: i64::MAX,
    };

    /// For no reading of the clock, not even the one made (it may have read its value).
    pub const NEVER: Holds = Holds {
        from: i64::MAX,
        until: i64::MIN,
    };

    /// A span `from <= now < until`.
    pub fn between(from: i64, until: i64) -> Holds {
        Holds { from, until }
    }

    /// Whether it holds at `now_ms`.
    pub fn at(self, now_ms: i64) -> bool {
        self.from <= now_ms && now_ms < self.until
    }

    /// Whether it holds for any reading at all.
    pub fn ever(self) -> bool {
        self.from < self.until
    }
}

/// What showing a lane depends on besides its row (and the surface that asked, which words
/// its hint).
#[derive(Debug)]
pub struct View {
    /// `[policy] allow_attached_writes`.
    pub allow_attached_writes: bool,
    /// `[lanes] stall_after_s`, in milliseconds.
    pub stall_after_ms: i64,
    /// Now (Unix epoch milliseconds): read through [`View::now_ms`] and [`View::has_passed`]
    /// only, which narrow what was made since [`View::with_clock`] last looked to the
    /// readings it holds for ([`Holds`]).
    now_ms: i64,
    /// [`Holds::from`] of what is being made.
    holds_from: AtomicI64,
    /// [`Holds::until`] of what is being made.
    holds_until: AtomicI64,
}

impl View {
    /// A view at `now_ms`.
    pub fn new(allow_attached_writes: bool, stall_after_ms: i64, now_ms: i64) -> View {
        View {
            allow_attached_writes,
            stall_after_ms,
            now_ms,
            holds_from: AtomicI64::new(Holds::ALWAYS.from),
            holds_until: AtomicI64::new(Holds::ALWAYS.until),
        }
    }

    /// Whether `holds` holds at the view's clock (without reading it for what is being made).
    pub fn within(&self, holds: Holds) -> bool {
        holds.at(self.now_ms)
    }

    /// Now (Unix epoch milliseconds): what is being made depends on the clock's value from
    /// here on, so it holds for no other reading ([`Holds::NEVER`]).
    pub fn now_ms(&self) -> i64 {
        self.narrow(Holds::NEVER);
        self.now_ms
    }

    /// Whether the clock reads `deadline_ms` or later: what is being made holds only on the
    /// same side of `deadline_ms` from here on.
    pub fn has_passed(&self, deadline_ms: i64) -> bool {
        let passed = self.now_ms >= deadline_ms;
        self.narrow(if passed {
            Holds::between(deadline_ms, i64::MAX)
        } else {
            Holds::between(i64::MIN, deadline_ms)
        });
        passed
    }

    /// Narrows what is being made to the readings `holds` holds for.
    fn narrow(&self, holds: Holds) {
        self.holds_from.fetch_max(holds.from, Ordering::Relaxed);
        self.holds_until.fetch_min(holds.until, Ordering::Relaxed);
    }

    /// What `make` makes under this view, and the readings of the clock it holds for (the
    /// narrowest of every clock comparison it made; [`Holds::NEVER`] once it read the clock's
    /// value): at any of them, from the same inputs, it would be made the same.
    pub fn with_clock<T>(&self, make: impl FnOnce(&View) -> T) -> (T, Holds) {
        self.holds_from.store(Holds::ALWAYS.from, Ordering::Relaxed);
        self.holds_until
            .store(Holds::ALWAYS.until, Ordering::Relaxed);
        let made = make(self);
        let holds = Holds {
            from: self.holds_from.load(Ordering::Relaxed),
            until: self.holds_until.load(Ordering::Relaxed),
        };
        (made, holds)
    }
}
