//! Fan-out of what the App Server sends unasked: notifications and server requests.
//!
//! Every event goes to all global subscribers ([`crate::AppServer::subscribe`]) and, when
//! it names a thread (`threadId` in its params, or `thread.id`), to that thread's
//! subscribers ([`crate::AppServer::subscribe_thread`]). A subscription sees the events
//! published after it was created, in the order the App Server sent them.
//!
//! **Lag policy.** Each subscription is a bounded ring (capacity
//! [`crate::SpawnOptions::event_capacity`], 8192 by default). The reader never waits for
//! a subscriber: one that falls more than the capacity behind loses the oldest events
//! and then receives [`Event::Lagged`] with how many it missed, after which it should
//! reconcile (e.g. `thread/read`) instead of trusting its picture of the thread.
//! Server requests are not lost by lagging: they stay pending in the client
//! ([`crate::AppServer::pending_server_requests`]) until answered.
//!
//! When the connection closes, subscriptions drain what they already hold and then
//! [`Subscription::recv`] returns `None`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::protocol::ServerNotification;
use crate::server_request::ServerRequest;

/// One thing the App Server sent unasked.
#[derive(Debug, Clone)]
pub enum Event {
    /// A notification (unknown methods included, as [`ServerNotification::Other`]).
    Notification(Arc<ServerNotification>),
    /// A server request (e.g. an approval). It is also handed to the policy and stays
    /// pending until answered; see [`crate::AppServer::respond`].
    ServerRequest(Arc<ServerRequest>),
    /// This subscription fell behind and `missed` events were dropped for it.
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
}

impl Event {
    /// The notification, if this is one.
    pub fn notification(&self) -> Option<&ServerNotification> {
        match self {
            Self::Notification(n) => Some(n),
            _ => None,
        }
    }

    /// The method of the notification or server request.
    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Notification(n) => Some(n.method()),
            Self::ServerRequest(r) => Some(&r.method),
            Self::Lagged { .. } => None,
        }
    }

    /// The thread the event is about, if any.
    pub fn thread_id(&self) -> Option<&str> {
        match self {
            Self::Notification(n) => n.thread_id(),
            Self::ServerRequest(r) => r.thread_id(),
            Self::Lagged { .. } => None,
        }
    }
}

/// A stream of [`Event`]s; see the module docs for ordering and lag.
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver,
}

#[derive(Debug)]
enum Receiver {
    /// A bounded ring: a slow subscriber loses the oldest events and is told so.
    Ring(broadcast::Receiver<Event>),
    /// An unbounded queue: nothing is ever lost; the queue grows while the subscriber lags.
    Queue(mpsc::UnboundedReceiver<Event>),
}

impl Subscription {
    /// The next event; `None` once the connection is closed and everything was received.
    pub async fn recv(&mut self) -> Option<Event> {
        match &mut self.rx {
            Receiver::Ring(rx) => match rx.recv().await {
                Ok(event) => Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Receiver::Queue(rx) => rx.recv().await,
        }
    }

    /// The next event if one is ready (without waiting).
    pub fn try_recv(&mut self) -> Option<Event> {
        match &mut self.rx {
            Receiver::Ring(rx) => match rx.try_recv() {
                Ok(event) => Some(event),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    Some(Event::Lagged { missed })
                }
                Err(_) => None,
            },
            Receiver::Queue(rx) => rx.try_recv().ok(),
        }
    }
}

/// The subscriber registry.
pub(crate) struct Fanout {
    capacity: usize,
    all: Option<broadcast::Sender<Event>>,
    threads: HashMap<String, broadcast::Sender<Event>>,
    lossless: Vec<mpsc::UnboundedSender<Event>>,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            all: Some(broadcast::channel(capacity).0),
            threads: HashMap::new(),
            lossless: Vec::new(),
        }
    }

    pub(crate) fn subscribe_lossless(&mut self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.all.is_some() {
            self.lossless.push(tx);
        }
        Subscription {
            rx: Receiver::Queue(rx),
        }
    }

    pub(crate) fn subscribe_all(&self) -> Subscription {
        match &self.all {
            Some(tx) => Subscription {
                rx: Receiver::Ring(tx.subscribe()),
            },
            None => closed_subscription(),
        }
    }

    pub(crate) fn subscribe_thread(&mut self, thread_id: &str) -> Subscription {
        if self.all.is_none() {
            return closed_subscription();
        }
        self.threads.retain(|_, tx| tx.receiver_count() > 0);
        let capacity = self.capacity;
        let tx = self
            .threads
            .entry(thread_id.to_owned())
            .or_insert_with(|| broadcast::channel(capacity).0);
        Subscription {
            rx: Receiver::Ring(tx.subscribe()),
        }
    }

    pub(crate) fn publish(&mut self, event: Event) {
        let Some(all) = &self.all else { return };
        if let Some(thread_id) = event.thread_id()
            && let Some(tx) = self.threads.get(thread_id)
        {
            if tx.receiver_count() == 0 {
                self.threads.remove(thread_id);
            } else {
                let _ = tx.send(event.clone());
            }
        }
        self.lossless.retain(|tx| tx.send(event.clone()).is_ok());
        // No receivers is not an error: nobody is listening right now.
        let _ = all.send(event);
    }

    /// Drop every sender: subscriptions end after draining.
    pub(crate) fn close(&mut self) {
        self.all = None;
        self.threads.clear();
        self.lossless.clear();
    }
}

fn closed_subscription() -> Subscription {
    let (tx, rx) = broadcast::channel(1);
    drop(tx);
    Subscription {
        rx: Receiver::Ring(rx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn note(method: &str, thread: &str) -> Event {
        Event::Notification(Arc::new(ServerNotification::from_parts(
            method.into(),
            json!({ "threadId": thread }),
        )))
    }

    #[tokio::test]
    async fn a_lossless_subscription_keeps_everything() {
        let mut fanout = Fanout::new(2);
        let mut lossless = fanout.subscribe_lossless();
        for i in 0..100 {
            fanout.publish(note(&format!("m{i}"), "t1"));
        }
        fanout.close();
        let mut seen = 0;
        while let Some(event) = lossless.recv().await {
            assert_eq!(event.method(), Some(format!("m{seen}").as_str()));
            seen += 1;
        }
        assert_eq!(seen, 100);
    }

    #[tokio::test]
    async fn routes_by_thread_and_reports_lag() {
        let mut fanout = Fanout::new(2);
        let mut all = fanout.subscribe_all();
        let mut t1 = fanout.subscribe_thread("t1");
        fanout.publish(note("a", "t1"));
        fanout.publish(note("b", "t2"));
        fanout.publish(note("c", "t1"));
        assert_eq!(
            t1.recv()
                .await
                .and_then(|e| e.method().map(str::to_owned))
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            t1.recv()
                .await
                .and_then(|e| e.method().map(str::to_owned))
                .as_deref(),
            Some("c")
        );
        // `all` holds 2 of 3: it lost one.
        assert!(matches!(
            all.recv().await,
            Some(Event::Lagged { missed: 1 })
        ));
        assert_eq!(
            all.recv()
                .await
                .and_then(|e| e.method().map(str::to_owned))
                .as_deref(),
            Some("b")
        );
        fanout.close();
        assert_eq!(
            all.recv()
                .await
                .and_then(|e| e.method().map(str::to_owned))
                .as_deref(),
            Some("c")
        );
        assert!(all.recv().await.is_none());
        assert!(t1.recv().await.is_none());
        assert!(fanout.subscribe_all().recv().await.is_none());
    }

    #[tokio::test]
    async fn forgets_threads_without_subscribers() {
        let mut fanout = Fanout::new(4);
        drop(fanout.subscribe_thread("t1"));
        fanout.publish(note("a", "t1"));
        assert!(fanout.threads.is_empty());
    }
}
