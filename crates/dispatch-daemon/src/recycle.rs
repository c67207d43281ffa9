//! Recycling an App Server process that grew too big (`[app_server] recycle_above_mib`, ADR
//! 0022). Codex 0.169.0 answers `thread/unsubscribe` but keeps the thread in memory, so a
//! process grows with every thread it ever loaded. When a process's resident size (its RSS
//! plus its descendants', from `/proc`; Linux only) is above the threshold and it is
//! quiescent, a fresh process takes its place (a new incarnation, as after a restart, but not
//! counted as one) and the old one is shut down; its lanes resume their threads on their
//! next operation (`Service::ensure_loaded`).
//!
//! Quiescent, for that process: no lane living on it is busy, retrying or waiting for an
//! approval, every such lane's write lock is free (they are all held while deciding and
//! replacing), no thread without a lane lives on it, no request of the daemon waits for an
//! answer from it, no server request of it waits for an answer, and no new lane is being
//! placed on it (the placement lock is held while replacing).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::convert::lock;
use crate::service::{Service, unloadable};

/// A process is checked at most this often (its turn completions and the timer ask).
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often the timer asks about every process.
const TIMER_EVERY: Duration = Duration::from_secs(60);
/// How long the replaced process may take to answer requests sent to it just before it was
/// replaced, before it is shut down.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// What a recycle check of one process found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recycled {
    /// `recycle_above_mib` is 0, or this is not Linux.
    Off,
    /// The process does not serve now.
    Unavailable,
    /// It loaded no thread since it started: a fresh one would be the same.
    Fresh,
    /// It is not above the threshold (its resident size in bytes, if read).
    Small(Option<u64>),
    /// It is above the threshold but not quiescent: why.
    NotQuiescent(&'static str),
    /// The fresh process did not start (why); the old one goes on.
    SpawnFailed(String),
    /// Replaced: the old pid, its resident size in bytes, the new pid.
    Replaced {
        /// The pid of the process replaced.
        old_pid: Option<u32>,
        /// Its resident size (with its descendants), in bytes.
        rss: u64,
        /// The pid of the fresh process.
        new_pid: Option<u32>,
    },
}

impl Service {
    /// Checks process `process` now (no rate limit) and recycles it if it is above
    /// `[app_server] recycle_above_mib` and quiescent.
    pub async fn recycle_if_quiescent(&self, process: usize) -> Recycled {
        if self.recycle_above == 0 || !cfg!(target_os = "linux") {
            return Recycled::Off;
        }
        let Some((server, generation)) = self.app_server().current_of(process) else {
            return Recycled::Unavailable;
        };
        if self.loads_since_start(generation) == 0 {
            return Recycled::Fresh;
        }
        let rss = server.pid().and_then(resident_bytes);
        match rss {
            Some(rss) if rss > self.recycle_above => {}
            _ => return Recycled::Small(rss),
        }
        let rss = rss.unwrap_or(0);
        if let Some(why) = self.busy_process(&server, process) {
            return Recycled::NotQuiescent(why);
        }
        let threads = self.threads_on(process);
        if let Err(why) = self.lanes_quiescent(&threads).await {
            return Recycled::NotQuiescent(why);
        }
        let lanes = match self.registry().lanes_by_threads(&threads).await {
            Ok(lanes) => lanes,
            Err(err) => {
                tracing::warn!(%err, "reading the lanes of an App Server process to recycle");
                return Recycled::NotQuiescent("the registry did not answer");
            }
        };
        // Nothing may start on these lanes while the process is replaced.
        let mut writers = Vec::with_capacity(lanes.len());
        for lane in &lanes {
            match self.try_lane_lock(&lane.lane_ref) {
                Some(writer) => writers.push(writer),
                None => return Recycled::NotQuiescent("a write to one of its lanes is running"),
            }
        }
        // Still quiescent now that no turn can start?
        if let Err(why) = self.lanes_quiescent(&threads).await {
            return Recycled::NotQuiescent(why);
        }
        let fresh = match self.app_server().spawn_fresh().await {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::warn!(process, %err, "starting a fresh App Server to recycle one failed");
                return Recycled::SpawnFailed(err);
            }
        };
        // Until the old process is gone, a thread is resumed in the fresh one only by the
        // operations that wait for its lane lock (held here); the others wait for this.
        let replacing = Replacing::start(self, process, generation.incarnation + 1);
        let replaced = {
            // No lane is placed on it, nor moved to it, while deciding.
            let homes = self.homes();
            let placing = self.placing_counts();
            let now: HashSet<&String> = homes
                .iter()
                .filter(|(_, home)| **home == process)
                .map(|(thread, _)| thread)
                .collect();
            let same_threads =
                now.len() == threads.len() && threads.iter().all(|t| now.contains(t));
            let why = if !same_threads {
                Some("a lane moved to it meanwhile")
            } else if placing.get(process).copied().unwrap_or(0) > 0 {
                Some("a new lane is being made on it")
            } else {
                busy_connection(&server)
            };
            match why {
                Some(why) => Err((fresh, why)),
                None => self
                    .app_server()
                    .replace(process, &server, fresh)
                    .map_err(|fresh| (fresh, "it is no longer the one serving")),
            }
        };
        if let Err((fresh, why)) = replaced {
            // Not put in place: no incarnation waits for this one's predecessor.
            drop(replacing);
            let _reason = fresh.shutdown().await;
            return Recycled::NotQuiescent(why);
        }
        let current = self.app_server().current_of(process);
        if let Some((_, generation)) = &current {
            self.fresh_incarnation(*generation);
        }
        let new_pid = current.and_then(|(fresh, _)| fresh.pid());
        tracing::info!(
            process,
            old_pid = ?server.pid(),
            rss_mib = rss / (1024 * 1024),
            threshold_mib = self.recycle_above / (1024 * 1024),
            ?new_pid,
            "recycled an App Server process that grew too big; its lanes resume their threads on their next operation"
        );
        // A request sent just before the replacement is answered before the old one goes.
        let drained = Instant::now() + DRAIN_FOR;
        while server.requests_in_flight() > 0 && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Codex lets only the live process that loaded a thread write it (ADR 0019): the
        // lanes' write locks are released only once the old process is gone, so that their
        // next turn resumes the thread in the fresh one.
        let reason = server.shutdown().await;
        drop(replacing);
        drop(writers);
        tracing::debug!(process, %reason, "the recycled App Server process stopped");
        Recycled::Replaced {
            old_pid: server.pid(),
            rss,
            new_pid,
        }
    }

    /// Asks for a recycle check of process `process` in the background, unless it was
    /// checked less than [`CHECK_EVERY`] ago (cheap: called when a turn on it completes).
    pub(crate) fn recycle_soon(self: &Arc<Self>, process: usize) {
        if self.recycle_above == 0 {
            return;
        }
        {
            let mut checked = lock(&self.recycle_checked);
            let Some(last) = checked.get_mut(process) else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = service.recycle_if_quiescent(process).await;
            tracing::debug!(process, ?outcome, "recycle check");
            // Too big but busy just now (the turn's last writes): look once more a little
            // later, unless another check comes first.
            if matches!(outcome, Recycled::NotQuiescent(_)) {
                tokio::time::sleep(CHECK_EVERY).await;
                service.recycle_soon(process);
            }
        });
    }

    /// Checks every process of the pool for a recycle, every [`TIMER_EVERY`], for as long
    /// as the daemon runs (a process whose turns all completed long ago is still recycled).
    pub async fn recycle_timer(self: Arc<Self>) {
        if self.recycle_above == 0 {
            return;
        }
        let mut ticks = tokio::time::interval(TIMER_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            for process in 0..self.app_server().processes() {
                self.recycle_soon(process);
            }
        }
    }

    /// Why process `process` is not quiescent as far as the App Server connection and the
    /// placement of new lanes show, if it is not.
    fn busy_process(
        &self,
        server: &codex_app_server::AppServer,
        process: usize,
    ) -> Option<&'static str> {
        busy_connection(server).or_else(|| {
            (self.placing_counts().get(process).copied().unwrap_or(0) > 0)
                .then_some("a new lane is being made on it")
        })
    }

    /// The threads whose lanes live on process `process`.
    fn threads_on(&self, process: usize) -> Vec<String> {
        self.homes()
            .iter()
            .filter(|(_, home)| **home == process)
            .map(|(thread, _)| thread.clone())
            .collect()
    }

    /// Whether every thread of `threads` is a lane that is neither busy, retrying nor
    /// waiting for an approval (why not, if not).
    async fn lanes_quiescent(&self, threads: &[String]) -> Result<(), &'static str> {
        let lanes = self
            .registry()
            .lanes_by_threads(threads)
            .await
            .map_err(|_| "the registry did not answer")?;
        if lanes.len() < threads.len() {
            return Err("a thread without a lane lives on it");
        }
        if lanes.iter().any(|lane| !unloadable(lane.status)) {
            return Err("one of its lanes is busy, retrying or waiting for an approval");
        }
        Ok(())
    }
}

/// Marks incarnation `fresh` of a process as being put in place while its predecessor lives
/// ([`Service::replacing`]), until dropped.
struct Replacing<'a> {
    gate: Option<&'a tokio::sync::watch::Sender<u64>>,
}

impl<'a> Replacing<'a> {
    fn start(service: &'a Service, process: usize, fresh: u64) -> Replacing<'a> {
        let gate = service.replacing.get(process);
        if let Some(gate) = gate {
            gate.send_replace(fresh);
        }
        Replacing { gate }
    }
}

impl Drop for Replacing<'_> {
    fn drop(&mut self) {
        if let Some(gate) = self.gate {
            gate.send_replace(0);
        }
    }
}

/// Why the connection to `server` is not quiescent, if it is not: a request of the daemon,
/// or one of the App Server (an approval), waits for its answer.
fn busy_connection(server: &codex_app_server::AppServer) -> Option<&'static str> {
    if server.requests_in_flight() > 0 {
        Some("a request to it waits for its answer")
    } else if server.server_requests_waiting() > 0 {
        Some("a request of it waits for an answer")
    } else {
        None
    }
}

/// The resident size of process `pid` and of all its descendants, in bytes, from `/proc`
/// (`None` where there is no `/proc`, or the process is gone).
fn resident_bytes(pid: u32) -> Option<u64> {
    let mut total = process_rss(pid)?;
    let mut seen = HashSet::from([pid]);
    let mut todo = children(pid);
    while let Some(child) = todo.pop() {
        // Bounded: a pid is counted once even if /proc changes under us.
        if !seen.insert(child) || seen.len() > 4096 {
            continue;
        }
        total = total.saturating_add(process_rss(child).unwrap_or(0));
        todo.extend(children(child));
    }
    Some(total)
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

/// The children of `pid`, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_resident_size_of_this_process_is_read_from_proc() {
        let rss = resident_bytes(std::process::id()).expect("our own /proc entry");
        assert!(rss > 1024 * 1024, "{rss}");
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
