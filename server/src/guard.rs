//! Abuse limits in front of the chat: connections per IP and per user, guest logins per IP,
//! the browser origin allow list, and which address a request comes from.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::HeaderMap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::config::{Access, Limits};

/// Admin API requests per second from one address, sustained (a console open in a few tabs
/// stays far below it; a script guessing tokens does not).
pub const ADMIN_PER_SECOND: NonZeroU32 = NonZeroU32::new(20).unwrap();

/// Admin API requests one address may make in a burst.
pub const ADMIN_BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();

/// Distinct addresses remembered by the login limiter before idle ones are dropped.
const LOGIN_KEYS_KEPT: usize = 10_000;
/// Least time between two clean-ups of the login limiter.
const LOGIN_CLEANUP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The address limits count: IPv4 as is (also when written as IPv4-mapped IPv6), IPv6 by its
/// /64 network (one host usually holds a whole /64 and could rotate through it).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:443`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// `Retry-After` seconds for a wait: rounded up (a client waiting exactly that long must not be
/// refused again), at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let whole = wait.as_secs();
    let rounded = if wait.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded.max(1)
}

/// Counts open connections per key and refuses past a maximum.
#[derive(Debug)]
pub struct ConnectionCounter<K: Eq + Hash> {
    open: Mutex<HashMap<K, u32>>,
    max: u32,
}

/// One counted connection; gives its place back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot<K: Eq + Hash + Clone> {
    counter: Arc<ConnectionCounter<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> ConnectionCounter<K> {
    /// A counter allowing `max` connections per key (0: no limit).
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            max,
        })
    }

    /// A slot for one more connection of `key`, or `None` when it already has the maximum.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Option<ConnectionSlot<K>> {
        let mut open = self.open.lock();
        let count = open.entry(key.clone()).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: self.clone(),
            key,
        })
    }

    /// Open connections of `key`.
    pub fn open(&self, key: &K) -> u32 {
        self.open.lock().get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for ConnectionSlot<K> {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The node's guards, shared by every request.
pub struct Guard {
    /// WebSocket connections per client address.
    pub per_ip: Arc<ConnectionCounter<IpAddr>>,
    /// WebSocket connections per user (on this node).
    pub per_user: Arc<ConnectionCounter<String>>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    /// Admin API requests per address.
    admin: DefaultKeyedRateLimiter<IpAddr>,
    /// When each limiter (logins, admin) last dropped its idle addresses.
    last_cleanup: [Mutex<std::time::Instant>; 2],
    access: Access,
}

impl Guard {
    /// Guards with the configured limits.
    pub fn new(limits: &Limits, access: &Access) -> Self {
        let per_minute = NonZeroU32::new(limits.logins_per_minute).unwrap_or(NonZeroU32::MAX);
        let burst = NonZeroU32::new(limits.login_burst).unwrap_or(per_minute);
        Self {
            per_ip: ConnectionCounter::new(limits.max_connections_per_ip),
            per_user: ConnectionCounter::new(limits.max_connections_per_user),
            logins: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            admin: RateLimiter::keyed(Quota::per_second(ADMIN_PER_SECOND).allow_burst(ADMIN_BURST)),
            last_cleanup: [
                Mutex::new(std::time::Instant::now()),
                Mutex::new(std::time::Instant::now()),
            ],
            access: access.clone(),
        }
    }

    /// Takes one login (or refresh) from `ip`'s bucket; `Err(seconds)` to wait when it is empty
    /// (rounded up: a retry after exactly that long finds a token).
    pub fn check_login(&self, ip: IpAddr) -> Result<(), u64> {
        self.check(&self.logins, &self.last_cleanup[0], ip)
    }

    /// Takes one admin API request from `ip`'s bucket ([`ADMIN_PER_SECOND`], bursts of
    /// [`ADMIN_BURST`]); `Err(seconds)` to wait when it is empty.
    pub fn check_admin(&self, ip: IpAddr) -> Result<(), u64> {
        self.check(&self.admin, &self.last_cleanup[1], ip)
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<IpAddr>,
        last_cleanup: &Mutex<std::time::Instant>,
        ip: IpAddr,
    ) -> Result<(), u64> {
        if limiter.len() > LOGIN_KEYS_KEPT {
            let mut last = last_cleanup.lock();
            if last.elapsed() >= LOGIN_CLEANUP_EVERY {
                *last = std::time::Instant::now();
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        limiter.check_key(&limit_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            retry_after_secs(wait)
        })
    }

    /// The client's address: the peer, or with `--real-ip-header` the address the trusted proxy
    /// put there (the last entry of `X-Forwarded-For`, which the nearest proxy appends).
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let from_header = self.access.real_ip_header.as_deref().and_then(|name| {
            let value = headers.get_all(name).iter().next_back()?;
            let last = value.to_str().ok().and_then(|v| v.rsplit(',').next());
            let ip = last.and_then(parse_forwarded);
            if ip.is_none() {
                tracing::debug!(header = name, ?value, "unreadable client address header");
            }
            ip
        });
        from_header.or(peer.map(|p| p.ip()))
    }

    /// Whether a request with these headers may open a WebSocket: no `Origin` (not a browser),
    /// no allow list, or an origin on it (compared without case, as origins are).
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let allowed = &self.access.allowed_origins;
        if allowed.is_empty() {
            return true;
        }
        let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
            return true;
        };
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        allowed.iter().any(|a| {
            let a = a.trim();
            a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn guard(edit: impl FnOnce(&mut Config)) -> Guard {
        let mut config = Config::defaults();
        edit(&mut config);
        Guard::new(&config.limits, &config.access)
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let counter = ConnectionCounter::new(2);
        let a = counter.try_acquire("u").unwrap();
        let _b = counter.try_acquire("u").unwrap();
        assert!(counter.try_acquire("u").is_none());
        assert!(
            counter.try_acquire("v").is_some(),
            "other keys are separate"
        );
        drop(a);
        assert_eq!(counter.open(&"u"), 1);
        assert!(counter.try_acquire("u").is_some());
        let unlimited = ConnectionCounter::new(0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.try_acquire(1)).collect();
        assert!(held.iter().all(Option::is_some));
        drop(held);
        assert_eq!(unlimited.open(&1), 0);
        assert!(
            unlimited.open.lock().is_empty(),
            "no key is kept once closed"
        );
    }

    #[test]
    fn logins_run_out_per_address() {
        let g = guard(|c| {
            c.limits.logins_per_minute = 60;
            c.limits.login_burst = 2;
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(g.check_login(a).is_ok() && g.check_login(a).is_ok());
        let wait = g.check_login(a).unwrap_err();
        assert!((1..=1).contains(&wait), "{wait}");
        assert!(g.check_login(b).is_ok());
    }

    #[test]
    fn retry_after_is_rounded_up() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(retry_after_secs(ms(0)), 1);
        assert_eq!(retry_after_secs(ms(300)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(ms(1499)), 2);
        assert_eq!(retry_after_secs(ms(59_999)), 60);
        assert_eq!(
            retry_after_secs(std::time::Duration::from_nanos(2_000_000_001)),
            3
        );
        assert_eq!(retry_after_secs(std::time::Duration::MAX), u64::MAX);
    }

    #[test]
    fn client_ip_comes_from_the_peer_or_the_trusted_header() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let direct = guard(|_| {});
        assert_eq!(direct.client_ip(&headers, Some(peer)), Some(peer.ip()));
        let proxied = guard(|c| c.access.real_ip_header = Some("X-Forwarded-For".into()));
        assert_eq!(
            proxied.client_ip(&headers, Some(peer)),
            Some("198.51.100.7".parse().unwrap()),
            "the entry the nearest proxy appended, not one the client wrote"
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(proxied.client_ip(&headers, Some(peer)), Some(peer.ip()));
    }

    #[test]
    fn addresses_are_read_as_proxies_write_them_and_keyed_per_network() {
        for (text, ip) in [
            ("198.51.100.7", "198.51.100.7"),
            ("198.51.100.7:5678", "198.51.100.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            assert_eq!(parse_forwarded(text), Some(ip.parse().unwrap()), "{text}");
        }
        assert_eq!(parse_forwarded("unknown"), None);
        let key = |s: &str| limit_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::9"), key("2001:db8:1:2:ffff::1"));
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn origins_are_checked_against_the_allow_list() {
        let mut headers = HeaderMap::new();
        assert!(guard(|_| {}).origin_allowed(&headers));
        let g = guard(|c| {
            c.access.allowed_origins =
                vec!["https://game.example".into(), " https://b.example".into()]
        });
        assert!(g.origin_allowed(&headers), "no Origin: not a browser");
        headers.insert("origin", "https://GAME.example".parse().unwrap());
        assert!(g.origin_allowed(&headers));
        headers.insert("origin", "https://b.example".parse().unwrap());
        assert!(
            g.origin_allowed(&headers),
            "spaces around list entries do not matter"
        );
        headers.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!g.origin_allowed(&headers));
        headers.insert("origin", "null".parse().unwrap());
        assert!(!g.origin_allowed(&headers));
    }
}
