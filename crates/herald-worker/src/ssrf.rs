//! The SSRF guard: which addresses a delivery may connect to.
//!
//! Endpoint URLs are chosen by tenants, so without a guard a tenant could make
//! Herald POST to its own metadata service (`169.254.169.254`), databases or admin
//! ports. The guard works at connect time: [`FilteringResolver`] is reqwest's DNS
//! resolver and drops every refused address, so the addresses that were checked
//! are exactly the ones connected to and a DNS answer that changes between a
//! validation and the request (DNS rebinding) cannot get through. reqwest never
//! asks the resolver about IP-literal hosts, which is why [`SsrfPolicy::check_url`]
//! must be called on every URL before it is sent.
//!
//! The refused ranges follow the IANA special-purpose address registries
//! ([IPv4](https://www.iana.org/assignments/iana-ipv4-special-registry/),
//! [IPv6](https://www.iana.org/assignments/iana-ipv6-special-registry/), RFC 6890).
//! IPv4-mapped and IPv4-compatible IPv6 addresses are judged as the IPv4 address
//! they carry, and the NAT64, 6to4 and Teredo prefixes by the IPv4 address they
//! embed, so no IPv6 spelling reaches an IPv4 address that would be refused.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Which destination addresses deliveries may connect to.
///
/// Everything publicly routable is allowed; the special-purpose ranges listed in
/// the module docs are refused unless a CIDR in `allow` contains the address
/// (`HERALD_SSRF_ALLOW`; tests and docker-compose allow loopback or the service
/// network this way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    /// CIDRs exempt from the guard.
    pub allow: Vec<IpNet>,
}

/// Why a destination was refused by the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// Only `http` and `https` are delivered to.
    #[error("scheme '{0}' is not allowed, only http and https")]
    Scheme(String),
    /// The URL has no host to connect to.
    #[error("url has no host")]
    NoHost,
    /// A literal IP address in a refused range.
    #[error("address {0} is in a refused range")]
    Address(IpAddr),
    /// Every address the host name resolved to is in a refused range. The
    /// addresses are not named: the message ends up in the tenant's attempt log
    /// and should not map the internal network for them.
    #[error("host '{0}' resolves only to refused addresses")]
    Host(String),
}

/// Why [`FilteringResolver`] produced no address.
///
/// The two cases are separate types in reqwest's error chain so that a delivery
/// can be classified as `blocked` or `dns` without parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Resolution worked but the guard refused every address.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    /// The system resolver failed (no such name, no DNS server, ...).
    #[error("failed to resolve host '{host}'")]
    Lookup {
        /// The name that was looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
}

impl SsrfPolicy {
    /// A policy that refuses every special-purpose range except those in `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let canonical = canonical(ip);
        // Both spellings are looked up so that allowing `127.0.0.0/8` also allows
        // `::ffff:127.0.0.1`, and allowing `::1/128` works although it is judged
        // as the IPv4-compatible `0.0.0.1` below.
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return true;
        }
        !is_refused(canonical)
    }

    /// Checks what can be checked before connecting: the scheme, and the host when
    /// it is an IP literal (which reqwest connects to without asking the
    /// resolver). The `url` crate has already normalised odd IPv4 spellings
    /// (`2130706433`, `0x7f.1`, `127.1`) to dotted quads, per the
    /// [WHATWG URL standard](https://url.spec.whatwg.org/#concept-ipv4-parser).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Blocked::Scheme(url.scheme().to_owned()));
        }
        let ip = match url.host() {
            None => return Err(Blocked::NoHost),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        };
        if self.is_allowed(ip) {
            Ok(())
        } else {
            Err(Blocked::Address(ip))
        }
    }

    /// Resolves `host` with the system resolver and keeps the allowed addresses.
    /// The ports are 0; reqwest fills in the URL's port.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found =
            tokio::net::lookup_host((host, 0))
                .await
                .map_err(|source| ResolveError::Lookup {
                    host: host.to_owned(),
                    source,
                })?;
        let allowed: Vec<SocketAddr> = found.filter(|addr| self.is_allowed(addr.ip())).collect();
        if allowed.is_empty() {
            tracing::debug!(host, "every resolved address refused by the ssrf guard");
            return Err(Blocked::Host(host.to_owned()).into());
        }
        Ok(allowed)
    }
}

/// reqwest's DNS resolver for deliveries: the system resolver, filtered by an
/// [`SsrfPolicy`]. Fails with [`ResolveError::Blocked`] when nothing is left.
#[derive(Debug, Clone)]
pub struct FilteringResolver {
    policy: Arc<SsrfPolicy>,
}

impl FilteringResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<SsrfPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The address `ip` is judged as: IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291
/// §2.5.5.2) and IPv4-compatible (`::a.b.c.d`, §2.5.5.1) addresses become the IPv4
/// address they carry, because that is where the operating system connects.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// Whether a canonical address is in a refused range (ignoring any allow-list).
fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => is_refused_v6(v6),
    }
}

/// An IPv4 network as `(first address, prefix length)`.
type V4Net = ([u8; 4], u8);

/// IPv4 ranges that are not publicly routable unicast, from the IANA IPv4
/// special-purpose registry plus multicast and the reserved class E.
const REFUSED_V4: &[V4Net] = &[
    ([0, 0, 0, 0], 8),       // "this network", incl. unspecified (RFC 791, RFC 1122)
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // shared address space, CGNAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback (RFC 1122)
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata services (RFC 3927)
    ([172, 16, 0, 0], 12),   // private (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (RFC 6890)
    ([192, 0, 2, 0], 24),    // documentation TEST-NET-1 (RFC 5737)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast, deprecated (RFC 7526)
    ([192, 168, 0, 0], 16),  // private (RFC 1918)
    ([198, 18, 0, 0], 15),   // benchmarking (RFC 2544)
    ([198, 51, 100, 0], 24), // documentation TEST-NET-2 (RFC 5737)
    ([203, 0, 113, 0], 24),  // documentation TEST-NET-3 (RFC 5737)
    ([224, 0, 0, 0], 4),     // multicast (RFC 5771)
    ([240, 0, 0, 0], 4),     // reserved, incl. broadcast 255.255.255.255 (RFC 1112, RFC 919)
];

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    REFUSED_V4.iter().any(|&(network, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        bits & mask == u32::from_be_bytes(network)
    })
}

/// An IPv6 network as `(first address, prefix length)`.
type V6Net = (u128, u8);

/// Global unicast, 2000::/3 (RFC 4291 §2.4): IANA allocates nothing routable
/// outside it, so everything else — unspecified, loopback, unique-local fc00::/7,
/// link-local fe80::/10, site-local fec0::/10, multicast ff00::/8, discard-only
/// 100::/64, the local-use NAT64 64:ff9b:1::/48 and the IPv4-translated
/// ::ffff:0:0:0/96 — is refused without listing it.
const GLOBAL_UNICAST: V6Net = (0x2000 << 112, 3);

/// NAT64 well-known prefix, 64:ff9b::/96 (RFC 6052): the gateway connects to the
/// IPv4 address in the last 32 bits.
const NAT64: V6Net = (0x0064_ff9b << 96, 96);

/// 6to4, 2002::/16 (RFC 3056): bits 16..48 are the IPv4 address of the site.
const SIX_TO_FOUR: V6Net = (0x2002 << 112, 16);

/// Teredo, 2001::/32 (RFC 4380): bits 32..64 are the server's IPv4 address and
/// the last 32 bits the client's, inverted.
const TEREDO: V6Net = (0x2001 << 112, 32);

/// Special ranges inside 2000::/3 that are not publicly routable.
const REFUSED_V6: &[V6Net] = &[
    (0x2001_0002 << 96, 48), // benchmarking (RFC 5180)
    (0x2001_0010 << 96, 28), // ORCHID, deprecated (RFC 4843)
    (0x2001_0020 << 96, 28), // ORCHIDv2 (RFC 7343)
    (0x2001_0db8 << 96, 32), // documentation (RFC 3849)
    (0x3fff_0000 << 96, 20), // documentation (RFC 9637)
];

fn in_v6(bits: u128, (network, len): V6Net) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    bits & mask == network
}

/// The IPv4 address in bits `from..from + 32` of an IPv6 address.
fn embedded_v4(bits: u128, from: u32) -> Ipv4Addr {
    let shifted = bits >> (96 - from);
    // Truncation keeps exactly the 32 bits wanted.
    Ipv4Addr::from(shifted as u32)
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    if in_v6(bits, NAT64) {
        return is_refused_v4(embedded_v4(bits, 96));
    }
    if !in_v6(bits, GLOBAL_UNICAST) || REFUSED_V6.iter().any(|&net| in_v6(bits, net)) {
        return true;
    }
    if in_v6(bits, SIX_TO_FOUR) {
        return is_refused_v4(embedded_v4(bits, 16));
    }
    if in_v6(bits, TEREDO) {
        let server = embedded_v4(bits, 32);
        let client = Ipv4Addr::from(!u32::from(embedded_v4(bits, 96)));
        return is_refused_v4(server) || is_refused_v4(client);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address parses")
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test url parses")
    }

    fn strict() -> SsrfPolicy {
        SsrfPolicy::default()
    }

    /// The first and last address of every refused IPv4 range, and its
    /// neighbours just outside where those are public.
    #[test]
    fn every_special_ipv4_range_is_refused_at_both_ends() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.0.1",
            "169.254.169.254",
            "169.254.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ];
        for text in refused {
            assert!(!strict().is_allowed(ip(text)), "{text} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.114.0",
            "223.255.255.255",
        ];
        for text in public {
            assert!(strict().is_allowed(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn every_special_ipv6_range_is_refused() {
        let refused = [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "2001:db8::1",
            "2001:db8:ffff::1",
            "3fff::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "64:ff9b:1::a00:1",
            "::ffff:0:7f00:1",
            "4000::1",
        ];
        for text in refused {
            assert!(!strict().is_allowed(ip(text)), "{text} must be refused");
        }
        for text in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860::8888",
        ] {
            assert!(strict().is_allowed(ip(text)), "{text} must be allowed");
        }
    }

    #[test]
    fn ipv4_mapped_and_compatible_addresses_are_judged_as_ipv4() {
        for text in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::192.168.1.1",
        ] {
            assert!(!strict().is_allowed(ip(text)), "{text} must be refused");
        }
        assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical(ip("::10.1.2.3")), ip("10.1.2.3"));
        assert!(strict().is_allowed(ip("::ffff:8.8.8.8")));
    }

    #[test]
    fn nat64_6to4_and_teredo_are_judged_by_the_embedded_ipv4_address() {
        // NAT64 64:ff9b::/96 carries the IPv4 address in its last 32 bits.
        assert!(!strict().is_allowed(ip("64:ff9b::7f00:1")));
        assert!(!strict().is_allowed(ip("64:ff9b::a9fe:a9fe")));
        assert!(strict().is_allowed(ip("64:ff9b::808:808")));
        // 6to4 2002:AABB:CCDD::/48 carries it in bits 16..48.
        assert!(!strict().is_allowed(ip("2002:7f00:1::1")));
        assert!(!strict().is_allowed(ip("2002:c0a8:101::1")));
        assert!(strict().is_allowed(ip("2002:808:808::1")));
        // Teredo: server 8.8.8.8 and client !0x80fffffe = 127.0.0.1.
        assert!(!strict().is_allowed(ip("2001:0:808:808::80ff:fffe")));
        // Server 10.0.0.1 is refused too.
        assert!(!strict().is_allowed(ip("2001:0:a00:1::f7f7:f7f7")));
        // Server 8.8.8.8, client !0xf7f7f7f7 = 8.8.8.8.
        assert!(strict().is_allowed(ip("2001:0:808:808::f7f7:f7f7")));
    }

    #[test]
    fn the_allow_list_exempts_its_cidrs_in_either_spelling() {
        let loopback = SsrfPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert!(loopback.is_allowed(ip("127.0.0.1")));
        assert!(loopback.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(!loopback.is_allowed(ip("::1")));
        assert!(!loopback.is_allowed(ip("10.0.0.1")));
        let v6 = SsrfPolicy::new(vec![
            "::1/128".parse().expect("cidr"),
            "fd00::/8".parse().expect("cidr"),
        ]);
        assert!(v6.is_allowed(ip("::1")));
        assert!(v6.is_allowed(ip("fd00::5")));
        assert!(!v6.is_allowed(ip("127.0.0.1")));
    }

    #[test]
    fn check_url_refuses_ip_literals_in_any_spelling_the_url_crate_accepts() {
        for text in [
            "http://127.0.0.1/",
            "http://127.0.0.1:8080/hook",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://0/",
            "https://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[fe80::1]/",
            "http://[64:ff9b::a00:1]/",
        ] {
            assert!(
                matches!(strict().check_url(&url(text)), Err(Blocked::Address(_))),
                "{text} must be refused"
            );
        }
    }

    #[test]
    fn check_url_leaves_names_to_the_resolver_and_allows_public_literals() {
        for text in [
            "http://localhost/",
            "https://example.com/webhook",
            "http://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
        ] {
            assert_eq!(strict().check_url(&url(text)), Ok(()), "{text}");
        }
        let loopback = SsrfPolicy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert_eq!(loopback.check_url(&url("http://0x7f.1/")), Ok(()));
    }

    #[test]
    fn check_url_refuses_other_schemes() {
        for text in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "ws://example.com/",
        ] {
            assert!(
                matches!(strict().check_url(&url(text)), Err(Blocked::Scheme(_))),
                "{text} must be refused"
            );
        }
    }
}
