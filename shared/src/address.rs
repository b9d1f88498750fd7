//! Where outgoing webhooks may connect: public unicast addresses only.
//!
//! An endpoint's URL is chosen by an admin, but the name in it resolves to
//! whatever its DNS says at the time of each attempt. A webhook must never
//! reach the function's own network: its loopback, the instance metadata
//! service (169.254.169.254, fd00:ec2::254), private and carrier-grade NAT
//! ranges, or any address the internet does not route.
//!
//! IPv4: every range of IANA's special-purpose registry that is not
//! globally reachable is refused (table below); the rest is public.
//!
//! IPv6: only global unicast (`2000::/3`) is public, less its special
//! ranges. That refuses loopback, unspecified, unique local (`fc00::/7`),
//! link-local, multicast and the forms that embed an IPv4 address as a
//! whole: mapped (`::ffff:0:0/96`) and compatible (`::/96`), which
//! dual-stack sockets turn into IPv4 connections; local-use NAT64
//! (`64:ff9b:1::/48`), 6to4 (`2002::/16`) and Teredo (`2001::/32`), which
//! no receiver needs. The one exception is the well-known NAT64 prefix
//! (`64:ff9b::/96`): DNS64 in an IPv6-only network hands out such addresses
//! for every IPv4-only host, so it is judged by the IPv4 address it embeds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not the public internet.
const V4_REFUSED: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network", unspecified
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, the metadata service
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relays (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
];

/// Global unicast: the only IPv6 space handed out for public hosts.
const V6_GLOBAL: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Parts of global unicast that are not public hosts.
const V6_REFUSED: [(Ipv6Addr, u8); 4] = [
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16), // 6to4
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
];

/// The well-known NAT64 prefix: the last 32 bits are an IPv4 address.
const NAT64: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// Whether a webhook may connect to `ip` (deployed).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

/// Whether a webhook may connect to `ip`; with `allow_loopback` (the dev
/// server, whose receivers run on the same machine) loopback too:
/// `127.0.0.0/8` and `::1`, never another range.
pub fn allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    is_public(ip) || (allow_loopback && ip.is_loopback())
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_REFUSED.iter().any(|&(net, len)| in_v4(ip, net, len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if in_v6(ip, NAT64.0, NAT64.1) {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    in_v6(ip, V6_GLOBAL.0, V6_GLOBAL.1) && !V6_REFUSED.iter().any(|&(net, len)| in_v6(ip, net, len))
}

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap_or_else(|_| panic!("{raw} is not an address"))
    }

    #[test]
    fn public_addresses_pass() {
        for raw in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "52.94.236.248",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2600:1f18::1",
            // NAT64 of a public address: what DNS64 hands out for an IPv4-only host.
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(raw)), "{raw}");
            assert!(allowed(ip(raw), false), "{raw}");
        }
    }

    /// Each range by its first and last address, and the addresses just
    /// outside it (public unless another range starts there).
    #[test]
    fn ipv4_ranges_are_refused_to_their_boundaries() {
        for (refused, outside) in [
            (&["0.0.0.0", "0.255.255.255"][..], &["1.0.0.0"][..]),
            (&["10.0.0.0", "10.1.2.3", "10.255.255.255"], &["9.255.255.255", "11.0.0.0"]),
            (&["100.64.0.0", "100.64.0.1", "100.127.255.255"], &["100.63.255.255", "100.128.0.0"]),
            (&["127.0.0.0", "127.0.0.1", "127.1.2.3", "127.255.255.255"], &["126.255.255.255", "128.0.0.0"]),
            (
                &["169.254.0.0", "169.254.169.254", "169.254.170.2", "169.254.255.255"],
                &["169.253.255.255", "169.255.0.0"],
            ),
            (&["172.16.0.0", "172.31.255.255"], &["172.15.255.255", "172.32.0.0"]),
            (&["192.0.0.0", "192.0.0.255"], &["191.255.255.255", "192.0.1.0"]),
            (&["192.0.2.0", "192.0.2.255"], &["192.0.1.255", "192.0.3.0"]),
            (&["192.88.99.0", "192.88.99.255"], &["192.88.98.255", "192.88.100.0"]),
            (&["192.168.0.0", "192.168.1.1", "192.168.255.255"], &["192.167.255.255", "192.169.0.0"]),
            (&["198.18.0.0", "198.19.255.255"], &["198.17.255.255", "198.20.0.0"]),
            (&["198.51.100.0", "198.51.100.255"], &["198.51.99.255", "198.51.101.0"]),
            (&["203.0.113.0", "203.0.113.255"], &["203.0.112.255", "203.0.114.0"]),
            (&["224.0.0.0", "224.0.0.1", "239.255.255.255"], &["223.255.255.255"]),
            (&["240.0.0.0", "255.255.255.254", "255.255.255.255"], &[]),
        ] {
            for raw in refused {
                assert!(!is_public(ip(raw)), "{raw} is refused");
            }
            for raw in outside {
                assert!(is_public(ip(raw)), "{raw} is public");
            }
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        for raw in [
            "::",
            "::1",
            // Unique local (the metadata service's IPv6 address among them).
            "fc00::",
            "fd00:ec2::254",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            // Link-local, deprecated site-local, multicast.
            "fe80::",
            "fe80::1",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::1",
            "ff00::",
            "ff02::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            // Discard-only, SRv6, the last address below global unicast.
            "100::1",
            "5f00::1",
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "4000::",
        ] {
            assert!(!is_public(ip(raw)), "{raw}");
        }
        assert!(is_public(ip("2000::")), "the first global unicast address");
        assert!(is_public(ip("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "the last below 3fff::/20");
    }

    #[test]
    fn special_ranges_inside_global_unicast_are_refused() {
        for raw in [
            "2001::",
            "2001:0:a9fe:a9fe::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2002::",
            "2002:a9fe:a9fe::1",
            "2002:808:808::1",
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(!is_public(ip(raw)), "{raw}");
        }
        for raw in ["2001:200::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "2001:ffff::1", "2003::"] {
            assert!(is_public(ip(raw)), "{raw}");
        }
    }

    /// Mapped and compatible addresses are refused whatever they embed
    /// (even a public address); NAT64 is judged by what it embeds.
    #[test]
    fn ipv6_forms_that_embed_ipv4() {
        for raw in [
            "::ffff:a9fe:a9fe",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::ffff:0:0",
            "::ffff:ffff:ffff",
            "::7f00:1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::8.8.8.8",
            "::2",
            "::ffff:ffff",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::6440:1",
            "64:ff9b::",
            "64:ff9b::ffff:ffff",
            "64:ff9b:1::808:808",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(!is_public(ip(raw)), "{raw}");
            assert!(!allowed(ip(raw), true), "{raw}: not even on the dev server");
        }
        for raw in ["64:ff9b::101:101", "64:ff9b::8.8.8.8", "64:ff9b::5db8:d70e"] {
            assert!(is_public(ip(raw)), "{raw}");
        }
        // Just outside the well-known NAT64 /96: neither prefix, nor global.
        assert!(!is_public(ip("64:ff9b::1:0:0")));
        assert!(!is_public(ip("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn the_dev_server_may_reach_loopback_and_nothing_else_inside() {
        for raw in ["127.0.0.1", "127.255.255.255", "::1"] {
            assert!(allowed(ip(raw), true), "{raw}");
            assert!(!allowed(ip(raw), false), "{raw}");
        }
        for raw in
            ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1", "::7f00:1"]
        {
            assert!(!allowed(ip(raw), true), "{raw}");
        }
        assert!(allowed(ip("8.8.8.8"), true));
    }
}
