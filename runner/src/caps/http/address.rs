//! Which addresses are public: the address policy of the `http` capability, a
//! pure function of the address.
//!
//! A granted *name* may lead only to public addresses; a non-public one must be
//! granted literally. Non-public are IPv4 loopback, private, link-local (the
//! cloud metadata services, 169.254.169.254), shared (100.64.0.0/10),
//! benchmarking, `0.0.0.0/8`, multicast, broadcast and reserved addresses, and
//! IPv6 loopback, unspecified, multicast, unique-local (`fc00::/7`, e.g. the
//! metadata service `fd00:ec2::254`), link-local (`fe80::/10`) and the
//! deprecated site-local (`fec0::/10`) addresses.
//!
//! An attacker's DNS answer may also write a non-public IPv4 address in one of
//! the IPv6 forms that carry an IPv4 address, hoping that a translator or tunnel
//! on the runner's network (NAT64, SIIT, a 6to4 relay, a Teredo client) takes the
//! packet there. Each such form is judged by the IPv4 address it carries, like
//! IPv4 itself:
//!
//! | form                     | prefix            | the IPv4 address                                   |
//! |--------------------------|-------------------|----------------------------------------------------|
//! | IPv4-mapped              | `::ffff:0:0/96`   | the last 32 bits                                   |
//! | IPv4-compatible          | `::/96`           | the last 32 bits (`::` and `::1` are IPv6's own)   |
//! | IPv4-translated (SIIT)   | `::ffff:0:0:0/96` | the last 32 bits                                   |
//! | NAT64                    | `64:ff9b::/96`    | the last 32 bits                                   |
//! | NAT64 local-use          | `64:ff9b:1::/48`  | non-public whatever it carries (see below)         |
//! | 6to4                     | `2002::/16`       | bits 16 to 47                                      |
//! | Teredo                   | `2001::/32`       | the server (bits 32 to 63) and the client (the last 32 bits, inverted); both must be public |
//!
//! The NAT64 local-use prefix (RFC 8215) is not globally reachable, and where its
//! translator puts the IPv4 address depends on a prefix length only the network
//! knows, so all of it is non-public; messages show the last 32 bits, where a /96
//! translator reads the address. Teredo traffic goes to the client's address
//! (and bubbles to the server's), so both are judged. Not screened: ISATAP
//! interface identifiers (`…:0:5efe:a.b.c.d` under any prefix), which lead to
//! their IPv4 address only through an ISATAP tunnel configured on the runner's
//! machine; a runner host must not have one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public, as named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Loopback,
    /// IPv4 169.254.0.0/16, where the cloud metadata services live.
    Metadata,
    Private,
    UniqueLocal,
    LinkLocal,
    SiteLocal,
    /// Any other non-public range (unspecified, multicast, shared, reserved, …).
    Other,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Loopback => "loopback",
            Kind::Metadata => "link-local (cloud metadata services live here)",
            Kind::Private => "private-network",
            Kind::UniqueLocal => "unique-local (private-network)",
            Kind::LinkLocal => "link-local",
            Kind::SiteLocal => "site-local (deprecated, private-network)",
            Kind::Other => "non-public",
        }
    }
}

/// An IPv6 form that carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Mapped,
    Compatible,
    Translated,
    Nat64,
    Nat64LocalUse,
    SixToFour,
    /// The client's address (stored inverted in the last 32 bits).
    TeredoClient,
    /// The Teredo server's address (bits 32 to 63).
    TeredoServer,
}

impl Form {
    fn text(self) -> &'static str {
        match self {
            Form::Mapped => "an IPv4-mapped (::ffff:0:0/96) address",
            Form::Compatible => "an IPv4-compatible (::/96) address",
            Form::Translated => "an IPv4-translated (SIIT, ::ffff:0:0:0/96) address",
            Form::Nat64 => "a NAT64 (64:ff9b::/96) address",
            Form::Nat64LocalUse => "a NAT64 local-use (64:ff9b:1::/48) address",
            Form::SixToFour => "a 6to4 (2002::/16) address",
            Form::TeredoClient => "a Teredo (2001::/32) address whose client is",
            Form::TeredoServer => "a Teredo (2001::/32) address whose server is",
        }
    }
}

/// What an address is, for the screen and for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    /// Not public by itself.
    NonPublic(Kind),
    /// An IPv6 address carrying the IPv4 address `v4`, which is not public
    /// (`kind` is `None` only for the NAT64 local-use prefix, non-public
    /// whatever it carries).
    Embeds {
        form: Form,
        v4: Ipv4Addr,
        kind: Option<Kind>,
    },
}

impl Class {
    pub fn is_public(self) -> bool {
        self == Class::Public
    }

    /// The address described for a refusal: `a loopback address`, `a NAT64
    /// (64:ff9b::/96) address embedding the IPv4 address 127.0.0.1, a loopback
    /// address`.
    pub fn describe(self) -> String {
        match self {
            Class::Public => "a public address".to_owned(),
            Class::NonPublic(kind) => format!("a {} address", kind.text()),
            Class::Embeds {
                form: form @ (Form::TeredoClient | Form::TeredoServer),
                v4,
                kind,
            } => format!(
                "{} the IPv4 address {v4}, a {} address",
                form.text(),
                kind.unwrap_or(Kind::Other).text()
            ),
            Class::Embeds {
                form,
                v4,
                kind: Some(kind),
            } => format!(
                "{} embedding the IPv4 address {v4}, a {} address",
                form.text(),
                kind.text()
            ),
            Class::Embeds {
                form,
                v4,
                kind: None,
            } => format!(
                "{} embedding the IPv4 address {v4} (in its last 32 bits), a prefix that is not globally reachable",
                form.text()
            ),
        }
    }
}

/// Whether `ip` is anything but a public address.
pub fn is_non_public(ip: IpAddr) -> bool {
    !classify(ip).is_public()
}

/// Classifies `ip`; IPv6 forms carrying an IPv4 address are judged by that
/// address (the table in the module doc).
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => kind_v4(v4).map_or(Class::Public, Class::NonPublic),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    // `::` and `::1` mean themselves, not 0.0.0.0 and 0.0.0.1.
    if ip.is_unspecified() {
        return Class::NonPublic(Kind::Other);
    }
    if ip.is_loopback() {
        return Class::NonPublic(Kind::Loopback);
    }
    let s = ip.segments();
    let last = Ipv4Addr::from_bits(ip.to_bits() as u32);
    let carried: &[(Form, Ipv4Addr)] = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => &[(Form::Mapped, last)],
        [0, 0, 0, 0, 0, 0, _, _] => &[(Form::Compatible, last)],
        [0, 0, 0, 0, 0xffff, 0, _, _] => &[(Form::Translated, last)],
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => &[(Form::Nat64, last)],
        [0x64, 0xff9b, 1, ..] => {
            return Class::Embeds {
                form: Form::Nat64LocalUse,
                v4: last,
                kind: kind_v4(last),
            };
        }
        [0x2002, a, b, ..] => &[(Form::SixToFour, v4_of(a, b))],
        [0x2001, 0, a, b, _, _, c, d] => &[
            (
                Form::TeredoClient,
                Ipv4Addr::from_bits(!v4_of(c, d).to_bits()),
            ),
            (Form::TeredoServer, v4_of(a, b)),
        ],
        _ => &[],
    };
    for &(form, v4) in carried {
        if let Some(kind) = kind_v4(v4) {
            return Class::Embeds {
                form,
                v4,
                kind: Some(kind),
            };
        }
    }
    if !carried.is_empty() {
        return Class::Public;
    }
    kind_v6(ip).map_or(Class::Public, Class::NonPublic)
}

fn v4_of(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from_bits((u32::from(high) << 16) | u32::from(low))
}

fn kind_v4(ip: Ipv4Addr) -> Option<Kind> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some(Kind::Loopback)
    } else if ip.is_link_local() {
        Some(Kind::Metadata)
    } else if ip.is_private() {
        Some(Kind::Private)
    } else if ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
    // reserved
    {
        Some(Kind::Other)
    } else {
        None
    }
}

fn kind_v6(ip: Ipv6Addr) -> Option<Kind> {
    let first = ip.segments()[0];
    if (first & 0xfe00) == 0xfc00 {
        Some(Kind::UniqueLocal) // e.g. fd00:ec2::254, a metadata service
    } else if (first & 0xffc0) == 0xfe80 {
        Some(Kind::LinkLocal)
    } else if (first & 0xffc0) == 0xfec0 {
        Some(Kind::SiteLocal)
    } else if ip.is_multicast() {
        Some(Kind::Other)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 addresses every form is tried with, and what each must be.
    const TARGETS: [(&str, Option<Kind>); 4] = [
        ("127.0.0.1", Some(Kind::Loopback)),
        ("169.254.169.254", Some(Kind::Metadata)),
        ("10.1.2.3", Some(Kind::Private)),
        ("93.184.216.34", None),
    ];

    /// Writes `v4` in `form`.
    fn embed(form: Form, v4: Ipv4Addr) -> Ipv6Addr {
        let b = u128::from(v4.to_bits());
        Ipv6Addr::from_bits(match form {
            Form::Mapped => 0xffff << 32 | b,
            Form::Compatible => b,
            Form::Translated => 0xffff << 48 | b,
            Form::Nat64 => 0x64_ff9b << 96 | b,
            Form::Nat64LocalUse => 0x64_ff9b_0001 << 80 | b,
            Form::SixToFour => 0x2002 << 112 | b << 80 | 1,
            // A public server (192.0.2.1 is documentation, so use 8.8.8.8) and
            // the client, inverted.
            Form::TeredoClient => {
                0x2001_0000 << 96 | 0x0808_0808 << 64 | 0x8000_1234 << 32 | (!b & 0xffff_ffff)
            }
            // A public client (8.8.4.4, inverted) and the server.
            Form::TeredoServer => {
                0x2001_0000 << 96 | b << 64 | 0x8000_1234 << 32 | u128::from(!0x0808_0404u32)
            }
        })
    }

    #[test]
    fn every_form_is_judged_by_the_ipv4_address_it_carries() {
        use Form::*;
        let forms = [
            Mapped,
            Compatible,
            Translated,
            Nat64,
            SixToFour,
            TeredoClient,
            TeredoServer,
        ];
        for form in forms {
            for (v4, kind) in TARGETS {
                let v4: Ipv4Addr = v4.parse().unwrap();
                let ip = embed(form, v4);
                let expected = match kind {
                    Some(kind) => Class::Embeds {
                        form,
                        v4,
                        kind: Some(kind),
                    },
                    None => Class::Public,
                };
                assert_eq!(classify(IpAddr::V6(ip)), expected, "{form:?} {v4} as {ip}");
            }
        }
    }

    #[test]
    fn the_nat64_local_use_prefix_is_non_public_whatever_it_carries() {
        for (v4, kind) in TARGETS {
            let v4: Ipv4Addr = v4.parse().unwrap();
            let ip = embed(Form::Nat64LocalUse, v4);
            assert_eq!(
                classify(IpAddr::V6(ip)),
                Class::Embeds {
                    form: Form::Nat64LocalUse,
                    v4,
                    kind
                },
                "{ip}"
            );
        }
        // Other layouts of the prefix (RFC 6052's /48 … /80) are refused too.
        assert!(is_non_public("64:ff9b:1:5db8:d8:2200::".parse().unwrap()));
    }

    #[test]
    fn the_embedding_helper_writes_the_documented_forms() {
        // Guards the table test against a wrong `embed`.
        let lo: Ipv4Addr = "127.0.0.1".parse().unwrap();
        for (form, text) in [
            (Form::Mapped, "::ffff:127.0.0.1"),
            (Form::Compatible, "::7f00:1"),
            (Form::Translated, "::ffff:0:7f00:1"),
            (Form::Nat64, "64:ff9b::7f00:1"),
            (Form::Nat64LocalUse, "64:ff9b:1::7f00:1"),
            (Form::SixToFour, "2002:7f00:1::1"),
            (Form::TeredoClient, "2001:0:808:808:8000:1234:80ff:fffe"),
            (Form::TeredoServer, "2001:0:7f00:1:8000:1234:f7f7:fbfb"),
        ] {
            assert_eq!(embed(form, lo).to_string(), text, "{form:?}");
        }
    }

    #[test]
    fn addresses_of_their_own() {
        for (ip, class) in [
            ("127.0.0.1", Class::NonPublic(Kind::Loopback)),
            ("169.254.169.254", Class::NonPublic(Kind::Metadata)),
            ("10.0.0.1", Class::NonPublic(Kind::Private)),
            ("172.16.5.4", Class::NonPublic(Kind::Private)),
            ("192.168.1.1", Class::NonPublic(Kind::Private)),
            ("100.64.0.1", Class::NonPublic(Kind::Other)),
            ("0.0.0.0", Class::NonPublic(Kind::Other)),
            ("255.255.255.255", Class::NonPublic(Kind::Other)),
            ("::", Class::NonPublic(Kind::Other)),
            ("::1", Class::NonPublic(Kind::Loopback)),
            ("fd00:ec2::254", Class::NonPublic(Kind::UniqueLocal)),
            ("fe80::1", Class::NonPublic(Kind::LinkLocal)),
            ("fec0::1", Class::NonPublic(Kind::SiteLocal)),
            ("ff02::1", Class::NonPublic(Kind::Other)),
            ("93.184.216.34", Class::Public),
            ("8.8.8.8", Class::Public),
            ("2606:4700::1111", Class::Public),
            // Near the embedding prefixes, outside them.
            ("64:ff9b:2::7f00:1", Class::Public),
            ("2001:1::7f00:1", Class::Public),
            ("2003::7f00:1", Class::Public),
            ("::1:ffff:7f00:1", Class::Public),
        ] {
            assert_eq!(classify(ip.parse().unwrap()), class, "{ip}");
        }
    }

    #[test]
    fn descriptions_name_the_embedded_ipv4_address() {
        let d = |ip: &str| classify(ip.parse().unwrap()).describe();
        assert_eq!(d("10.0.0.1"), "a private-network address");
        assert_eq!(
            d("64:ff9b::a9fe:a9fe"),
            "a NAT64 (64:ff9b::/96) address embedding the IPv4 address 169.254.169.254, a link-local (cloud metadata services live here) address"
        );
        assert_eq!(
            d("2001:0:808:808:8000:1234:80ff:fffe"),
            "a Teredo (2001::/32) address whose client is the IPv4 address 127.0.0.1, a loopback address"
        );
        assert_eq!(
            d("64:ff9b:1::808:808"),
            "a NAT64 local-use (64:ff9b:1::/48) address embedding the IPv4 address 8.8.8.8 (in its last 32 bits), a prefix that is not globally reachable"
        );
    }
}
