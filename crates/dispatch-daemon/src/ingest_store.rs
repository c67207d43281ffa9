//! The event pump's batch boundary: a batch is prepared (folded, its rows bound) on the pump,
//! while the batch before it is stored by a task that only executes (ADR 0020, "Ingest,
//! eighth round"). At most one batch is in flight, so batches are stored in the order they
//! were taken; nothing of a batch is seen (watchers, the idle flag) before its commit.

use std::sync::Arc;

use dispatch_registry::{PreparedBatch, Recorded, RegistryError, Unstored};

use crate::ingest::changes_status;
use crate::service::Service;

/// The batch being stored while the pump folds and prepares the next one.
#[derive(Default)]
pub(crate) struct Writing {
    task: Option<tokio::task::JoinHandle<()>>,
    /// The store's own thread: a current-thread runtime, kept until the pump stops.
    thread: Option<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)>,
}

impl Writing {
    /// The runtime of the store's own thread, started on first use.
    fn runtime(&mut self) -> Option<tokio::runtime::Handle> {
        if let Some((handle, _)) = &self.thread {
            return Some(handle.clone());
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(%err, "starting the store's thread");
                return None;
            }
        };
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = std::thread::Builder::new()
            .name("ingest-store".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            });
        if let Err(err) = started {
            tracing::error!(%err, "starting the store's thread");
            return None;
        }
        self.thread = Some((handle.clone(), stop));
        Some(handle)
    }
}

impl Writing {
    /// Waits until the batch in flight, if any, is stored and its watchers woken.
    pub(crate) async fn done(&mut self) {
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::error!(%err, "storing events failed");
        }
    }
}

impl Drop for Writing {
    /// A pump stopped with a batch in flight stops storing it too (its transaction is rolled
    /// back), as a pump stopped inside `Registry::record` did before batches were pipelined.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Prepares `batch` (emptying it), then, once the batch before it is stored, hands it to a
/// task that stores it, without waiting for that (see [`Writing::done`]); returns whether
/// there was anything to store.
pub(crate) async fn flush(
    service: &Arc<Service>,
    batch: &mut Vec<Recorded>,
    writing: &mut Writing,
) -> bool {
    if batch.is_empty() {
        return false;
    }
    let status_changed = batch
        .iter()
        .any(|recorded| recorded.facts.iter().any(changes_status));
    let events = batch.len();
    let prepared = service.registry().prepare(std::mem::take(batch));
    writing.done().await;
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            tracing::error!(%err, events, "storing events failed");
            return true;
        }
    };
    let service = Arc::clone(service);
    let work = async move {
        store(&service, prepared, status_changed).await;
    };
    writing.task = Some(match writing.runtime() {
        Some(runtime) => runtime.spawn(work),
        None => tokio::spawn(work),
    });
    true
}

/// Stores a prepared batch, then wakes the watchers (and counts the lanes again for the idle
/// flag when the batch can have changed a lane's status): nothing of it is seen before its
/// commit.
async fn store(service: &Service, prepared: PreparedBatch, status_changed: bool) {
    match service.registry().store(prepared).await {
        Ok(()) => {}
        // A lane deleted meanwhile: the others' events are stored without its own.
        Err(Unstored {
            error: RegistryError::LaneNotFound { .. },
            recorded,
        }) => {
            let mut kept = Vec::with_capacity(recorded.len());
            for recorded in recorded {
                if let Ok(Some(_)) = service.registry().lane(&recorded.lane_ref).await {
                    kept.push(recorded);
                }
            }
            if let Err(err) = service.registry().record(&kept).await {
                tracing::error!(%err, events = kept.len(), "storing events failed");
            }
        }
        Err(Unstored { error, recorded }) => {
            tracing::error!(err = %error, events = recorded.len(), "storing events failed");
        }
    }
    // The idle flag is a count over all lanes: in the middle of a flood of output, where no
    // status changes, it is not counted again after every batch.
    if status_changed {
        service.events_stored().await;
    } else {
        service.wake_watchers();
    }
}
