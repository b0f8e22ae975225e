//! A granted name whose DNS answer writes a loopback, metadata or private IPv4
//! address in one of the IPv6 forms that carry an IPv4 address (issue 15, item
//! 6): each must be refused like the IPv4 address itself, with a message that
//! names the IPv4 address, and no request may leave.

use super::*;

const LOOPBACK: (&str, &str) = ("127.0.0.1", "loopback");
const METADATA: (&str, &str) = (
    "169.254.169.254",
    "link-local (cloud metadata services live here)",
);
const PRIVATE: (&str, &str) = ("10.0.0.1", "private-network");

/// Runs `http-get` against a granted name that resolves to `ip` only; returns
/// the failure and the name's URL as the messages show it.
pub(super) fn fetch_through_name(ip: &str) -> (StepFailure, String, u16, usize) {
    let server = Server::start();
    let port = server.addr.port();
    let name = "service.example.test";
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let grant = Granted {
        http: HttpGrant::new(&[format!("http://{name}:{port}")]).with_host(name, &[ip]),
        ..granted(&[])
    };
    let f = failure(run_with(
        "http-get",
        json!({ "url": format!("http://{name}:{port}/latest/meta-data/") }),
        limits(5_000, 64),
        grant,
    ));
    (
        f,
        format!("http://{name}:{port}"),
        port,
        server.requests().len(),
    )
}

/// Each of `cases` (the IPv6 address, and the IPv4 address and kind it
/// carries) is refused, and the refusal says `{form} {carries} the IPv4
/// address {v4}, a {kind} address`.
fn refused(form: &str, carries: &str, cases: &[(&str, (&str, &str))]) {
    for (ip, (v4, kind)) in cases {
        let (f, url, port, sent) = fetch_through_name(ip);
        let shown: std::net::Ipv6Addr = ip.parse().unwrap();
        assert_eq!(
            f,
            StepFailure::Denied(format!(
                "`{url}` resolves to {shown}, {form} {carries} the IPv4 address {v4}, a {kind} address, which plugin `hostile` may reach only if that address is granted itself; if this is intended, add `http://[{shown}]:{port}` to `plugins.hostile.grants.http` in the playbook"
            )),
            "{ip}"
        );
        assert_eq!(sent, 0, "{ip}: a request reached the server");
    }
}

#[test]
fn ipv4_mapped_answers_are_judged_as_ipv4() {
    refused(
        "an IPv4-mapped (::ffff:0:0/96) address",
        "embedding",
        &[
            ("::ffff:127.0.0.1", LOOPBACK),
            ("::ffff:169.254.169.254", METADATA),
            ("::ffff:10.0.0.1", PRIVATE),
        ],
    );
}

#[test]
fn ipv4_compatible_answers_are_judged_as_ipv4() {
    refused(
        "an IPv4-compatible (::/96) address",
        "embedding",
        &[
            ("::127.0.0.1", LOOPBACK),
            ("::169.254.169.254", METADATA),
            ("::10.0.0.1", PRIVATE),
        ],
    );
}

#[test]
fn siit_ipv4_translated_answers_are_judged_as_ipv4() {
    refused(
        "an IPv4-translated (SIIT, ::ffff:0:0:0/96) address",
        "embedding",
        &[
            ("::ffff:0:127.0.0.1", LOOPBACK),
            ("::ffff:0:169.254.169.254", METADATA),
            ("::ffff:0:10.0.0.1", PRIVATE),
        ],
    );
}

#[test]
fn nat64_answers_are_judged_as_ipv4() {
    refused(
        "a NAT64 (64:ff9b::/96) address",
        "embedding",
        &[
            ("64:ff9b::127.0.0.1", LOOPBACK),
            ("64:ff9b::169.254.169.254", METADATA),
            ("64:ff9b::10.0.0.1", PRIVATE),
        ],
    );
}

#[test]
fn nat64_local_use_answers_are_refused() {
    refused(
        "a NAT64 local-use (64:ff9b:1::/48) address",
        "embedding",
        &[
            ("64:ff9b:1::127.0.0.1", LOOPBACK),
            ("64:ff9b:1::169.254.169.254", METADATA),
            ("64:ff9b:1::10.0.0.1", PRIVATE),
        ],
    );
    // Non-public as a whole: the IPv4 address it would reach depends on the
    // translator's prefix length.
    let (f, url, port, sent) = fetch_through_name("64:ff9b:1::8.8.8.8");
    assert_eq!(
        f,
        StepFailure::Denied(format!(
            "`{url}` resolves to 64:ff9b:1::808:808, a NAT64 local-use (64:ff9b:1::/48) address embedding the IPv4 address 8.8.8.8 (in its last 32 bits), a prefix that is not globally reachable, which plugin `hostile` may reach only if that address is granted itself; if this is intended, add `http://[64:ff9b:1::808:808]:{port}` to `plugins.hostile.grants.http` in the playbook"
        ))
    );
    assert_eq!(sent, 0);
}

#[test]
fn sixtofour_answers_are_judged_by_their_ipv4_address() {
    refused(
        "a 6to4 (2002::/16) address",
        "embedding",
        &[
            ("2002:7f00:1::1", LOOPBACK),
            ("2002:a9fe:a9fe::1", METADATA),
            ("2002:a00:1::1", PRIVATE),
        ],
    );
}

#[test]
fn teredo_answers_are_judged_by_their_client_and_server_addresses() {
    // The client's address is stored inverted in the last 32 bits; the server
    // (8.8.8.8 here) is public.
    refused(
        "a Teredo (2001::/32) address",
        "whose client is",
        &[
            ("2001:0:808:808:8000:1234:80ff:fffe", LOOPBACK),
            ("2001:0:808:808:8000:1234:5601:5601", METADATA),
            ("2001:0:808:808:8000:1234:f5ff:fffe", PRIVATE),
        ],
    );
    // A public client (8.8.4.4, inverted) behind a non-public server.
    refused(
        "a Teredo (2001::/32) address",
        "whose server is",
        &[
            ("2001:0:7f00:1:8000:1234:f7f7:fbfb", LOOPBACK),
            ("2001:0:a9fe:a9fe:8000:1234:f7f7:fbfb", METADATA),
            ("2001:0:a00:1:8000:1234:f7f7:fbfb", PRIVATE),
        ],
    );
}

#[test]
fn an_embedding_form_granted_literally_goes_through() {
    // The control case: the same name and plugin reach the server when the
    // address is granted itself; `::ffff:127.0.0.1` is loopback on this
    // machine, so nothing leaves it.
    let server = Server::start();
    let port = server.addr.port();
    let name = "service.example.test";
    let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    let grant = Granted {
        http: HttpGrant::new(&[
            format!("http://{name}:{port}"),
            format!("http://[::ffff:127.0.0.1]:{port}"),
        ])
        .with_host(name, &[mapped]),
        ..granted(&[])
    };
    let r = run_with(
        "http-get",
        json!({ "url": format!("http://{name}:{port}/health") }),
        limits(5_000, 64),
        grant,
    );
    let out = r.outcome.expect("a literally granted address");
    assert_eq!(out.outputs["status"], json!(200));
    assert_eq!(server.requests().len(), 1);
}
