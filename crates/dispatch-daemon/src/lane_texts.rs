//! The daemon's cache of `list` entries: each lane's encoded text as `list` shows it, so
//! that a `list` of lanes that did not change copies their text instead of reading,
//! converting and encoding them again.
//!
//! An entry is used only for the exact row it was made from: its stamp's incarnation and
//! version (the registry bumps a row's version on every UPDATE of it, whoever writes, and
//! every INSERT makes a new incarnation: migration 0011), under the same settings
//! (`allow_attached_writes`, `stall_after_ms`) and for the same surface (which words the
//! hint). A lane is admitted on second sight: the first call that shows a row only notes its
//! stamp, and the text is kept when a later call finds the same stamp again, so lanes that
//! change between every two calls never pay for an entry. An entry holds for the readings of
//! the clock its conversion said it holds for (`View::lane_with_clock`: a running lane not yet
//! stalled until the moment it would stall), and is a miss from then on; a lane whose
//! conversion read the clock's value (a stalled lane's hint counting seconds) is never kept.
//! Entries hold the text only (the typed lane is not kept). The cache is bounded ([`MAX_BYTES`]),
//! dropping the least recently used entries, and starts empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dispatch_contract::types::Lane;
use dispatch_contract::{Encoded, EncodedText, Surface};
use dispatch_registry::{Kept, LaneStamp};

use crate::convert::{self, lock};
use crate::view::{Holds, View};

/// Most bytes the cache holds (counted as [`entry_bytes`]): some 6,000 lanes of `list`.
pub const MAX_BYTES: usize = 4 << 20;

/// What the cache is down to after it went over [`MAX_BYTES`].
const EVICT_TO_BYTES: usize = MAX_BYTES / 4 * 3;

/// What an entry of `lane_ref` holding `text` costs on the heap: the key's ref, the text and
/// its `Arc`, and the map's slot with its bookkeeping (an estimate: allocator rounding and
/// the map's spare room included as a flat 192 bytes).
fn entry_bytes(lane_ref: &str, text: Option<&EncodedText<Lane>>) -> usize {
    lane_ref.len() + 192 + text_bytes(text)
}

/// What an entry's text costs: the text and its `Arc` (counts and a pointer to the text).
fn text_bytes(text: Option<&EncodedText<Lane>>) -> usize {
    text.map_or(0, |text| text.text().len() + 32)
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

/// A lane seen: the stamp and settings it was last shown for, and its text once it was seen
/// a second time unchanged.
#[derive(Debug)]
struct Entry {
    incarnation: i64,
    version: i64,
    settings: Settings,
    text: Option<Arc<EncodedText<Lane>>>,
    /// The readings of the clock its text holds for; [`Holds::NEVER`] once showing this row
    /// read the clock's value (it is never kept); [`Holds::ALWAYS`] while not yet made.
    holds: Holds,
    /// The `uses` count of the call that used it last.
    used: u64,
}

impl Entry {
    fn shows(&self, stamp: &LaneStamp, settings: Settings) -> bool {
        self.incarnation == stamp.incarnation
            && self.version == stamp.version
            && self.settings == settings
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per surface, per lane ref.
    entries: HashMap<Surface, HashMap<String, Entry>>,
    /// Per surface, how many of the next calls read their page plainly (see
    /// [`LaneTexts::read`]).
    plain_calls: HashMap<Surface, u32>,
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
        let mut by_use: Vec<(u64, usize)> = self
            .entries
            .values()
            .flatten()
            .map(|(lane_ref, entry)| (entry.used, entry_bytes(lane_ref, entry.text.as_deref())))
            .collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        // The entries used at or before `last` go.
        let mut bytes = self.bytes;
        let mut last = None;
        for (used, size) in by_use {
            if bytes <= EVICT_TO_BYTES && last != Some(used) {
                break;
            }
            bytes = bytes.saturating_sub(size);
            last = Some(used);
        }
        if let Some(last) = last {
            for entries in self.entries.values_mut() {
                entries.retain(|_, entry| entry.used > last);
            }
            self.bytes = bytes;
        }
    }
}

/// What is kept for `stamp` under `view` among `entries` (one surface's), noting the lane as
/// seen at that stamp when it is not kept (`bytes` follows what the entries hold), and
/// whether it counts as not kept: changed since it was last seen, read the clock's value, or
/// outlived the readings its text held for.
fn look(
    entries: &mut HashMap<String, Entry>,
    bytes: &mut usize,
    stamp: &LaneStamp,
    settings: Settings,
    view: &View,
    uses: u64,
) -> (Kept<Encoded<Lane>, Admit>, bool) {
    let Some(entry) = entries.get_mut(stamp.lane_ref.as_str()) else {
        *bytes += entry_bytes(&stamp.lane_ref, None);
        entries.insert(
            stamp.lane_ref.clone(),
            Entry {
                incarnation: stamp.incarnation,
                version: stamp.version,
                settings,
                text: None,
                holds: Holds::ALWAYS,
                used: uses,
            },
        );
        return (Kept::Make(Admit(false)), false);
    };
    entry.used = uses;
    if !entry.shows(stamp, settings) {
        let text = entry.text.take();
        *bytes = bytes.saturating_sub(text_bytes(text.as_deref()));
        entry.incarnation = stamp.incarnation;
        entry.version = stamp.version;
        entry.settings = settings;
        entry.holds = Holds::ALWAYS;
        return (Kept::Make(Admit(false)), true);
    }
    match &entry.text {
        Some(text) if view.within(entry.holds) => {
            (Kept::Held(Encoded::Shared(Arc::clone(text))), false)
        }
        // The clock moved past what its text holds for (a running lane that stalls now):
        // made again, and kept again if what it is now holds on.
        Some(_) => {
            let text = entry.text.take();
            *bytes = bytes.saturating_sub(text_bytes(text.as_deref()));
            entry.holds = Holds::ALWAYS;
            (Kept::Make(Admit(true)), true)
        }
        None if !entry.holds.ever() => (Kept::Make(Admit(false)), true),
        None => (Kept::Make(Admit(true)), false),
    }
}

/// Lanes as `list` shows them, kept per (lane, surface).
#[derive(Debug, Default)]
pub struct LaneTexts {
    inner: Mutex<Inner>,
}

/// Whether a lane that is not kept is to be kept once made: it was seen at this stamp before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admit(bool);

/// A lane made for a page, to note once the page is read: its text to keep and the readings
/// of the clock it holds for, or `None` when showing it read the clock's value.
pub struct Made {
    lane_ref: String,
    incarnation: i64,
    version: i64,
    text: Option<Arc<EncodedText<Lane>>>,
    holds: Holds,
}

/// How a `list` call reads its page ([`LaneTexts::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The stamps first, then the rows of the lanes not kept ([`LaneTexts::kept`]).
    Stamps,
    /// The rows with their stamps in one statement, looking at the cache lane by lane
    /// ([`LaneTexts::probe`]).
    Probe,
    /// The rows only, as before the cache.
    Plain,
}

/// One call's look at the cache lane by lane ([`LaneTexts::probe`]).
pub struct Probe<'t> {
    texts: &'t LaneTexts,
    surface: Surface,
    settings: Settings,
    /// The `uses` count of this call.
    uses: u64,
    /// How many lanes the page shows: the lanes parsed past them are read only for `next`.
    page_len: usize,
    /// Lanes looked at.
    seen: usize,
    /// Of those, lanes that count as not kept.
    unkept: usize,
}

impl Probe<'_> {
    /// What is kept for `stamp` under `view`, as [`LaneTexts::kept`] answers for one lane (and
    /// noted as it does). `view` is the one the probe was made with. A lane looked at after
    /// the page's length (the one read only for `next`: SQLite hands the rows over in page
    /// order) is made without a look, neither noted nor counted; should the order differ, a
    /// lane of the page is only made again, never shown wrong.
    pub fn look(&mut self, stamp: &LaneStamp, view: &View) -> Kept<Encoded<Lane>, Admit> {
        if self.seen >= self.page_len {
            return Kept::Make(Admit(false));
        }
        let mut guard = lock(&self.texts.inner);
        let inner = &mut *guard;
        let entries = inner.entries.entry(self.surface).or_default();
        let (kept, unkept) = look(
            entries,
            &mut inner.bytes,
            stamp,
            self.settings,
            view,
            self.uses,
        );
        self.seen += 1;
        self.unkept += usize::from(unkept);
        kept
    }

    /// Ends the look: when most lanes looked at could not be kept, the next [`PLAIN_CALLS`]
    /// calls read plainly; the least recently used entries beyond the bound are dropped.
    pub fn finish(self) {
        let mut inner = lock(&self.texts.inner);
        if self.unkept * 2 > self.seen {
            inner.plain_calls.insert(self.surface, PLAIN_CALLS);
        }
        inner.evict();
    }
}

/// How many calls after one whose page mostly could not be kept (changed since the last call,
/// or read the clock) read their page plainly, without stamps and without the cache.
pub const PLAIN_CALLS: u32 = 3;

impl LaneTexts {
    /// How this call reads its page: [`Read::Plain`] for the [`PLAIN_CALLS`] calls after a
    /// call whose page was mostly lanes that changed since they were last seen or read the
    /// clock's value (cheaper for such a page: one statement, nothing noted), [`Read::Probe`]
    /// for the call after them (the page and its stamps in one statement, to look again),
    /// [`Read::Stamps`] otherwise. Either way the answer is the same.
    pub fn read(&self, surface: Surface) -> Read {
        let mut inner = lock(&self.inner);
        match inner.plain_calls.get_mut(&surface) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Read::Plain
            }
            Some(_) => {
                inner.plain_calls.remove(&surface);
                Read::Probe
            }
            None => Read::Stamps,
        }
    }

    /// A look at the cache lane by lane, for a page read with its stamps in its rows
    /// ([`Read::Probe`]): [`Probe::look`] answers what [`LaneTexts::kept`] would for each
    /// lane, and [`Probe::finish`] applies the same rule for the next calls. `page_len` is the
    /// page's limit: the lane read past it for `next` is not looked at (`kept`'s stamps end
    /// at the page).
    pub fn probe(&self, view: &View, surface: Surface, page_len: usize) -> Probe<'_> {
        let mut inner = lock(&self.inner);
        inner.uses += 1;
        Probe {
            texts: self,
            surface,
            settings: Settings::of(view),
            uses: inner.uses,
            page_len,
            seen: 0,
            unkept: 0,
        }
    }

    /// What is kept for each of `stamps` under `view` for `surface`: the text of that exact
    /// row (incarnation and version) and settings, or whether to keep the lane once made (it
    /// was seen at that stamp before). Every lane not kept is noted as seen at its stamp.
    pub fn kept(
        &self,
        stamps: &[LaneStamp],
        view: &View,
        surface: Surface,
    ) -> Vec<Kept<Encoded<Lane>, Admit>> {
        let settings = Settings::of(view);
        let mut guard = lock(&self.inner);
        let Inner {
            entries,
            plain_calls,
            bytes,
            uses,
        } = &mut *guard;
        // Lanes that changed since they were last seen, read the clock's value, or outlived
        // the readings their text held for.
        let mut unkept = 0;
        *uses += 1;
        let uses = *uses;
        let entries = entries.entry(surface).or_default();
        let page = stamps
            .iter()
            .map(|stamp| {
                let (kept, changed) = look(entries, bytes, stamp, settings, view, uses);
                unkept += usize::from(changed);
                kept
            })
            .collect();
        if unkept * 2 > stamps.len() {
            plain_calls.insert(surface, PLAIN_CALLS);
        }
        guard.evict();
        page
    }

    /// `row` (stamped `stamp`) as `list` shows it under `view`; a lane to admit that did not
    /// read the clock's value comes as its text, with what [`LaneTexts::keep`] keeps of it
    /// and the readings of the clock it holds for.
    pub fn make(
        row: dispatch_registry::LaneRow,
        stamp: &LaneStamp,
        view: &View,
        admit: Admit,
    ) -> (Encoded<Lane>, Option<Made>) {
        if !admit.0 {
            return (Encoded::Typed(convert::lane(row, view)), None);
        }
        let (lane, holds) = view.lane_with_clock(row);
        let made = |text, holds| Made {
            lane_ref: stamp.lane_ref.clone(),
            incarnation: stamp.incarnation,
            version: stamp.version,
            text,
            holds,
        };
        if !holds.ever() {
            return (Encoded::Typed(lane), Some(made(None, Holds::NEVER)));
        }
        match EncodedText::encode(&lane) {
            Ok(text) => {
                let text = Arc::new(text);
                let kept = made(Some(Arc::clone(&text)), holds);
                (Encoded::Shared(text), Some(kept))
            }
            // Not kept; encoding the answer fails the same way and says so.
            Err(_) => (Encoded::Typed(lane), None),
        }
    }

    /// Keeps what a page made under `view` for `surface` (in place of what was noted for
    /// those lanes), then drops the least recently used entries beyond the bound. A call that
    /// read an older row than one noted meanwhile puts its older entry back: it is never used
    /// for the newer row, only made again.
    pub fn keep(&self, made: Vec<Made>, view: &View, surface: Surface) {
        if made.is_empty() {
            return;
        }
        let settings = Settings::of(view);
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let uses = inner.uses;
        for Made {
            lane_ref,
            incarnation,
            version,
            text,
            holds,
        } in made
        {
            let bytes = entry_bytes(&lane_ref, text.as_deref());
            // The entry it replaces has the same ref.
            let base = entry_bytes(&lane_ref, None);
            let entry = Entry {
                incarnation,
                version,
                settings,
                holds,
                text,
                used: uses,
            };
            if let Some(old) = inner
                .entries
                .entry(surface)
                .or_default()
                .insert(lane_ref, entry)
            {
                inner.bytes = inner
                    .bytes
                    .saturating_sub(base + text_bytes(old.text.as_deref()));
            }
            inner.bytes += bytes;
        }
        inner.evict();
    }

    /// How many of the next calls for `surface` read their page plainly.
    pub fn plain_calls(&self, surface: Surface) -> u32 {
        lock(&self.inner)
            .plain_calls
            .get(&surface)
            .copied()
            .unwrap_or(0)
    }

    /// Entries holding a text, entries in all, and bytes held now.
    pub fn size(&self) -> (usize, usize, usize) {
        let inner = lock(&self.inner);
        let all = || inner.entries.values().flatten();
        let texts = all().filter(|(_, e)| e.text.is_some()).count();
        (texts, all().count(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use dispatch_registry as registry;

    use super::*;

    fn row(lane_ref: &str, title: &str) -> registry::LaneRow {
        registry::LaneRow {
            title: Some(title.into()),
            ..crate::test_rows::lane_row(lane_ref, &format!("thread-{lane_ref}"))
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

    /// Shows `stamps` as `list` does: what is kept, and the others made and kept if admitted.
    fn show(texts: &LaneTexts, stamps: &[LaneStamp], title: &str, view: &View) -> Vec<bool> {
        let page = texts.kept(stamps, view, Surface::Cli);
        let mut made = Vec::new();
        let held = stamps
            .iter()
            .zip(page)
            .map(|(stamp, kept)| match kept {
                Kept::Held(_) => true,
                Kept::Make(admit) => {
                    made.extend(LaneTexts::make(row(&stamp.lane_ref, title), stamp, view, admit).1);
                    false
                }
            })
            .collect();
        texts.keep(made, view, Surface::Cli);
        held
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
            // Seen, then kept (second sight), then found.
            assert!(show(&texts, &page(n), &title, &view).iter().all(|h| !h));
            assert!(show(&texts, &page(n), &title, &view).iter().all(|h| !h));
            // The first page stays in use.
            let first = show(&texts, &page(0), &title, &view);
            assert!(first.iter().all(|h| *h), "page 0 after page {n}");
            let (kept, _, bytes) = texts.size();
            assert!(bytes <= MAX_BYTES, "{bytes} bytes after page {n}");
            most = most.max(kept);
        }
        assert!(most > 1000 && most < 3000, "{most}");
        let latest = show(&texts, &page(29), &title, &view);
        assert!(latest.iter().all(|h| *h));
        let early = show(&texts, &page(1), &title, &view);
        assert!(early.iter().all(|h| !h), "page 1 was dropped");
    }

    /// A lane is kept only when a call finds it at the stamp an earlier call saw: a lane that
    /// changes between every two calls never gets a text, and a running lane none at all.
    #[test]
    fn a_lane_is_kept_on_second_sight_of_the_same_row() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let mut churning = stamp("a");
        for version in 1..5 {
            churning.version = version;
            assert_eq!(
                show(&texts, std::slice::from_ref(&churning), "x", &view),
                [false]
            );
            assert_eq!(texts.size().0, 0, "version {version}");
        }
        assert_eq!(
            show(&texts, std::slice::from_ref(&churning), "x", &view),
            [false]
        );
        assert_eq!(texts.size().0, 1, "seen twice at version 4");
        assert_eq!(
            show(&texts, std::slice::from_ref(&churning), "x", &view),
            [true]
        );
        // A running lane reads the clock: it is made every time and never kept.
        let busy = stamp("b");
        let late = View::new(false, 1, 10_000);
        for _ in 0..3 {
            let page = texts.kept(std::slice::from_ref(&busy), &late, Surface::Cli);
            let Some(Kept::Make(admit)) = page.into_iter().next() else {
                panic!("not kept")
            };
            let mut running = row("b", "x");
            running.status = registry::LaneStatus::Busy;
            let (lane, made) = LaneTexts::make(running, &busy, &late, admit);
            assert!(made.is_none_or(|made| made.text.is_none()) && lane.typed().is_some());
        }
        // What is kept is the lane's text, exactly as the lane encodes.
        let page = texts.kept(std::slice::from_ref(&churning), &view, Surface::Cli);
        let Some(Kept::Held(Encoded::Shared(text))) = page.into_iter().next() else {
            panic!("kept")
        };
        let fresh = serde_json::to_string(&convert::lane(row("a", "x"), &view)).unwrap();
        assert_eq!(text.text(), fresh);
    }

    /// A running lane not yet stalled is kept until the clock reaches the moment it would
    /// stall: a miss from then on, made again (stalled, its hint counting seconds) and no
    /// longer kept.
    #[test]
    fn a_running_lane_is_kept_until_the_moment_it_would_stall() {
        let texts = LaneTexts::default();
        let busy = stamp("b");
        let limit = 1_000;
        // The row's activity is at 0: it stalls at 1,000.
        let at = |now| View::new(false, limit, now);
        let show_at = |now| {
            let view = at(now);
            let page = texts.kept(std::slice::from_ref(&busy), &view, Surface::Cli);
            let Some(kept) = page.into_iter().next() else {
                panic!("one lane")
            };
            match kept {
                Kept::Held(lane) => (true, lane.decode().unwrap().into_owned()),
                Kept::Make(admit) => {
                    let mut running = row("b", "x");
                    running.status = registry::LaneStatus::Busy;
                    let (lane, made) = LaneTexts::make(running, &busy, &view, admit);
                    texts.keep(made.into_iter().collect(), &view, Surface::Cli);
                    (false, lane.decode().unwrap().into_owned())
                }
            }
        };
        assert!(!show_at(0).0, "noted");
        assert!(!show_at(10).0, "made and kept");
        assert_eq!(texts.size().0, 1);
        let (held, lane) = show_at(999);
        assert!(held && lane.stalled_since.is_none(), "kept until the bound");
        let (held, lane) = show_at(1_000);
        assert!(!held && lane.stalled_since.is_some(), "a miss at the bound");
        assert_eq!(texts.size().0, 0);
        let (held, lane) = show_at(1_001);
        assert!(!held && lane.hint.is_some(), "stalled: never kept");
        assert_eq!(texts.size().0, 0);
    }

    /// A call whose page mostly changed since the last call, or read the clock, makes the
    /// next [`PLAIN_CALLS`] calls read their page plainly; a page mostly unchanged does not.
    #[test]
    fn a_page_that_mostly_changed_or_read_the_clock_is_read_plainly_next() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let mut stamps: Vec<LaneStamp> = (0..10).map(|i| stamp(&format!("l{i}"))).collect();
        // New lanes are not changed ones: a first call leaves the next ones reading stamps.
        for _ in 0..3 {
            assert_eq!(texts.read(Surface::Cli), Read::Stamps);
            show(&texts, &stamps, "x", &view);
        }
        assert_eq!(texts.size().0, 10);
        // Half changed: still stamps.
        for stamp in stamps.iter_mut().take(5) {
            stamp.version += 1;
        }
        show(&texts, &stamps, "x", &view);
        assert_eq!(texts.plain_calls(Surface::Cli), 0);
        // Six of ten changed: the next calls read plainly, then stamps again.
        for stamp in stamps.iter_mut().take(6) {
            stamp.version += 1;
        }
        show(&texts, &stamps, "x", &view);
        assert_eq!(texts.plain_calls(Surface::Mcp), 0, "per surface");
        for _ in 0..PLAIN_CALLS {
            assert_eq!(texts.read(Surface::Cli), Read::Plain);
        }
        assert_eq!(
            texts.read(Surface::Cli),
            Read::Probe,
            "the call after them probes"
        );
        assert_eq!(texts.read(Surface::Cli), Read::Stamps);
        // Running lanes (they read the clock) count as not kept once noted as such.
        let held = texts.size().0;
        let late = View::new(false, 1, 10_000);
        let busy: Vec<LaneStamp> = (0..4).map(|i| stamp(&format!("b{i}"))).collect();
        for call in 0..3 {
            let page = texts.kept(&busy, &late, Surface::Cli);
            let made = busy
                .iter()
                .zip(page)
                .filter_map(|(stamp, kept)| {
                    let Kept::Make(admit) = kept else {
                        panic!("a running lane is never kept")
                    };
                    let mut running = row(&stamp.lane_ref, "x");
                    running.status = registry::LaneStatus::Busy;
                    LaneTexts::make(running, stamp, &late, admit).1
                })
                .collect();
            texts.keep(made, &late, Surface::Cli);
            let expected = if call == 2 { PLAIN_CALLS } else { 0 };
            assert_eq!(texts.plain_calls(Surface::Cli), expected, "call {call}");
        }
        assert_eq!(texts.size().0, held, "running lanes have no text");
    }

    /// A probe, looking lane by lane, answers and notes what `kept` answers and notes for the
    /// whole page, and applies the same rule for the next calls.
    #[test]
    fn a_probe_answers_lane_by_lane_what_kept_answers() {
        let by_page = LaneTexts::default();
        let by_lane = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let mut stamps: Vec<LaneStamp> = (0..10).map(|i| stamp(&format!("l{i}"))).collect();
        let what = |kept: &Kept<Encoded<Lane>, Admit>| match kept {
            Kept::Held(lane) => format!("held {}", lane.decode().unwrap().ref_),
            Kept::Make(admit) => format!("make {admit:?}"),
        };
        // Seen, kept, copied; then six of ten changed.
        for call in 0..4 {
            if call == 3 {
                for stamp in stamps.iter_mut().take(6) {
                    stamp.version += 1;
                }
            }
            let page: Vec<String> = by_page
                .kept(&stamps, &view, Surface::Cli)
                .iter()
                .map(what)
                .collect();
            let mut probe = by_lane.probe(&view, Surface::Cli, stamps.len());
            let mut made = Vec::new();
            let looked: Vec<String> = stamps
                .iter()
                .map(|stamp| {
                    let kept = probe.look(stamp, &view);
                    if let Kept::Make(admit) = kept {
                        made.extend(
                            LaneTexts::make(row(&stamp.lane_ref, "x"), stamp, &view, admit).1,
                        );
                    }
                    what(&kept)
                })
                .collect();
            probe.finish();
            by_lane.keep(made, &view, Surface::Cli);
            // The page side makes and keeps the lanes it admits.
            let mut kept_made = Vec::new();
            for (stamp, text) in stamps.iter().zip(&page) {
                if text.starts_with("make Admit(true)") {
                    kept_made.extend(
                        LaneTexts::make(row(&stamp.lane_ref, "x"), stamp, &view, Admit(true)).1,
                    );
                }
            }
            by_page.keep(kept_made, &view, Surface::Cli);
            assert_eq!(looked, page, "call {call}");
            assert_eq!(
                by_lane.plain_calls(Surface::Cli),
                by_page.plain_calls(Surface::Cli),
                "call {call}"
            );
            assert_eq!(by_lane.size().0, by_page.size().0, "call {call}");
        }
        assert_eq!(by_lane.plain_calls(Surface::Cli), PLAIN_CALLS);
    }

    /// The lane a page reads past its end (only for `next`) is not looked at: it is neither
    /// noted nor counted, so a probe decides on the page alone, as [`LaneTexts::kept`] does
    /// (its stamps end at the page).
    #[test]
    fn a_probe_leaves_out_the_lane_read_only_for_next() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let mut page: Vec<LaneStamp> = (0..3).map(|i| stamp(&format!("l{i}"))).collect();
        // Seen twice: all three kept.
        show(&texts, &page, "x", &view);
        show(&texts, &page, "x", &view);
        assert_eq!(texts.size().0, 3);
        // The second lane and the one past a page of two changed: one of the page's two.
        page[1].version += 1;
        page[2].version += 1;
        let mut probe = texts.probe(&view, Surface::Cli, 2);
        let looked: Vec<bool> = page
            .iter()
            .map(|stamp| matches!(probe.look(stamp, &view), Kept::Held(_)))
            .collect();
        probe.finish();
        assert_eq!(looked, [true, false, false]);
        assert_eq!(
            texts.plain_calls(Surface::Cli),
            0,
            "half the page: not most"
        );
        assert_eq!(texts.size().0, 2, "the lane past the page keeps its entry");
    }

    /// An entry is used only for its row (incarnation and version), settings and surface.
    #[test]
    fn an_entry_is_used_for_its_row_settings_and_surface_only() {
        let texts = LaneTexts::default();
        let view = View::new(false, 60_000, 0);
        let held = |texts: &LaneTexts, stamps: &[LaneStamp], view: &View, surface| {
            matches!(
                texts.kept(stamps, view, surface).first(),
                Some(Kept::Held(_))
            )
        };
        let stamps = [stamp("a")];
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert!(held(&texts, &stamps, &view, Surface::Cli));
        let newer = [LaneStamp {
            version: 2,
            ..stamp("a")
        }];
        assert!(!held(&texts, &newer, &view, Surface::Cli));
        assert_eq!(texts.size().0, 0, "a newer row drops the text");
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        let reborn = [LaneStamp {
            incarnation: 4,
            ..stamp("a")
        }];
        assert!(!held(&texts, &reborn, &view, Surface::Cli));
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert!(!held(&texts, &stamps, &view, Surface::Mcp));
        let writable = View::new(true, 60_000, 0);
        assert!(!held(&texts, &stamps, &writable, Surface::Cli));
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        let sooner = View::new(false, 1_000, 0);
        assert!(!held(&texts, &stamps, &sooner, Surface::Cli));
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert_eq!(show(&texts, &stamps, "x", &view), [false]);
        assert!(held(&texts, &stamps, &view, Surface::Cli));
        assert_eq!(texts.size().0, 1);
        assert_eq!(texts.size().1, 2, "one entry per surface");
    }
}
