//! How a daemon operation is implemented and run: [`Handle`] (one operation's body and its
//! action-log line), [`LaneArg`] (the lane an input names, from the contract's
//! `x-dispatch.lane_field`), and [`run_operation`], the one path every daemon call takes: the
//! attached-lane lock, the operation, the action log.
//!
//! See ADR 0011 for why operations are `Handle<Input>` impls rather than methods of one trait.

use std::future::Future;

use crate::error::DispatchError;
use crate::generated::api::Dispatch;
use crate::operation::{Intent, Operation, Request};

/// The lane an operation's input names, as its contract declares it (`x-dispatch.lane_field`).
/// Generated for every input type by [`Request::lane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneArg<'a> {
    /// A lane selector (ref, ref prefix, thread id, `@handle` or exact title).
    Selector(&'a str),
    /// The id of an approval request: the lane is the request's.
    Request(u64),
    /// The operation makes the lane itself (`new`): it is owned by construction.
    Created,
}

impl<'a> LaneArg<'a> {
    /// The selector, when the input names the lane by one.
    pub fn selector(self) -> Option<&'a str> {
        match self {
            LaneArg::Selector(selector) => Some(selector),
            LaneArg::Request(_) | LaneArg::Created => None,
        }
    }
}

/// What the action log says about a successful write: the lane it concerned (when the output
/// knows better than the input) and one line of detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The lane's ref; `None` lets the log use the lane the input named.
    pub lane: Option<String>,
    /// What happened, e.g. `message accepted, turn 019a...`.
    pub detail: String,
}

impl Logged {
    /// `detail` about the lane the input named.
    pub fn detail(detail: impl Into<String>) -> Logged {
        Logged {
            lane: None,
            detail: detail.into(),
        }
    }

    /// Nothing to record: the call changed nothing (`new`'s dry run). The action log is
    /// left as it was.
    pub fn nothing() -> Logged {
        Logged {
            lane: None,
            detail: String::new(),
        }
    }

    /// `detail` about lane `lane_ref`.
    pub fn lane(lane_ref: impl Into<String>, detail: impl Into<String>) -> Logged {
        Logged {
            lane: Some(lane_ref.into()),
            detail: detail.into(),
        }
    }
}

/// One entry for the action log, handed to [`Dispatch::record_write`].
#[derive(Debug)]
pub struct WriteRecord<'a> {
    /// The operation.
    pub op: &'static Operation,
    /// The lane it concerned, if known.
    pub lane: Option<String>,
    /// The detail line of a success, or the error.
    pub outcome: Result<String, &'a DispatchError>,
}

/// The implementation of the operation whose input is `R`: its body, and how the action log
/// words a success. The daemon implements it once per daemon operation, in the module that
/// owns the operation; the generated [`Dispatch`] trait requires every one of them.
pub trait Handle<R: Request>: Send + Sync {
    /// Runs the operation on its validated input.
    fn handle(&self, input: R) -> impl Future<Output = Result<R::Output, DispatchError>> + Send;

    /// The action-log line of a success (operations whose intent is write or destroy). The
    /// default is the operation's summary.
    fn logged(output: &R::Output) -> Logged {
        let _ = output;
        Logged::detail(R::OPERATION.summary)
    }
}

/// Model work admitted by [`Dispatch::model_work_begins`]; ends it when dropped, so that an
/// operation that returns early, fails or is cancelled cannot leave the daemon busy.
struct ModelWork<'a, D: Dispatch>(&'a D);

impl<D: Dispatch> Drop for ModelWork<'_, D> {
    fn drop(&mut self) {
        self.0.model_work_ends();
    }
}

/// Runs one daemon operation as every surface reaches it: for an operation that can start
/// model work (`Operation::starts_model_work`), admission ([`Dispatch::model_work_begins`],
/// held until the action log is written, so the daemon is not idle while it runs); for an
/// operation that writes history, the attached-lane lock on the lane its input names
/// ([`Dispatch::authorize_history_write`], the one place it is enforced); then the operation;
/// then, for a write or a destroy, the action log ([`Dispatch::record_write`], the one place
/// it is written).
pub async fn run_operation<D, R>(service: &D, input: R) -> Result<R::Output, DispatchError>
where
    D: Dispatch + Handle<R>,
    R: Request,
{
    let op = R::OPERATION;
    let _model_work = if op.starts_model_work {
        service.model_work_begins(op)?;
        Some(ModelWork(service))
    } else {
        None
    };
    let mut lane = None;
    if op.writes_history {
        let Some(arg) = input.lane() else {
            // The contract lint requires a `lane_field` of every such operation.
            return Err(DispatchError::internal(format!(
                "`{}` writes history but its contract names no lane",
                op.title
            )));
        };
        lane = service.authorize_history_write(op, arg).await?;
    }
    let named = lane.or_else(|| input.lane().and_then(LaneArg::selector).map(str::to_owned));
    let outcome = service.handle(input).await;
    if op.intent != Intent::Read {
        let record = match &outcome {
            Ok(output) => {
                let logged = <D as Handle<R>>::logged(output);
                // `Logged::nothing` (an empty detail): the call changed nothing.
                (!logged.detail.is_empty()).then(|| WriteRecord {
                    op,
                    lane: logged.lane.or(named),
                    outcome: Ok(logged.detail),
                })
            }
            Err(err) => Some(WriteRecord {
                op,
                // A partly done write names the lane it made or touched.
                lane: err.lane_ref().map(str::to_owned).or(named),
                outcome: Err(err),
            }),
        };
        if let Some(record) = record {
            service.record_write(record).await;
        }
    }
    outcome
}
