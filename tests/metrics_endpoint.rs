//! The Prometheus endpoint serves `/metrics` on the address it is given, and with a bearer
//! token answers 401 to every request without it (no broker needed). One recorder per
//! process: this binary installs it once.

use exactly::framework::observability::{metric, MetricsEndpoint};
use exactly::Secret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// `GET path` with an optional Authorization header: (status, body).
fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_answer_only_with_the_bearer_token_on_the_given_address() {
    let addr = MetricsEndpoint::new("127.0.0.1:0".parse().unwrap())
        .with_bearer_token(Secret::value("s3cret-token"))
        .install()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    metrics::counter!(metric::RECORDS_IN).increment(7);

    let (status, body) = get(addr, "/metrics", Some("Bearer s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines()
            .any(|l| l == format!("{} 7", metric::RECORDS_IN)),
        "{body}"
    );
    for wrong in [None, Some("Bearer s3cret"), Some("Basic s3cret-token")] {
        let (status, body) = get(addr, "/metrics", wrong);
        assert_eq!(status, 401, "{wrong:?}: {body}");
        assert!(!body.contains(metric::RECORDS_IN), "{body}");
    }
    assert_eq!(get(addr, "/other", Some("Bearer s3cret-token")).0, 404);

    // A second endpoint: the recorder is taken, and the error says so.
    let e = MetricsEndpoint::new("127.0.0.1:0".parse().unwrap())
        .install()
        .unwrap_err();
    assert!(e.to_string().contains("metrics_addr"), "{e}");
}
