//! Admission at accept time: open TCP connections per address and in all, counted from accept
//! (before a single request byte is read) to close, so that sockets which never send a request
//! cannot use up the file descriptors that other players' logins and chats need.
//!
//! A connection's place is held by its [`Counted`] stream, which hyper keeps for the whole
//! connection and hands on to the WebSocket after an upgrade: the place is given back exactly
//! when the socket is closed.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::guard::{ConnectionCounter, ConnectionSlot, limit_key};
use crate::metrics::Limit;

/// File descriptors kept free below the open-file limit at least (listener, Redis, key and guest
/// files, the runtime's own, and the socket being accepted and refused).
pub const MIN_HEADROOM: u64 = 64;

/// Counts open TCP connections per address and in all, and refuses past either maximum.
pub struct AcceptLimits {
    /// Per address (IPv6 per /64); `None` when not applied (behind a proxy).
    per_ip: Option<Arc<ConnectionCounter<IpAddr>>>,
    /// Every connection, under one key.
    all: Arc<ConnectionCounter<()>>,
    /// `chat_tcp_connections`.
    open: Gauge,
}

/// The place of one open TCP connection; given back when dropped.
pub struct TcpSlot {
    _per_ip: Option<ConnectionSlot<IpAddr>>,
    _all: ConnectionSlot<()>,
    open: Gauge,
}

impl AcceptLimits {
    /// At most `per_ip` connections per address (0 or `None`: no limit per address) and
    /// `max_open` in all; `open` counts the connections open now.
    pub fn new(per_ip: Option<u32>, max_open: u32, open: Gauge) -> Self {
        Self {
            per_ip: per_ip.filter(|&max| max != 0).map(ConnectionCounter::new),
            all: ConnectionCounter::new(max_open.max(1)),
            open,
        }
    }

    /// A place for a connection from `peer`, or the limit that refuses it.
    pub fn admit(&self, peer: IpAddr) -> Result<TcpSlot, Limit> {
        let per_ip = match &self.per_ip {
            Some(counter) => Some(
                counter
                    .try_acquire(limit_key(peer))
                    .ok_or(Limit::TcpConnectionsPerIp)?,
            ),
            None => None,
        };
        let all = self.all.try_acquire(()).ok_or(Limit::OpenConnections)?;
        self.open.inc();
        Ok(TcpSlot {
            _per_ip: per_ip,
            _all: all,
            open: self.open.clone(),
        })
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A stream that holds its connection's [`TcpSlot`] for as long as it lives.
pub struct Counted<S> {
    inner: S,
    _slot: TcpSlot,
}

impl<S> Counted<S> {
    /// `inner`, holding `slot` until dropped.
    pub fn new(inner: S, slot: TcpSlot) -> Self {
        Self { inner, _slot: slot }
    }

    /// The stream and its place, apart (a WebSocket keeps both after the upgrade).
    pub fn into_parts(self) -> (S, TcpSlot) {
        (self.inner, self._slot)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The most connections the open-file limit `soft` leaves room for: `soft` less
/// [`MIN_HEADROOM`] or a tenth, whichever is more (at least 1).
pub fn connection_budget(soft: u64) -> u32 {
    let headroom = MIN_HEADROOM.max(soft / 10);
    u32::try_from(soft.saturating_sub(headroom))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The cap on open connections: `configured`, or the budget of the open-file limit `soft`
/// (`None`: unknown, then `configured` or no practical cap). A configured value above the
/// budget is lowered to it with a warning: past it, accepting would fail for everyone.
pub fn open_connection_cap(configured: Option<u32>, soft: Option<u64>) -> u32 {
    let budget = soft.map(connection_budget);
    match (configured, budget) {
        (Some(wanted), Some(budget)) if wanted > budget => {
            tracing::warn!(
                wanted,
                budget,
                open_file_limit = soft,
                "--max-open-connections is above what the open-file limit leaves room for; \
                 lowered (raise the limit, e.g. `ulimit -n` or LimitNOFILE=, to allow more)"
            );
            budget
        }
        (Some(wanted), _) => wanted,
        (None, Some(budget)) => budget,
        (None, None) => u32::MAX,
    }
}

/// Raises the soft open-file limit to the hard one, as servers commonly do at start; the soft
/// limit in force afterwards (`None` where there is no such limit or it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let (soft, hard) = match rlimit::Resource::NOFILE.get() {
            Ok(limits) => limits,
            Err(error) => {
                tracing::warn!(%error, "cannot read the open-file limit");
                return None;
            }
        };
        if soft < hard {
            match rlimit::increase_nofile_limit(hard) {
                Ok(raised) => {
                    tracing::info!(from = soft, to = raised, "raised the open-file limit");
                    return Some(raised);
                }
                Err(error) => {
                    tracing::warn!(%error, soft, hard, "cannot raise the open-file limit")
                }
            }
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The soft open-file limit in force (`None` where there is none or it cannot be read).
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_headroom_below_the_file_limit() {
        assert_eq!(connection_budget(256), 192, "64 below a small limit");
        assert_eq!(connection_budget(1024), 922, "a tenth below a larger one");
        assert_eq!(connection_budget(20_000), 18_000);
        assert_eq!(connection_budget(10), 1, "never zero");
        assert_eq!(connection_budget(u64::MAX), u32::MAX);
        assert_eq!(open_connection_cap(None, Some(1024)), 922);
        assert_eq!(open_connection_cap(Some(100), Some(1024)), 100);
        assert_eq!(open_connection_cap(Some(5_000), Some(1024)), 922, "lowered");
        assert_eq!(open_connection_cap(Some(5_000), None), 5_000);
        assert_eq!(open_connection_cap(None, None), u32::MAX);
    }

    #[test]
    fn places_are_counted_per_address_and_in_all_and_given_back() {
        let open = Gauge::default();
        let limits = AcceptLimits::new(Some(2), 3, open.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Limit::TcpConnectionsPerIp));
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Limit::OpenConnections));
        assert_eq!(open.get(), 3);
        drop(a1);
        assert_eq!(open.get(), 2);
        assert!(
            limits.admit(b).is_ok(),
            "a closed connection gives its place back"
        );
        assert_eq!(
            open.get(),
            2,
            "the refused and the dropped ones are not open"
        );

        let unlimited_per_ip = AcceptLimits::new(None, 10, Gauge::default());
        let held: Vec<_> = (0..10)
            .map(|_| unlimited_per_ip.admit(a).unwrap())
            .collect();
        assert_eq!(
            unlimited_per_ip.admit(b).err(),
            Some(Limit::OpenConnections)
        );
        drop(held);
    }
}
