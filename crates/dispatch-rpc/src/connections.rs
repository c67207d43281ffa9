//! The daemon's open connections: a table of them (for the cap and eviction), what each is
//! doing (calls in flight, last activity), the sweeper that closes idle and half-open ones,
//! and the socket wrapper through which a connection is closed from outside.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::Notify;

use crate::listener::Limits;

/// One served connection, as the accept loop, the sweeper and its RPC middleware see it.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    /// Calls in flight.
    in_flight: AtomicUsize,
    /// Calls started so far.
    calls: AtomicU64,
    /// When a call last started or ended (or the connection opened), in ms since the table's
    /// epoch.
    active_ms: AtomicU64,
    /// Set to make the connection end: reads see end-of-file, writes fail.
    closing: AtomicBool,
    /// Whoever last waited to read from the connection.
    reader: Mutex<Option<Waker>>,
    epoch: Instant,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.active_ms.store(self.now_ms(), Ordering::Release);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn is_idle(&self) -> bool {
        !self.is_closing() && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Ends the connection: wakes its reader, which then sees end-of-file.
    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let waker = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn register_reader(&self, waker: &Waker) {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if !reader.as_ref().is_some_and(|known| known.will_wake(waker)) {
            *reader = Some(waker.clone());
        }
    }
}

/// Marks a call in flight on its connection for as long as it lives.
pub(crate) struct InFlight(Arc<Conn>);

impl InFlight {
    pub(crate) fn start(conn: &Arc<Conn>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.calls.fetch_add(1, Ordering::AcqRel);
        conn.touch();
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
#[derive(Debug)]
pub(crate) struct Table {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: Instant,
    pub(crate) limits: Limits,
    /// Signalled when a connection opens (wakes the sweeper) or closes (wakes shutdown).
    changed: Notify,
}

impl Table {
    pub(crate) fn new(limits: Limits) -> Table {
        Table {
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            limits,
            changed: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            active_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            reader: Mutex::new(None),
            epoch: self.epoch,
        });
        conn.touch();
        self.lock().insert(conn.id, Arc::clone(&conn));
        self.changed.notify_waiters();
        self.changed.notify_one();
        conn
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.changed.notify_waiters();
    }

    /// Connections served and not being closed.
    pub(crate) fn open(&self) -> usize {
        self.lock().values().filter(|c| !c.is_closing()).count()
    }

    /// Closes the oldest connection with no call in flight; whether there was one.
    pub(crate) fn close_oldest_idle(&self) -> bool {
        let conns = self.lock();
        match conns.values().find(|c| c.is_idle()) {
            Some(conn) => {
                conn.close();
                true
            }
            None => false,
        }
    }

    pub(crate) fn close_idle(&self) {
        self.lock()
            .values()
            .filter(|c| c.is_idle())
            .for_each(|c| c.close());
    }

    pub(crate) fn close_all(&self) {
        self.lock().values().for_each(|c| c.close());
    }

    /// Closes every connection that has been idle too long; how long until the next one might.
    pub(crate) fn close_expired(&self) -> Duration {
        let limits = self.limits;
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        for conn in self.lock().values().filter(|c| c.is_idle()) {
            let allowed = if conn.calls.load(Ordering::Acquire) == 0 {
                limits.handshake_timeout
            } else {
                limits.idle_timeout
            };
            let allowed = u64::try_from(allowed.as_millis()).unwrap_or(u64::MAX);
            if now.saturating_sub(conn.active_ms.load(Ordering::Acquire)) >= allowed {
                conn.close();
            }
        }
        limits.handshake_timeout.min(limits.idle_timeout) / 5
    }

    /// Waits until no connection is left, at most `timeout`; whether none is.
    pub(crate) async fn wait_empty(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                if self.lock().is_empty() {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Closes idle connections; sleeps while there are none.
pub(crate) async fn sweep(table: Arc<Table>) {
    loop {
        if table.lock().is_empty() {
            table.changed.notified().await;
            continue;
        }
        let pause = table.close_expired();
        tokio::time::sleep(pause).await;
    }
}

/// The socket of one connection, which its [`Conn`] can end from outside: once it is
/// closing, reads see end-of-file and writes fail, so hyper and the WebSocket task wind down
/// on their own. Dropping it removes the connection from the table.
pub(crate) struct Guarded {
    stream: UnixStream,
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl Guarded {
    /// Serves `stream` as a new connection of `table`.
    pub(crate) fn new(stream: UnixStream, table: &Arc<Table>) -> Guarded {
        Guarded {
            stream,
            conn: table.insert(),
            table: Arc::clone(table),
        }
    }

    /// What the connection is doing.
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.table.remove(self.conn.id);
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the daemon closed the connection",
    )
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.register_reader(cx.waker());
        if this.conn.is_closing() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.is_closing() {
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.is_closing() {
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
