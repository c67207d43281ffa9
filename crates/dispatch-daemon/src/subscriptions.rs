//! Subscriptions: `subscribe`, `subscriptions`, `unsubscribe`, and what a subscription does
//! when its target's event happens ([`Service::fire`], called by orchestration while it
//! handles the lane event, so the effects are written in the transaction that consumes it).
//!
//! A subscription that fires leaves the subscriber a `subscription_update` inbox message and,
//! with turn delivery to a lane that can be written, a queued delivery whose text is the same
//! update: the target, what happened, the turn, and the target's last agent messages as they
//! stood when that turn ended. Everything that can be refused is refused at `subscribe`, and
//! nothing is stored then.

use dispatch_contract::types::{
    SubscribeInput, SubscribeOutput, Subscription, SubscriptionDelivery, SubscriptionEvent,
    SubscriptionsInput, SubscriptionsOutput, UnsubscribeInput, UnsubscribeOutput,
};
use dispatch_contract::{DispatchError, ErrorCode, Handle, Hint, Logged, operations};
use dispatch_registry::{
    DeliveryMode, DeliveryState, Effects, LaneEvent, LaneEventKind, LaneRow, NewDelivery,
    NewInboxMessage, NewSubscription, SubscriptionRow, TurnStatus,
};
use serde_json::json;

use crate::convert::{rfc3339, wire_name, write_lock};
use crate::service::Service;

/// Whether a subscription to `event` fires on `happened`.
pub(crate) fn matches(event: &str, happened: &LaneEvent) -> bool {
    use LaneEventKind::{Approval, TurnEnded, TurnStarted};
    matches!(
        (event, happened.kind, happened.status),
        (
            "done",
            TurnEnded,
            Some(TurnStatus::Completed | TurnStatus::Failed)
        ) | ("completed", TurnEnded, Some(TurnStatus::Completed))
            | ("failed", TurnEnded, Some(TurnStatus::Failed))
            | ("idle", TurnEnded, _)
            | ("approval", Approval, _)
            | ("activity", TurnStarted, _)
    )
}

/// What happened, in words: `finished a turn: completed`.
fn phrase(event: &LaneEvent) -> String {
    match event.kind {
        LaneEventKind::TurnStarted => "started a turn".to_owned(),
        LaneEventKind::TurnEnded => format!(
            "finished a turn: {}",
            event.status.map_or("ended", TurnStatus::as_str)
        ),
        LaneEventKind::Approval => "waits for an approval".to_owned(),
    }
}

/// The words of one subscription update, for the inbox and the subscriber's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Update {
    /// One line.
    pub subject: String,
    /// The update in full: what happened, the turn, the agent messages, the subscription.
    pub body: String,
}

/// The update `subscription` sends about `event` of `target`; `messages` are the target's last
/// agent messages (oldest first) and `asks` what a lane waiting for approval asks.
pub(crate) fn update(
    subscription: &SubscriptionRow,
    target: &LaneRow,
    event: &LaneEvent,
    messages: &[String],
    asks: &[String],
) -> Update {
    let title = target.title.as_deref().unwrap_or("untitled");
    let subject = format!("lane {} ({title}) {}", target.lane_ref, phrase(event));
    let mut body = format!("Lane {} ({title}) {}", target.lane_ref, phrase(event));
    if let Some(turn) = &event.turn_id {
        body.push_str(&format!(" (turn {turn})"));
    }
    body.push('.');
    for what in asks {
        body.push_str(&format!("\nIt asks to {what}."));
    }
    match messages {
        [] if subscription.tail > 0 => body.push_str("\nIt has written no agent message yet."),
        [] => {}
        [only] => body.push_str(&format!("\nIts last agent message:\n{only}")),
        several => {
            body.push_str(&format!(
                "\nIts last {} agent messages, oldest first:",
                several.len()
            ));
            for (n, text) in several.iter().enumerate() {
                body.push_str(&format!("\n--- message {} ---\n{text}", n + 1));
            }
        }
    }
    let ending = if subscription.once {
        "it fired once and has ended"
    } else {
        "it fires every time"
    };
    body.push_str(&format!(
        "\n(Subscription {} of lane {} to `{}` of lane {}: {ending}.)",
        subscription.id, subscription.subscriber_ref, subscription.event, target.lane_ref
    ));
    Update { subject, body }
}

/// A subscription as the operations show it.
fn shown(row: SubscriptionRow) -> Subscription {
    Subscription {
        id: row.id,
        target: row.target_ref,
        subscriber: row.subscriber_ref,
        when: match row.event.as_str() {
            "completed" => SubscriptionEvent::Completed,
            "failed" => SubscriptionEvent::Failed,
            "idle" => SubscriptionEvent::Idle,
            "approval" => SubscriptionEvent::Approval,
            "activity" => SubscriptionEvent::Activity,
            _ => SubscriptionEvent::Done,
        },
        delivery: if row.delivery == "inbox" {
            SubscriptionDelivery::Inbox
        } else {
            SubscriptionDelivery::Turn
        },
        tail: i64::from(row.tail),
        once: row.once,
        active: row.active,
        fired: row.fired,
        last_fired_at: row.last_fired_at_ms.map(rfc3339),
        created_at: rfc3339(row.created_at_ms),
    }
}

/// `subscribe`: every check first (the lanes, the lock, the loop), then one stored row.
impl Handle<SubscribeInput> for Service {
    async fn handle(&self, input: SubscribeInput) -> Result<SubscribeOutput, DispatchError> {
        if input.once && input.every_time {
            return Err(DispatchError::invalid_input(
                "`once` and `every_time` contradict each other: give one",
            ));
        }
        let target = self.resolve(&input.target).await?;
        let to = input.to.clone().unwrap_or_else(|| {
            dispatch_contract::types::Selector::try_from(crate::caller::SELF)
                .unwrap_or_else(|_| input.target.clone())
        });
        let subscriber = self
            .resolve_or_self(&to, input.caller.as_ref(), || {
                Hint::new("name the subscriber instead of `self`: {0}").run(
                    &operations::SUBSCRIBE,
                    json!({ "target": target.lane_ref, "to": "<lane>" }),
                )
            })
            .await?;
        let delivery = input.delivery.unwrap_or(SubscriptionDelivery::Turn);
        let when = input.when.unwrap_or(SubscriptionEvent::Done);
        let inbox_instead = |why: String| {
            DispatchError::invalid_input(why).with_hint(
                Hint::new("{0} delivers to the inbox only").run(
                    &operations::SUBSCRIBE,
                    json!({
                        "target": target.lane_ref,
                        "to": subscriber.lane_ref,
                        "when": wire_name(&when),
                        "delivery": "inbox",
                    }),
                ),
            )
        };
        if target.archived {
            return Err(DispatchError::new(
                ErrorCode::LaneArchived,
                format!(
                    "lane {} is archived: it runs no turns to hear about",
                    target.lane_ref
                ),
            )
            .with_hint(
                Hint::new("{0} brings it back")
                    .run(&operations::RESTORE, json!({ "target": target.lane_ref })),
            ));
        }
        if delivery == SubscriptionDelivery::Turn {
            if subscriber.lane_ref == target.lane_ref {
                return Err(inbox_instead(format!(
                    "lane {} cannot subscribe to itself with turn delivery: each of its turns \
                     would start the next",
                    target.lane_ref
                )));
            }
            if subscriber.archived {
                return Err(DispatchError::new(
                    ErrorCode::LaneArchived,
                    format!(
                        "lane {} is archived: it cannot take a subscription's turns",
                        subscriber.lane_ref
                    ),
                )
                .with_hint(Hint::new("{0} brings it back").run(
                    &operations::RESTORE,
                    json!({ "target": subscriber.lane_ref }),
                )));
            }
            if let Some(reason) = write_lock(&subscriber, self.allow_attached_writes()) {
                return Err(DispatchError::new(
                    ErrorCode::AttachedLaneWriteBlocked,
                    format!(
                        "turn delivery is refused to lane {}: {reason}",
                        subscriber.lane_ref
                    ),
                )
                .with_hint(Hint::new("{0} delivers to its inbox instead").run(
                    &operations::SUBSCRIBE,
                    json!({
                        "target": target.lane_ref,
                        "to": subscriber.lane_ref,
                        "when": wire_name(&when),
                        "delivery": "inbox",
                    }),
                )));
            }
        }
        let new = NewSubscription {
            target_ref: target.lane_ref.clone(),
            subscriber_ref: subscriber.lane_ref.clone(),
            event: wire_name(&when),
            delivery: wire_name(&delivery),
            tail: u32::try_from(input.tail).unwrap_or(0),
            once: !input.every_time,
        };
        let (row, existing) = self.registry().add_subscription(&new).await?;
        Ok(SubscribeOutput {
            subscription: shown(row),
            existing,
        })
    }

    fn logged(output: &SubscribeOutput) -> Logged {
        let s = &output.subscription;
        Logged::lane(
            s.target.clone(),
            format!(
                "subscription {} of lane {} to `{}` ({}{})",
                s.id,
                s.subscriber,
                wire_name(&s.when),
                wire_name(&s.delivery),
                if output.existing { ", existed" } else { "" }
            ),
        )
    }
}

/// `subscriptions`.
impl Handle<SubscriptionsInput> for Service {
    async fn handle(
        &self,
        input: SubscriptionsInput,
    ) -> Result<SubscriptionsOutput, DispatchError> {
        let target = match &input.target {
            Some(selector) => Some(self.resolve(selector).await?.lane_ref),
            None => None,
        };
        let subscriber = match &input.subscriber {
            Some(selector) => Some(
                self.resolve_or_self(selector, input.caller.as_ref(), || {
                    Hint::new("name the subscriber instead of `self`: {0}").run(
                        &operations::SUBSCRIPTIONS,
                        json!({ "subscriber": "<lane>" }),
                    )
                })
                .await?
                .lane_ref,
            ),
            None => None,
        };
        let rows = self
            .registry()
            .subscriptions(target.as_deref(), subscriber.as_deref(), input.all)
            .await?;
        Ok(SubscriptionsOutput {
            subscriptions: rows.into_iter().map(shown).collect(),
        })
    }
}

/// `unsubscribe`.
impl Handle<UnsubscribeInput> for Service {
    async fn handle(&self, input: UnsubscribeInput) -> Result<UnsubscribeOutput, DispatchError> {
        let id = i64::try_from(input.id.get()).unwrap_or(i64::MAX);
        let Some((row, was_active)) = self.registry().end_subscription(id).await? else {
            return Err(
                DispatchError::new(ErrorCode::NotFound, format!("no subscription {id}")).with_hint(
                    Hint::new("{0} lists them, ended ones too")
                        .run(&operations::SUBSCRIPTIONS, json!({ "all": true })),
                ),
            );
        };
        Ok(UnsubscribeOutput {
            subscription: shown(row),
            was_active,
        })
    }

    fn logged(output: &UnsubscribeOutput) -> Logged {
        let s = &output.subscription;
        Logged::lane(
            s.target.clone(),
            if output.was_active {
                format!("subscription {} ended", s.id)
            } else {
                format!("subscription {} had ended already", s.id)
            },
        )
    }
}

impl Service {
    /// Adds what `subscription` does about `event` of `target` to `effects`: the inbox message,
    /// the subscriber's queued turn (with turn delivery, when the subscriber can be written),
    /// and the count (ending a `once` subscription).
    pub(crate) async fn fire(
        &self,
        subscription: &SubscriptionRow,
        target: &LaneRow,
        event: &LaneEvent,
        effects: &mut Effects,
    ) -> Result<(), DispatchError> {
        // What the target had said when this turn ended, not what it said since.
        let messages = self
            .registry()
            .last_agent_messages(
                &target.lane_ref,
                subscription.tail,
                event.turn_id.as_deref(),
            )
            .await?;
        let asks: Vec<String> = if event.kind == LaneEventKind::Approval {
            self.registry()
                .pending_requests(Some(&target.lane_ref))
                .await?
                .iter()
                .map(|r| format!("{} (request {})", crate::inbox::asks(r), r.id))
                .collect()
        } else {
            Vec::new()
        };
        let update = update(subscription, target, event, &messages, &asks);
        effects.inbox.push(NewInboxMessage {
            lane_ref: Some(subscription.subscriber_ref.clone()),
            kind: "subscription_update".to_owned(),
            subject: update.subject,
            body: update.body.clone(),
            about_ref: Some(target.lane_ref.clone()),
            turn_id: event.turn_id.clone(),
            data: Some(json!({
                "subscription": subscription.id,
                "event": subscription.event,
                "status": event.status.map(TurnStatus::as_str),
                "messages": messages,
            })),
            origin: Some(format!(
                "subscription:{}:event:{}",
                subscription.id, event.id
            )),
        });
        if subscription.delivery == "turn" {
            // The lock is checked again: a lane archived since cannot take the turn, and then
            // hears about it in its inbox only.
            let writable = self
                .registry()
                .lane(&subscription.subscriber_ref)
                .await?
                .is_some_and(|subscriber| {
                    !subscriber.archived
                        && write_lock(&subscriber, self.allow_attached_writes()).is_none()
                });
            if writable {
                let id = dispatch_registry::receipt_id()
                    .map_err(|err| DispatchError::internal(err.to_string()))?;
                effects.deliveries.push(NewDelivery {
                    id,
                    lane_ref: subscription.subscriber_ref.clone(),
                    mode: DeliveryMode::Queue,
                    text: format!("[dispatch] {}", update.body),
                    source: format!("subscription:{}", subscription.id),
                    sender_ref: Some(target.lane_ref.clone()),
                    idempotency: None,
                    state: DeliveryState::Queued,
                    images: Vec::new(),
                });
            }
        }
        effects
            .fired_subscriptions
            .push((subscription.id, subscription.once));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(tail: u32, once: bool) -> SubscriptionRow {
        SubscriptionRow {
            id: 3,
            target_ref: "aaaaaa".into(),
            subscriber_ref: "bbbbbb".into(),
            event: "done".into(),
            delivery: "turn".into(),
            tail,
            once,
            active: true,
            fired: 0,
            last_fired_at_ms: None,
            created_at_ms: 0,
        }
    }

    fn target() -> LaneRow {
        LaneRow {
            title: Some("worker".into()),
            ..crate::test_rows::lane_row("aaaaaa", "thread-a")
        }
    }

    fn ended(status: TurnStatus) -> LaneEvent {
        LaneEvent {
            id: 7,
            lane_ref: "aaaaaa".into(),
            kind: LaneEventKind::TurnEnded,
            turn_id: Some("turn-1".into()),
            status: Some(status),
            at_ms: 0,
        }
    }

    #[test]
    fn events_map_to_what_subscribers_asked_for() {
        let started = LaneEvent {
            kind: LaneEventKind::TurnStarted,
            status: None,
            ..ended(TurnStatus::Completed)
        };
        let approval = LaneEvent {
            kind: LaneEventKind::Approval,
            status: None,
            ..ended(TurnStatus::Completed)
        };
        let completed = ended(TurnStatus::Completed);
        let failed = ended(TurnStatus::Failed);
        let interrupted = ended(TurnStatus::Interrupted);
        let table = [
            ("done", [true, true, false, false, false]),
            ("completed", [true, false, false, false, false]),
            ("failed", [false, true, false, false, false]),
            ("idle", [true, true, true, false, false]),
            ("approval", [false, false, false, true, false]),
            ("activity", [false, false, false, false, true]),
        ];
        for (when, expected) in table {
            let got = [&completed, &failed, &interrupted, &approval, &started]
                .map(|event| matches(when, event));
            assert_eq!(got, expected, "`{when}`");
        }
    }

    #[test]
    fn one_message_is_quoted_whole_and_the_subscription_says_it_ended() {
        let message = "line one\nline two";
        let update = update(
            &subscription(1, true),
            &target(),
            &ended(TurnStatus::Completed),
            &[message.to_owned()],
            &[],
        );
        assert_eq!(
            update.subject,
            "lane aaaaaa (worker) finished a turn: completed"
        );
        assert_eq!(
            update.body,
            "Lane aaaaaa (worker) finished a turn: completed (turn turn-1).\nIts last agent \
             message:\nline one\nline two\n(Subscription 3 of lane bbbbbb to `done` of lane \
             aaaaaa: it fired once and has ended.)"
        );
    }

    #[test]
    fn several_messages_are_numbered_oldest_first() {
        let update = update(
            &subscription(2, false),
            &target(),
            &ended(TurnStatus::Failed),
            &["first".to_owned(), "second".to_owned()],
            &[],
        );
        assert!(
            update.body.contains(
                "Its last 2 agent messages, oldest first:\n--- message 1 ---\nfirst\n--- \
                 message 2 ---\nsecond"
            ),
            "{}",
            update.body
        );
        assert!(
            update.body.ends_with("it fires every time.)"),
            "{}",
            update.body
        );
    }

    #[test]
    fn a_tail_with_nothing_to_show_says_so_and_a_zero_tail_says_nothing() {
        let event = ended(TurnStatus::Completed);
        let none = update(&subscription(1, true), &target(), &event, &[], &[]);
        assert!(
            none.body.contains("It has written no agent message yet."),
            "{}",
            none.body
        );
        let zero = update(&subscription(0, true), &target(), &event, &[], &[]);
        assert!(!zero.body.contains("agent message"), "{}", zero.body);
    }
}
