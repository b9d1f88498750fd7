//! Where a webhook attempt connects, checked where it connects: the HTTP
//! client resolves every name through [`Guarded`], which keeps only the
//! addresses [`address::allowed`] allows, so the check applies to the very
//! address connected, at every attempt (a name's DNS can change after it
//! was registered). A host written as an IP address skips resolvers, so
//! [`literal_refused`] checks it before anything is sent. The client
//! follows no redirect and uses no proxy: the endpoint's URL is the only
//! place it goes. A connection it keeps open for the next attempt to the
//! same host was checked when it was made, and stays with that address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address;

/// An attempt's error when the endpoint's host is refused. It names no
/// address: the delivery log must not tell what a name resolves to inside.
pub const NOT_PUBLIC: &str = "the endpoint's address is not public";

/// A resolver's refusal, found again in the client's error.
#[derive(Debug)]
pub struct NotPublic;

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NOT_PUBLIC)
    }
}

impl std::error::Error for NotPublic {}

/// The system's resolver (getaddrinfo, on tokio's blocking threads).
#[derive(Debug)]
pub struct SystemLookup;

impl Resolve for SystemLookup {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts in the URL's port (or the scheme's).
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Looks names up with `lookup`, and keeps only the addresses a webhook
/// may connect to; none left is a [`NotPublic`] error.
pub struct Guarded {
    lookup: Arc<dyn Resolve>,
    allow_loopback: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let looked_up = self.lookup.resolve(name);
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let kept: Vec<SocketAddr> =
                looked_up.await?.filter(|addr| address::allowed(addr.ip(), allow_loopback)).collect();
            if kept.is_empty() {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The client webhook attempts are made with: names resolved by `lookup`
/// through [`Guarded`], no redirects followed, no proxy.
pub fn client(lookup: Arc<dyn Resolve>, allow_loopback: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(super::schedule::TIMEOUT)
        // A redirect would go where nobody checked; a 3xx is the attempt's answer.
        .redirect(reqwest::redirect::Policy::none())
        // Through a proxy, the proxy would resolve the name, unchecked.
        .no_proxy()
        .dns_resolver(Arc::new(Guarded { lookup, allow_loopback }))
        .user_agent("credits-webhooks/1")
        .build()
}

/// Whether `url`'s host is an IP address a webhook may not connect to
/// (names are the resolver's business). Read as the client reads it (the
/// WHATWG parser: `0x7f.1` is 127.0.0.1); a URL it cannot parse is left
/// to the client, which sends nothing.
pub fn literal_refused(url: &str, allow_loopback: bool) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or("");
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => !address::allowed(ip, allow_loopback),
        Err(_) => false,
    }
}

/// Whether a client error is [`Guarded`]'s refusal.
pub fn is_refusal(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if error.is::<NotPublic>() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_hosts_are_read_as_the_client_reads_them() {
        for url in [
            "https://127.0.0.1/hook",
            "https://0x7f.1/hook",
            "https://2130706433/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://0xa9.0xfe.0xa9.0xfe/",
            "https://[::7f00:1]/hook",
            "https://[64:ff9b::a9fe:a9fe]/hook",
            "https://[::ffff:a9fe:a9fe]/hook",
            "https://[::ffff:169.254.169.254]/hook",
            "https://[fd00:ec2::254]/hook",
            "https://[2002:a9fe:a9fe::1]/hook",
            "http://[::1]:8080/hook",
        ] {
            assert!(literal_refused(url, false), "{url}");
        }
        for url in ["https://8.8.8.8/hook", "https://[2606:4700:4700::1111]/", "https://example.com/", "not a url"] {
            assert!(!literal_refused(url, false), "{url}");
        }
        // The dev server: loopback only.
        assert!(!literal_refused("http://127.0.0.1:9/hook", true));
        assert!(!literal_refused("http://[::1]:9/hook", true));
        assert!(literal_refused("https://169.254.169.254/", true));
        assert!(literal_refused("https://[::ffff:127.0.0.1]/", true));
    }
}
