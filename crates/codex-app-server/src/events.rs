//! Fan-out of what the App Server sends unasked: notifications and server requests.
//!
//! Every event goes to all global subscribers ([`crate::AppServer::subscribe`]) and, when
//! it names a thread (`threadId` in its params, or `thread.id`), to that thread's
//! subscribers ([`crate::AppServer::subscribe_thread`]). A subscription sees the events
//! published after it was created, in the order the App Server sent them.
//!
//! **Lag policy.** Each ordinary subscription is a bounded ring (capacity
//! [`crate::SpawnOptions::event_capacity`], 8192 by default). The reader never waits for
//! such a subscriber: one that falls more than the capacity behind loses the oldest events
//! and then receives [`Event::Lagged`] with how many it missed, after which it should
//! reconcile (e.g. `thread/read`) instead of trusting its picture of the thread.
//! Server requests are not lost by lagging: they stay pending in the client
//! ([`crate::AppServer::pending_server_requests`]) until answered.
//!
//! A *lossless* subscription ([`crate::AppServer::subscribe_lossless`]) is a queue instead:
//! nothing is ever dropped, and each notification comes with its params as the App Server
//! sent them ([`Subscription::recv_raw`]), so that a consumer storing them need not encode
//! them again. Its memory is bounded by back-pressure: once [`LOSSLESS_HIGH`] events are
//! queued, the reader stops reading stdout until the subscriber is down to half of that. A
//! subscriber that receives nothing for [`LOSSLESS_STALL`] (busy with something else) is not
//! waited for again until it receives: the reader never blocks on it for longer.
//!
//! When the connection closes, subscriptions drain what they already hold and then
//! [`Subscription::recv`] returns `None`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc};

use crate::protocol::ServerNotification;
use crate::server_request::ServerRequest;

/// std's map with foldhash, seeded per map, cheaper than SipHash on the thread id every
/// notification is looked up by.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

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
    /// A queue: nothing is ever lost; the reader waits while it is long (see the module docs).
    Queue(mpsc::UnboundedReceiver<Delivery>, Arc<Gauge>),
}

/// What a lossless subscription queues: the event and, for a notification, its params as the
/// App Server sent them (JSON text; `None` when absent), shared so that a consumer can store
/// them without copying them again.
type Delivery = (Event, Option<Arc<str>>);

/// Events queued in a lossless subscription above which the reader waits for it.
pub const LOSSLESS_HIGH: usize = 8192;
/// How long the reader waits for a lossless subscriber that receives nothing.
pub const LOSSLESS_STALL: Duration = Duration::from_millis(250);

/// The length of a lossless queue, shared by its sender and its receiver.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    queued: AtomicUsize,
    /// Set when the reader gave up waiting; cleared by the next receive.
    stalled: AtomicBool,
    drained: Notify,
}

impl Gauge {
    fn received(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        self.stalled.store(false, Ordering::Release);
        if before <= LOSSLESS_HIGH / 2 + 1 {
            self.drained.notify_waiters();
        }
    }

    fn over(&self) -> bool {
        self.queued.load(Ordering::Acquire) > LOSSLESS_HIGH && !self.stalled.load(Ordering::Acquire)
    }

    /// Waits until the queue is down to half of [`LOSSLESS_HIGH`], or until its subscriber
    /// has received nothing for [`LOSSLESS_STALL`] (then it is not waited for again until it
    /// receives).
    pub(crate) async fn wait_drained(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let queued = self.queued.load(Ordering::Acquire);
            if queued <= LOSSLESS_HIGH / 2 || self.stalled.load(Ordering::Acquire) {
                return;
            }
            if tokio::time::timeout(LOSSLESS_STALL, drained).await.is_err()
                && self.queued.load(Ordering::Acquire) >= queued
            {
                self.stalled.store(true, Ordering::Release);
                return;
            }
        }
    }
}

impl Subscription {
    /// The next event; `None` once the connection is closed and everything was received.
    pub async fn recv(&mut self) -> Option<Event> {
        self.recv_raw().await.map(|(event, _)| event)
    }

    /// The next event if one is ready (without waiting).
    pub fn try_recv(&mut self) -> Option<Event> {
        self.try_recv_raw().map(|(event, _)| event)
    }

    /// Whether no event is ready right now.
    pub fn is_empty(&self) -> bool {
        match &self.rx {
            Receiver::Ring(rx) => rx.is_empty(),
            Receiver::Queue(rx, _) => rx.is_empty(),
        }
    }

    /// [`Subscription::recv`], with a notification's params as the App Server sent them
    /// (lossless subscriptions only; `None` otherwise and for other events).
    pub async fn recv_raw(&mut self) -> Option<(Event, Option<Arc<str>>)> {
        match &mut self.rx {
            Receiver::Ring(rx) => match rx.recv().await {
                Ok(event) => Some((event, None)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((Event::Lagged { missed }, None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Receiver::Queue(rx, gauge) => {
                let delivery = rx.recv().await;
                if delivery.is_some() {
                    gauge.received();
                }
                delivery
            }
        }
    }

    /// [`Subscription::try_recv`] with the params text, as [`Subscription::recv_raw`].
    pub fn try_recv_raw(&mut self) -> Option<(Event, Option<Arc<str>>)> {
        match &mut self.rx {
            Receiver::Ring(rx) => match rx.try_recv() {
                Ok(event) => Some((event, None)),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    Some((Event::Lagged { missed }, None))
                }
                Err(_) => None,
            },
            Receiver::Queue(rx, gauge) => {
                let delivery = rx.try_recv().ok();
                if delivery.is_some() {
                    gauge.received();
                }
                delivery
            }
        }
    }
}

/// The subscriber registry.
pub(crate) struct Fanout {
    capacity: usize,
    all: Option<broadcast::Sender<Event>>,
    threads: HashMap<String, broadcast::Sender<Event>>,
    lossless: Vec<(mpsc::UnboundedSender<Delivery>, Arc<Gauge>)>,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            all: Some(broadcast::channel(capacity).0),
            threads: HashMap::default(),
            lossless: Vec::new(),
        }
    }

    pub(crate) fn subscribe_lossless(&mut self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauge = Arc::new(Gauge::default());
        if self.all.is_some() {
            self.lossless.push((tx, gauge.clone()));
        }
        Subscription {
            rx: Receiver::Queue(rx, gauge),
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

    /// Publishes `event`; `raw_params` goes to the lossless subscriptions with it. Returns
    /// the gauges of the lossless queues the reader should now wait for
    /// ([`Gauge::wait_drained`]).
    pub(crate) fn publish(&mut self, event: Event, raw_params: Option<&str>) -> Vec<Arc<Gauge>> {
        let Some(all) = &self.all else {
            return Vec::new();
        };
        // Nobody subscribes to a thread (the usual case): no thread id to hash.
        if !self.threads.is_empty()
            && let Some(thread_id) = event.thread_id()
            && let Some(tx) = self.threads.get(thread_id)
        {
            if tx.receiver_count() == 0 {
                self.threads.remove(thread_id);
            } else {
                let _ = tx.send(event.clone());
            }
        }
        let mut full = Vec::new();
        // One copy of the text, shared by every lossless subscription.
        let raw_params: Option<Arc<str>> = raw_params
            .filter(|_| !self.lossless.is_empty())
            .map(Arc::from);
        self.lossless.retain(|(tx, gauge)| {
            gauge.queued.fetch_add(1, Ordering::AcqRel);
            if tx.send((event.clone(), raw_params.clone())).is_err() {
                return false;
            }
            if gauge.over() {
                full.push(gauge.clone());
            }
            true
        });
        // No receivers is not an error: nobody is listening right now.
        let _ = all.send(event);
        full
    }

    /// Whether anyone takes the params text (a lossless subscription).
    pub(crate) fn wants_raw(&self) -> bool {
        !self.lossless.is_empty()
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
            fanout.publish(note(&format!("m{i}"), "t1"), None);
        }
        fanout.close();
        let mut seen = 0;
        while let Some(event) = lossless.recv().await {
            assert_eq!(event.method(), Some(format!("m{seen}").as_str()));
            seen += 1;
        }
        assert_eq!(seen, 100);
    }

    /// Every lossless subscription gets the same shared params text: one copy per message,
    /// however many subscribe.
    #[tokio::test]
    async fn lossless_subscriptions_share_one_params_text() {
        let mut fanout = Fanout::new(2);
        let mut first = fanout.subscribe_lossless();
        let mut second = fanout.subscribe_lossless();
        fanout.publish(note("a", "t1"), Some(r#"{"threadId": "t1"}"#));
        let (_, one) = first.recv_raw().await.expect("an event");
        let (_, other) = second.recv_raw().await.expect("an event");
        let (Some(one), Some(other)) = (one, other) else {
            panic!("both carry the params text")
        };
        assert_eq!(&*one, r#"{"threadId": "t1"}"#);
        assert!(Arc::ptr_eq(&one, &other), "one copy, shared");
    }

    #[tokio::test]
    async fn a_lossless_subscription_carries_the_params_text() {
        let mut fanout = Fanout::new(2);
        let mut lossless = fanout.subscribe_lossless();
        let mut ring = fanout.subscribe_all();
        assert!(fanout.wants_raw());
        fanout.publish(note("a", "t1"), Some(r#"{"threadId": "t1"}"#));
        let (event, raw) = lossless.recv_raw().await.expect("an event");
        assert_eq!(event.method(), Some("a"));
        assert_eq!(raw.as_deref(), Some(r#"{"threadId": "t1"}"#));
        let (_, raw) = ring.recv_raw().await.expect("an event");
        assert_eq!(raw, None);
        assert!(lossless.is_empty());
    }

    #[tokio::test]
    async fn the_reader_waits_for_a_long_lossless_queue_until_it_drains() {
        let mut fanout = Fanout::new(8);
        let mut lossless = fanout.subscribe_lossless();
        let mut gauges = Vec::new();
        for i in 0..=LOSSLESS_HIGH {
            gauges = fanout.publish(note(&format!("m{i}"), "t1"), Some("{}"));
            if i < LOSSLESS_HIGH {
                assert!(gauges.is_empty(), "asked to wait after {i} events");
            }
        }
        assert_eq!(gauges.len(), 1, "a queue over the mark is waited for");
        let consumer = tokio::spawn(async move {
            let mut seen = 0;
            while let Some(event) = lossless.recv().await {
                assert_eq!(event.method(), Some(format!("m{seen}").as_str()));
                seen += 1;
            }
            seen
        });
        tokio::time::timeout(Duration::from_secs(30), gauges[0].wait_drained())
            .await
            .expect("the wait ends once the subscriber drains");
        fanout.close();
        assert_eq!(consumer.await.expect("consumer"), LOSSLESS_HIGH + 1);
    }

    #[tokio::test]
    async fn a_lossless_subscriber_that_receives_nothing_is_not_waited_for_again() {
        let mut fanout = Fanout::new(8);
        let mut lossless = fanout.subscribe_lossless();
        let mut gauges = Vec::new();
        for i in 0..=LOSSLESS_HIGH {
            gauges = fanout.publish(note(&format!("m{i}"), "t1"), None);
        }
        let gauge = gauges.pop().expect("a queue over the mark");
        tokio::time::timeout(Duration::from_secs(30), gauge.wait_drained())
            .await
            .expect("the wait gives up on a stalled subscriber");
        assert!(
            fanout.publish(note("next", "t1"), None).is_empty(),
            "a stalled subscriber is not waited for"
        );
        // Once it receives again, it is waited for again; nothing was lost meanwhile.
        assert_eq!(
            lossless
                .recv()
                .await
                .and_then(|e| e.method().map(str::to_owned)),
            Some("m0".to_owned())
        );
        assert_eq!(fanout.publish(note("last", "t1"), None).len(), 1);
        fanout.close();
        let mut rest = 0;
        while lossless.recv().await.is_some() {
            rest += 1;
        }
        assert_eq!(rest, LOSSLESS_HIGH + 2);
    }

    #[tokio::test]
    async fn routes_by_thread_and_reports_lag() {
        let mut fanout = Fanout::new(2);
        let mut all = fanout.subscribe_all();
        let mut t1 = fanout.subscribe_thread("t1");
        fanout.publish(note("a", "t1"), None);
        fanout.publish(note("b", "t2"), None);
        fanout.publish(note("c", "t1"), None);
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
        fanout.publish(note("a", "t1"), None);
        assert!(fanout.threads.is_empty());
    }
}
