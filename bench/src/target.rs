//! The benchmark target: URL helpers and the loopback-only rule.
//!
//! chat-bench generates real load, so it only ever talks to this machine: every URL must name a
//! loopback host (`localhost`, `127.0.0.0/8`, `::1`).

use std::net::IpAddr;

/// The host part of an `http(s)://` or `ws(s)://` URL (brackets removed from IPv6 literals).
pub fn url_host(url: &str) -> Result<&str, String> {
    let rest = ["ws://", "wss://", "http://", "https://"]
        .iter()
        .find_map(|scheme| {
            url.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &url[scheme.len()..])
        })
        .ok_or_else(|| format!("{url}: expected a ws://, wss://, http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(host)
}

/// `host:port` of a URL, for connecting a socket (the scheme's default port when none is given;
/// IPv6 literals keep their brackets).
pub fn host_port(url: &str) -> Result<String, String> {
    let host = url_host(url)?;
    let secure = url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("wss:"))
        || url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, tail)| tail);
    let port = match after_host.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() => port
            .parse::<u16>()
            .map_err(|_| format!("{url}: bad port {port}"))?,
        _ if secure => 443,
        _ => 80,
    };
    if host.contains(':') {
        Ok(format!("[{host}]:{port}"))
    } else {
        Ok(format!("{host}:{port}"))
    }
}

/// Whether `host` is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Fails with a clear message unless `url` targets a loopback host.
pub fn ensure_loopback(url: &str) -> Result<(), String> {
    let host = url_host(url)?;
    if is_loopback_host(host) {
        Ok(())
    } else {
        Err(format!(
            "refusing to benchmark {url}: host {host} is not a loopback address \
             (only localhost, 127.0.0.0/8 and ::1 are allowed)"
        ))
    }
}

/// The HTTP base URL of the server behind a WebSocket URL: `ws://h:p/x` → `http://h:p`.
pub fn login_url_for(ws_url: &str) -> Result<String, String> {
    url_host(ws_url)?;
    let (scheme, rest) = ws_url.split_once("://").unwrap_or(("ws", ws_url));
    let http = if scheme.eq_ignore_ascii_case("wss") || scheme.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Ok(format!("{http}://{authority}"))
}

/// `ws_url` with `auth_token=token` added to its query.
pub fn ws_url_with_token(ws_url: &str, token: &str) -> String {
    let separator = if ws_url.contains('?') { '&' } else { '?' };
    format!("{ws_url}{separator}auth_token={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(host_port("ws://127.0.0.1:8090/").unwrap(), "127.0.0.1:8090");
        assert_eq!(host_port("ws://localhost/ws").unwrap(), "localhost:80");
        assert_eq!(host_port("wss://localhost").unwrap(), "localhost:443");
        assert_eq!(host_port("ws://[::1]:9000/").unwrap(), "[::1]:9000");
        assert_eq!(host_port("ws://[::1]/").unwrap(), "[::1]:80");
        assert!(host_port("ws://127.0.0.1:x/").is_err());
    }

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "ws://127.0.0.1:8080/",
            "ws://127.1.2.3:1/ws",
            "ws://localhost:8080",
            "WS://LOCALHOST/",
            "ws://[::1]:8080/",
            "http://127.0.0.1:8080",
            "https://user@localhost:1/x?y=z",
        ] {
            ensure_loopback(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn other_targets_are_refused_clearly() {
        for url in [
            "ws://10.0.0.1:8080/",
            "ws://example.com/",
            "ws://[2001:db8::1]:80/",
            "ws://0.0.0.0:8080/",
            "ws://localhost.example.com/",
            "ws://127.0.0.1.nip.io/",
        ] {
            let err = ensure_loopback(url).unwrap_err();
            assert!(err.contains("not a loopback"), "{url}: {err}");
        }
        assert!(ensure_loopback("ftp://127.0.0.1/").is_err());
        assert!(ensure_loopback("ws:///").is_err());
    }

    #[test]
    fn urls_are_derived() {
        assert_eq!(
            login_url_for("ws://127.0.0.1:8080/ws").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(login_url_for("wss://[::1]:9/").unwrap(), "https://[::1]:9");
        assert_eq!(
            ws_url_with_token("ws://h/", "t"),
            "ws://h/?auth_token=t".to_owned()
        );
        assert_eq!(
            ws_url_with_token("ws://h/?a=1", "t"),
            "ws://h/?a=1&auth_token=t"
        );
    }
}
