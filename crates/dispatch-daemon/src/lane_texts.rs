//! The daemon's cache of `list` entries: each lane as `list` shows it, with its encoded text,
//! so that a `list` of lanes that did not change copies their text instead of reading,
//! converting and encoding them again.
//!
//! An entry is used only for the exact row it was made from: its stamp's incarnation and
//! version (the registry bumps a row's version on every UPDATE of it, whoever writes, and
//! every INSERT makes a new incarnation: migration 0011), under the same settings (`allow_attached_writes`, `stall_after_ms`) and
//! for the same surface (which words the hint). A lane whose entry read the clock
//! (`View::now_ms`: a running lane's `stalled_since` and hint) is never kept. The cache is
//! bounded ([`MAX_BYTES`]), dropping the least recently used entries, and starts empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dispatch_contract::types::Lane;
use dispatch_contract::{Encoded, EncodedValue, Surface};
use dispatch_registry::LaneStamp;

use crate::convert::{View, lock};

/// Most bytes the cache holds (counted as [`entry_bytes`]): some 4,500 lanes of `list`.
pub const MAX_BYTES: usize = 4 << 20;

/// What the cache is down to after it went over [`MAX_BYTES`].
const EVICT_TO_BYTES: usize = MAX_BYTES / 4 * 3;

/// What an entry costs: its text, as much again for the typed lane's strings, and the
/// bookkeeping.
fn entry_bytes(encoded: &EncodedValue<Lane>) -> usize {
    2 * encoded.text().len() + 256
}

/// The settings of a [`View`] that an entry depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    allow_attached_writes: bool,
    stall_after_ms: i64,
}

impl Settings {
    fn of(view: &View) -> Settings {
        Settings {
            allow_attached_writes: view.allow_attached_writes,
            stall_after_ms: view.stall_after_ms,
        }
    }
}

/// A kept lane.
#[derive(Debug)]
struct Entry {
    incarnation: i64,
    version: i64,
    settings: Settings,
    encoded: Arc<EncodedValue<Lane>>,
    /// The `uses` count of the call that used it last.
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<(String, Surface), Entry>,
    bytes: usize,
    /// Calls served so far: the clock of [`Entry::used`].
    uses: u64,
}

impl Inner {
    /// Drops the least recently used entries until the cache is within its bound.
    fn evict(&mut self) {
        if self.bytes <= MAX_BYTES {
            return;
        }
        let mut by_use: Vec<(u64, (String, Surface))> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.used, key.clone()))
            .collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        for (_, key) in by_use {
            if self.bytes <= EVICT_TO_BYTES {
                break;
            }
            if let Some(entry) = self.entries.remove(&key) {
                self.bytes = self.bytes.saturating_sub(entry_bytes(&entry.encoded));
            }
        }
    }
}

/// Lanes as `list` shows them, kept per (lane, surface).
#[derive(Debug, Default)]
pub struct LaneTexts {
    inner: Mutex<Inner>,
}

/// A lane made for a page, to keep once the page is read.
pub struct Made {
    lane_ref: String,
    incarnation: i64,
    version: i64,
    encoded: Arc<EncodedValue<Lane>>,
}

impl LaneTexts {
    /// What is kept for each of `stamps` under `view` for `surface`: the entry of that exact
    /// row (incarnation and version) and settings, or `None`.
    pub fn kept(
        &self,
        stamps: &[LaneStamp],
        view: &View,
        surface: Surface,
    ) -> Vec<Option<Encoded<Lane>>> {
        let settings = Settings::of(view);
        let mut inner = lock(&self.inner);
        inner.uses += 1;
        let uses = inner.uses;
        let mut key = (String::new(), surface);
        stamps
            .iter()
            .map(|stamp| {
                key.0.clear();
                key.0.push_str(&stamp.lane_ref);
                let entry = inner.entries.get_mut(&key)?;
                (entry.incarnation == stamp.incarnation
                    && entry.version == stamp.version
                    && entry.settings == settings)
                    .then(|| {
                        entry.used = uses;
                        Encoded::Shared(Arc::clone(&entry.encoded))
                    })
            })
            .collect()
    }

    /// `row` (stamped `stamp`) as `list` shows it under `view`; a lane that did not read the
    /// clock comes with its text, and with what [`LaneTexts::keep`] keeps of it.
    pub fn make(
        row: dispatch_registry::LaneRow,
        stamp: &LaneStamp,
        view: &View,
    ) -> (Encoded<Lane>, Option<Made>) {
        let (lane, clocked) = view.lane_with_clock(row);
        if clocked {
            return (Encoded::Typed(lane), None);
        }
        match EncodedValue::encode(lane) {
            Ok(encoded) => {
                let encoded = Arc::new(encoded);
                let made = Made {
                    lane_ref: stamp.lane_ref.clone(),
                    incarnation: stamp.incarnation,
                    version: stamp.version,
                    encoded: Arc::clone(&encoded),
                };
                (Encoded::Shared(encoded), Some(made))
            }
            // Not kept; encoding the answer fails the same way and says so.
            Err((lane, _)) => (Encoded::Typed(lane), None),
        }
    }

    /// Keeps what a page made under `view` for `surface` (in place of what was kept for those
    /// lanes), then drops the least recently used entries beyond the bound. A call that read
    /// an older row than one kept meanwhile puts its older entry back: it is never used for
    /// the newer row, only made again.
    pub fn keep(&self, made: Vec<Made>, view: &View, surface: Surface) {
        if made.is_empty() {
            return;
        }
        let settings = Settings::of(view);
        let mut inner = lock(&self.inner);
        let uses = inner.uses;
        for Made {
            lane_ref,
            incarnation,
            version,
            encoded,
        } in made
        {
            let bytes = entry_bytes(&encoded);
            let entry = Entry {
                incarnation,
                version,
                settings,
                encoded,
                used: uses,
            };
            if let Some(old) = inner.entries.insert((lane_ref, surface), entry) {
                inner.bytes = inner.bytes.saturating_sub(entry_bytes(&old.encoded));
            }
            inner.bytes += bytes;
        }
        inner.evict();
    }

    /// Entries and bytes held now.
    pub fn size(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use dispatch_registry as registry;

    use super::*;

    fn row(lane_ref: &str, title: &str) -> registry::LaneRow {
        registry::LaneRow {
            lane_ref: lane_ref.into(),
            thread_id: format!("thread-{lane_ref}"),
            title: Some(title.into()),
            handle: None,
            ownership: registry::Ownership::Owned,
            cwd: None,
            model: None,
            status: registry::LaneStatus::Idle,
            archived: false,
            latest_turn: None,
            retry: None,
            error_cause: None,
            goal: None,
            token_usage: None,
            worktree: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn stamp(lane_ref: &str) -> LaneStamp {
        LaneStamp {
            lane_ref: lane_ref.into(),
            incarnation: 3,
            version: 1,
            updated_at_ms: 0,
        }
    }

    /// Pages of lanes far over the bound leave the cache within it, holding the lanes used
    /// last (a lane found in the cache counts as used) and dropping the ones used longest ago.
    #[test]
    fn the_cache_stays_within_its_bound_and_drops_the_least_recently_used() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let title = "t".repeat(2000);
        let page = |n: usize| -> Vec<LaneStamp> {
            (0..100).map(|i| stamp(&format!("p{n}l{i}"))).collect()
        };
        let mut most = 0;
        for n in 0..30 {
            let stamps = page(n);
            assert!(
                texts
                    .kept(&stamps, &view, Surface::Cli)
                    .iter()
                    .all(Option::is_none)
            );
            let made = stamps
                .iter()
                .filter_map(|s| LaneTexts::make(row(&s.lane_ref, &title), s, &view).1)
                .collect();
            texts.keep(made, &view, Surface::Cli);
            // The first page stays in use.
            let first = texts.kept(&page(0), &view, Surface::Cli);
            assert!(first.iter().all(Option::is_some), "page 0 after page {n}");
            let (entries, bytes) = texts.size();
            assert!(bytes <= MAX_BYTES, "{bytes} bytes after page {n}");
            most = most.max(entries);
        }
        assert!(most > 500 && most < 3000, "{most}");
        let latest = texts.kept(&page(29), &view, Surface::Cli);
        assert!(latest.iter().all(Option::is_some));
        let early = texts.kept(&page(1), &view, Surface::Cli);
        assert!(early.iter().all(Option::is_none), "page 1 was dropped");
    }

    /// An entry is used only for its row (incarnation and version), settings and surface.
    #[test]
    fn an_entry_is_used_for_its_row_settings_and_surface_only() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let stamps = [stamp("a")];
        assert!(texts.kept(&stamps, &view, Surface::Cli)[0].is_none());
        let (lane, made) = LaneTexts::make(row("a", "x"), &stamps[0], &view);
        assert!(matches!(lane, Encoded::Shared(_)));
        texts.keep(made.into_iter().collect(), &view, Surface::Cli);
        assert!(texts.kept(&stamps, &view, Surface::Cli)[0].is_some());
        let newer = [LaneStamp {
            version: 2,
            ..stamp("a")
        }];
        assert!(texts.kept(&newer, &view, Surface::Cli)[0].is_none());
        let reborn = [LaneStamp {
            incarnation: 4,
            ..stamp("a")
        }];
        assert!(texts.kept(&reborn, &view, Surface::Cli)[0].is_none());
        assert!(texts.kept(&stamps, &view, Surface::Mcp)[0].is_none());
        let writable = View::new(true, 60_000, 0);
        assert!(texts.kept(&stamps, &writable, Surface::Cli)[0].is_none());
        let sooner = View::new(false, 1_000, 0);
        assert!(texts.kept(&stamps, &sooner, Surface::Cli)[0].is_none());
        assert!(texts.kept(&stamps, &view, Surface::Cli)[0].is_some());
        assert_eq!(texts.size().0, 1);
    }
}
