//! Where a lane lives in the pool of App Server processes (`[app_server] processes`, ADR
//! 0019): each lane's thread is loaded in one process at a time, its *home*, and every
//! operation on the lane goes there. A thread that has no home yet (a new lane, or any lane
//! after a daemon restart) goes to the least loaded serving process: fewest threads loaded
//! or being made, then fewest lanes. A lane whose process died moves to the least loaded serving one on its
//! next operation (the dead process holds no thread any more); a lane is never moved away
//! from a live process that may have its thread loaded, because two live processes writing
//! one thread's rollout file interleave their turns (ADR 0019). Operations that concern no
//! lane go to any serving process.
//!
//! Homes are kept in memory: after a daemon restart no process has anything loaded, so any
//! process may take any lane.

use codex_app_server::AppServer;
use dispatch_contract::DispatchError;

use crate::service::{Placing, Service};
use crate::supervisor::Generation;

impl Service {
    /// A serving App Server for an operation that concerns no lane in particular.
    pub(crate) fn server(&self) -> Result<(AppServer, Generation), DispatchError> {
        self.app_server()
            .current()
            .ok_or_else(|| self.app_server().unavailable())
    }

    /// The least loaded serving process, for a thread that is about to be made (`new`); the
    /// guard counts the thread towards that process's load until it is loaded (keep it until
    /// then), so that lanes made at the same time spread out.
    pub(crate) fn server_for_new(
        &self,
    ) -> Result<(AppServer, Generation, Placing<'_>), DispatchError> {
        let homes = self.homes();
        let (server, generation) = self
            .least_loaded(&homes)
            .ok_or_else(|| self.app_server().unavailable())?;
        let placing = self.placing(generation.process);
        Ok((server, generation, placing))
    }

    /// The process `thread_id`'s lane lives on, for an operation that loads the thread:
    /// its home while that process serves; otherwise (no home yet, or its process died) the
    /// least loaded serving process, which becomes its home.
    pub(crate) fn server_for(
        &self,
        thread_id: &str,
    ) -> Result<(AppServer, Generation), DispatchError> {
        let mut homes = self.homes();
        if let Some(home) = homes.get(thread_id).copied() {
            if let Some(serving) = self.app_server().current_of(home) {
                return Ok(serving);
            }
            // With one process there is nowhere else to go: wait for its restart.
            if self.app_server().processes() == 1 {
                return Err(self.app_server().unavailable());
            }
        }
        let (server, generation) = self
            .least_loaded(&homes)
            .ok_or_else(|| self.app_server().unavailable())?;
        let moved = homes.insert(thread_id.to_owned(), generation.process);
        if let Some(from) = moved.filter(|from| *from != generation.process) {
            tracing::info!(
                thread_id,
                from,
                to = generation.process,
                "a lane moved to another App Server process"
            );
        }
        Ok((server, generation))
    }

    /// The process to ask about `thread_id` without loading it (read it, rename, archive,
    /// answer its requests): its home while that process serves, else any serving one.
    pub(crate) fn server_of(
        &self,
        thread_id: &str,
    ) -> Result<(AppServer, Generation), DispatchError> {
        let home = self.homes().get(thread_id).copied();
        match home.and_then(|home| self.app_server().current_of(home)) {
            Some(serving) => Ok(serving),
            None => self.server(),
        }
    }

    /// The serving process with the fewest threads loaded, then the fewest lanes, then the
    /// lowest index.
    fn least_loaded(
        &self,
        homes: &std::collections::HashMap<String, usize>,
    ) -> Option<(AppServer, Generation)> {
        let serving: Vec<(AppServer, Generation)> = (0..self.app_server().processes())
            .filter_map(|process| self.app_server().current_of(process))
            .collect();
        let generations: Vec<Generation> = serving.iter().map(|(_, g)| *g).collect();
        let loads = self.loads(&generations, homes);
        serving
            .into_iter()
            .zip(loads)
            .min_by_key(|((_, generation), load)| (*load, generation.process))
            .map(|(serving, _)| serving)
    }

    /// How many lanes live on each process of the pool, by index.
    pub(crate) fn lanes_per_process(&self) -> Vec<usize> {
        let mut counts = vec![0; self.app_server().processes()];
        for process in self.homes().values() {
            if let Some(count) = counts.get_mut(*process) {
                *count += 1;
            }
        }
        counts
    }
}
