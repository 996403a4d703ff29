//! The refused address ranges: IANA's special-purpose registries (IPv4 and IPv6), every range that
//! is not globally reachable, plus everything outside IPv6's global unicast space (2000::/3).
//! Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped, the NAT64 well-known
//! prefix, 6to4) are judged by the IPv4 address they lead to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a range is refused: the words of the error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    Unspecified,
    ThisNetwork,
    Private,
    SharedCgnat,
    Loopback,
    LinkLocal,
    ProtocolAssignments,
    Documentation,
    Relay6to4,
    Benchmarking,
    Multicast,
    Reserved,
    Broadcast,
    Ipv4Compatible,
    Nat64LocalUse,
    Discard,
    Teredo,
    Srv6,
    UniqueLocal,
    SiteLocal,
    NotGlobalUnicast,
}

impl Kind {
    /// "a private address", "a loopback address", ...
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Unspecified => "the unspecified address",
            Kind::ThisNetwork => "a \"this network\" address",
            Kind::Private => "a private address",
            Kind::SharedCgnat => "a shared (carrier-grade NAT) address",
            Kind::Loopback => "a loopback address",
            Kind::LinkLocal => "a link-local address",
            Kind::ProtocolAssignments => "an IETF protocol-assignment address",
            Kind::Documentation => "a documentation address",
            Kind::Relay6to4 => "a 6to4 relay anycast address",
            Kind::Benchmarking => "a benchmarking address",
            Kind::Multicast => "a multicast address",
            Kind::Reserved => "a reserved address",
            Kind::Broadcast => "the broadcast address",
            Kind::Ipv4Compatible => "a deprecated IPv4-compatible IPv6 address",
            Kind::Nat64LocalUse => {
                "a local-use NAT64 address (its translator, not kiln, decides which IPv4 address it reaches)"
            }
            Kind::Discard => "a discard-only address",
            Kind::Teredo => "a Teredo tunnel address",
            Kind::Srv6 => "an SRv6 segment identifier",
            Kind::UniqueLocal => "a unique-local (private) address",
            Kind::SiteLocal => "a deprecated site-local address",
            Kind::NotGlobalUnicast => "an address outside IPv6's global unicast space (2000::/3)",
        }
    }
}

/// One refused range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    pub net: IpNet,
    pub kind: Kind,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, kind: Kind) -> Range {
    Range {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        kind,
    }
}

const fn v6(segments: [u16; 8], len: u8, kind: Kind) -> Range {
    let [a, b, c, d, e, f, g, h] = segments;
    Range {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            len,
        )),
        kind,
    }
}

/// IPv4 ranges refused under [`crate::Policy::public`], most specific first.
pub const IPV4: &[Range] = &[
    v4(0, 0, 0, 0, 8, Kind::ThisNetwork),
    v4(10, 0, 0, 0, 8, Kind::Private),
    v4(100, 64, 0, 0, 10, Kind::SharedCgnat),
    v4(127, 0, 0, 0, 8, Kind::Loopback),
    v4(169, 254, 0, 0, 16, Kind::LinkLocal),
    v4(172, 16, 0, 0, 12, Kind::Private),
    v4(192, 0, 0, 0, 24, Kind::ProtocolAssignments),
    v4(192, 0, 2, 0, 24, Kind::Documentation),
    v4(192, 88, 99, 0, 24, Kind::Relay6to4),
    v4(192, 168, 0, 0, 16, Kind::Private),
    v4(198, 18, 0, 0, 15, Kind::Benchmarking),
    v4(198, 51, 100, 0, 24, Kind::Documentation),
    v4(203, 0, 113, 0, 24, Kind::Documentation),
    v4(224, 0, 0, 0, 4, Kind::Multicast),
    v4(255, 255, 255, 255, 32, Kind::Broadcast),
    v4(240, 0, 0, 0, 4, Kind::Reserved),
];

/// IPv6 ranges refused under [`crate::Policy::public`], most specific first. The three prefixes
/// that embed an IPv4 address are in [`EMBEDDING`], and are judged before these.
pub const IPV6: &[Range] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, Kind::Unspecified),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, Kind::Loopback),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, Kind::Ipv4Compatible),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Kind::Nat64LocalUse),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Kind::Discard),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Kind::Teredo),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Kind::ProtocolAssignments),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Kind::Documentation),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Kind::Documentation),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Kind::Srv6),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Kind::UniqueLocal),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Kind::LinkLocal),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Kind::SiteLocal),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Kind::Multicast),
];

/// IPv6's global unicast space: an IPv6 address outside it (and outside [`EMBEDDING`]) is refused.
pub const GLOBAL_UNICAST: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// How an IPv6 address carries an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:0:0/96`, IPv4-mapped: a dual-stack socket reaches the IPv4 address itself.
    Mapped,
    /// `64:ff9b::/96`, the NAT64 well-known prefix: a translator reaches the IPv4 address.
    Nat64,
    /// `2002::/16`, 6to4: the IPv4 address is the tunnel's end point.
    SixToFour,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Embedding::Mapped => "an IPv4-mapped IPv6 address",
            Embedding::Nat64 => "a NAT64 address",
            Embedding::SixToFour => "a 6to4 address",
        }
    }
}

/// The prefixes whose addresses are judged by the IPv4 address they embed.
pub const EMBEDDING: &[(Ipv6Net, Embedding)] = &[
    (
        Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
        Embedding::Mapped,
    ),
    (
        Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
        Embedding::Nat64,
    ),
    (
        Ipv6Net::new_assert(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
        Embedding::SixToFour,
    ),
];

/// Why an address is refused: its range, and the IPv6 embedding that led to it if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The refused range (for an embedded address: the IPv4 range of the embedded address; for an
    /// address outside 2000::/3 that no other range names: 2000::/3 itself, kind `NotGlobalUnicast`).
    pub range: Range,
    /// The embedding and the IPv4 address it carried, when the address was judged through one.
    pub embedded: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = match self.range.kind {
            Kind::NotGlobalUnicast => String::new(),
            _ => format!(" ({})", self.range.net),
        };
        match self.embedded {
            Some((embedding, ipv4)) => write!(
                f,
                "{} of {ipv4}, {}{range}",
                embedding.describe(),
                self.range.kind.describe()
            ),
            None => write!(f, "{}{range}", self.range.kind.describe()),
        }
    }
}

/// Which refused range `ip` is in, if any. `None` means the address is globally reachable.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|range| Refusal {
            range,
            embedded: None,
        }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Range> {
    IPV4.iter()
        .find(|r| r.net.contains(&IpAddr::V4(ip)))
        .copied()
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some((embedding, ipv4)) = embedded_ipv4(ip) {
        return classify_v4(ipv4).map(|range| Refusal {
            range,
            embedded: Some((embedding, ipv4)),
        });
    }
    if let Some(range) = IPV6.iter().find(|r| r.net.contains(&IpAddr::V6(ip))) {
        return Some(Refusal {
            range: *range,
            embedded: None,
        });
    }
    if !GLOBAL_UNICAST.contains(&ip) {
        return Some(Refusal {
            range: Range {
                net: IpNet::V6(GLOBAL_UNICAST),
                kind: Kind::NotGlobalUnicast,
            },
            embedded: None,
        });
    }
    None
}

/// The IPv4 address an IPv6 address leads to, for the three embedding prefixes.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
    let (_, embedding) = EMBEDDING.iter().find(|(net, _)| net.contains(&ip))?;
    let o = ip.octets();
    let ipv4 = match embedding {
        Embedding::Mapped | Embedding::Nat64 => Ipv4Addr::new(o[12], o[13], o[14], o[15]),
        Embedding::SixToFour => Ipv4Addr::new(o[2], o[3], o[4], o[5]),
    };
    Some((*embedding, ipv4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<Kind> {
        classify(s.parse().unwrap()).map(|r| r.range.kind)
    }

    #[test]
    fn every_ipv4_range_is_refused_at_both_ends() {
        for range in IPV4 {
            let IpNet::V4(net) = range.net else {
                unreachable!()
            };
            for ip in [net.network(), net.broadcast()] {
                assert!(
                    classify(IpAddr::V4(ip)).is_some(),
                    "{ip} in {} passed",
                    range.net
                );
            }
        }
    }

    #[test]
    fn every_ipv6_range_is_refused_at_both_ends() {
        for range in IPV6 {
            let IpNet::V6(net) = range.net else {
                unreachable!()
            };
            for ip in [net.network(), net.broadcast()] {
                assert!(
                    classify(IpAddr::V6(ip)).is_some(),
                    "{ip} in {} passed",
                    range.net
                );
            }
        }
    }

    #[test]
    fn ipv4_ranges() {
        let cases = [
            ("0.0.0.0", Kind::ThisNetwork),
            ("0.255.255.255", Kind::ThisNetwork),
            ("10.0.0.5", Kind::Private),
            ("100.64.0.1", Kind::SharedCgnat),
            ("100.127.255.254", Kind::SharedCgnat),
            ("127.0.0.1", Kind::Loopback),
            ("127.255.0.9", Kind::Loopback),
            ("169.254.169.254", Kind::LinkLocal),
            ("172.16.0.1", Kind::Private),
            ("172.31.255.255", Kind::Private),
            ("192.0.0.9", Kind::ProtocolAssignments),
            ("192.0.2.1", Kind::Documentation),
            ("192.88.99.1", Kind::Relay6to4),
            ("192.168.1.1", Kind::Private),
            ("198.18.0.1", Kind::Benchmarking),
            ("198.19.255.255", Kind::Benchmarking),
            ("198.51.100.7", Kind::Documentation),
            ("203.0.113.7", Kind::Documentation),
            ("224.0.0.1", Kind::Multicast),
            ("239.255.255.255", Kind::Multicast),
            ("240.0.0.1", Kind::Reserved),
            ("255.255.255.254", Kind::Reserved),
            ("255.255.255.255", Kind::Broadcast),
        ];
        for (ip, expected) in cases {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn ipv4_neighbours_of_ranges_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        let cases = [
            ("::", Kind::Unspecified),
            ("::1", Kind::Loopback),
            ("::127.0.0.1", Kind::Ipv4Compatible),
            ("::8.8.8.8", Kind::Ipv4Compatible),
            ("64:ff9b:1::a00:1", Kind::Nat64LocalUse),
            ("64:ff9b:1::808:808", Kind::Nat64LocalUse),
            ("100::1", Kind::Discard),
            ("2001::1", Kind::Teredo),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Kind::Teredo),
            ("2001:2::1", Kind::ProtocolAssignments),
            ("2001:1ff:ffff::1", Kind::ProtocolAssignments),
            ("2001:db8::1", Kind::Documentation),
            ("3fff::1", Kind::Documentation),
            ("5f00::1", Kind::Srv6),
            ("fc00::1", Kind::UniqueLocal),
            ("fd12:3456::1", Kind::UniqueLocal),
            ("fe80::1", Kind::LinkLocal),
            ("febf::1", Kind::LinkLocal),
            ("fec0::1", Kind::SiteLocal),
            ("ff02::1", Kind::Multicast),
            ("ff0e::1", Kind::Multicast),
            // Outside 2000::/3 and outside every named range: unallocated, refused.
            ("1::1", Kind::NotGlobalUnicast),
            ("4000::1", Kind::NotGlobalUnicast),
            ("::ffff:0:7f00:1", Kind::NotGlobalUnicast),
        ];
        for (ip, expected) in cases {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged() {
        let cases = [
            ("::ffff:127.0.0.1", Embedding::Mapped, Kind::Loopback),
            ("::ffff:7f00:1", Embedding::Mapped, Kind::Loopback),
            ("::ffff:10.1.2.3", Embedding::Mapped, Kind::Private),
            ("::ffff:169.254.169.254", Embedding::Mapped, Kind::LinkLocal),
            ("::ffff:0.0.0.0", Embedding::Mapped, Kind::ThisNetwork),
            ("64:ff9b::a00:1", Embedding::Nat64, Kind::Private),
            ("64:ff9b::127.0.0.1", Embedding::Nat64, Kind::Loopback),
            ("64:ff9b::6440:1", Embedding::Nat64, Kind::SharedCgnat),
            ("2002:7f00:1::", Embedding::SixToFour, Kind::Loopback),
            ("2002:c0a8:101::1", Embedding::SixToFour, Kind::Private),
            ("2002:c612:1::", Embedding::SixToFour, Kind::Benchmarking),
        ];
        for (ip, embedding, expected) in cases {
            let refusal = classify(ip.parse().unwrap()).unwrap_or_else(|| panic!("{ip} passed"));
            assert_eq!(refusal.range.kind, expected, "{ip}");
            assert_eq!(refusal.embedded.map(|(e, _)| e), Some(embedding), "{ip}");
        }
        // The same embeddings of a public address pass.
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn public_ipv6_passes() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "2c0f::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn refusals_read_well() {
        let r = classify("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            r.to_string(),
            "an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address (127.0.0.0/8)"
        );
        let r = classify("10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(r.to_string(), "a private address (10.0.0.0/8)");
        let r = classify("4000::1".parse().unwrap()).unwrap();
        assert_eq!(
            r.to_string(),
            "an address outside IPv6's global unicast space (2000::/3)"
        );
    }
}
