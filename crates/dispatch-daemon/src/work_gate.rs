//! The gate of model work: what is in flight that the idle flag cannot see yet, and whether
//! the daemon has agreed to stop.
//!
//! The idle flag is a count of the registry's lanes, so a turn is invisible to it from before
//! `turn/start` until the started turn is recorded. Everything that can start model work
//! passes through this gate for that time: every operation the contract marks `model_work:
//! starts` (admitted by `run_operation` around the whole call), and every `turn/start`
//! (admitted by `Service::start_turn`, the one function that sends it, so that orchestration's
//! queued deliveries and triggers' fires are counted as well).
//!
//! A conditional stop ([`WorkGate::stop_if_idle`]) decides under the gate's lock: nothing in
//! flight and the flag idle, then no more admissions, ever; otherwise a refusal. So no model
//! work can start between the check and the stop.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::convert::lock;

/// Model work in flight, and whether the daemon is stopping.
#[derive(Debug)]
pub(crate) struct WorkGate {
    state: Mutex<GateState>,
    /// Becomes `true` once a conditional stop is accepted.
    stopping: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct GateState {
    in_flight: usize,
    stopping: bool,
}

/// Why the gate did not admit model work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopping;

/// Why a conditional stop was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    /// Admissions in flight: an operation that can start model work counts once, and its
    /// `turn/start` once more while it runs.
    pub in_flight: usize,
    /// Whether the idle flag said a lane runs a turn or waits on an approval.
    pub lanes_busy: bool,
}

/// One admitted piece of model work; it ends when dropped.
#[derive(Debug)]
pub(crate) struct WorkGuard<'a> {
    gate: &'a WorkGate,
}

impl Drop for WorkGuard<'_> {
    fn drop(&mut self) {
        self.gate.end();
    }
}

impl WorkGate {
    /// Nothing in flight, not stopping.
    pub(crate) fn new() -> WorkGate {
        WorkGate {
            state: Mutex::new(GateState::default()),
            stopping: watch::channel(false).0,
        }
    }

    /// Counts one piece of model work in flight until [`Self::end`]; refused once stopping.
    pub(crate) fn begin(&self) -> Result<(), Stopping> {
        let mut state = lock(&self.state);
        if state.stopping {
            return Err(Stopping);
        }
        state.in_flight += 1;
        Ok(())
    }

    /// Ends one piece of model work that [`Self::begin`] admitted.
    pub(crate) fn end(&self) {
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
    }

    /// [`Self::begin`], ended when the guard is dropped.
    pub(crate) fn admit(&self) -> Result<WorkGuard<'_>, Stopping> {
        self.begin()?;
        Ok(WorkGuard { gate: self })
    }

    /// Whether nothing is in flight.
    pub(crate) fn quiet(&self) -> bool {
        lock(&self.state).in_flight == 0
    }

    /// Stops admitting model work if nothing is in flight and `lanes_idle` (read under the
    /// gate's lock, so that work admitted before the check is seen by it and work after it is
    /// refused) says no lane is busy; otherwise refuses and changes nothing.
    pub(crate) fn stop_if_idle(&self, lanes_idle: impl FnOnce() -> bool) -> Result<(), Busy> {
        let mut state = lock(&self.state);
        if state.stopping {
            return Ok(());
        }
        let lanes_busy = !lanes_idle();
        if state.in_flight > 0 || lanes_busy {
            return Err(Busy {
                in_flight: state.in_flight,
                lanes_busy,
            });
        }
        state.stopping = true;
        self.stopping.send_replace(true);
        Ok(())
    }

    /// Resolves once a conditional stop was accepted.
    pub(crate) async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives as long as the gate, so this only ends when stopping.
        let _stopping = stopping.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_in_flight_refuses_a_stop_and_a_stop_refuses_new_work() {
        let gate = WorkGate::new();
        let guard = gate.admit().expect("admitted");
        assert!(!gate.quiet());
        assert_eq!(
            gate.stop_if_idle(|| true),
            Err(Busy {
                in_flight: 1,
                lanes_busy: false
            })
        );
        drop(guard);
        assert!(gate.quiet());
        assert_eq!(
            gate.stop_if_idle(|| false),
            Err(Busy {
                in_flight: 0,
                lanes_busy: true
            })
        );
        assert_eq!(gate.stop_if_idle(|| true), Ok(()));
        assert_eq!(gate.admit().err(), Some(Stopping));
        assert!(gate.quiet(), "a refused admission counts nothing");
    }
}
