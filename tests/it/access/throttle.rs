//! The wrong-password throttle on both servers: an address that presents wrong credentials
//! `auth_failures` times is refused (HTTP 429, RTSP 503, both with `Retry-After`) on new
//! connections, even with the right password, while other addresses pass; requests without
//! credentials (the first, challenged request of every client) and a right answer in between do
//! not add up; /metrics counts the refusals. Peers are told apart by their loopback address.

use std::net::SocketAddr;

use c300x_bridge::servers::limits::Caps;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::credentials::Fixture;
use super::{Answer, basic, connect_from, read_answer};

const A: [u8; 4] = [127, 0, 0, 2];
const B: [u8; 4] = [127, 0, 0, 3];
const C: [u8; 4] = [127, 0, 0, 4];

fn caps() -> Caps {
    Caps {
        auth_failures: 3,
        ..Caps::default()
    }
}

/// One GET from `src`, with `auth` as its Authorization header.
async fn get_from(src: [u8; 4], to: SocketAddr, path: &str, auth: Option<&str>) -> Answer {
    let mut s = connect_from(src, to).await.expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    read_answer(&mut s, std::time::Duration::from_secs(20)).await
}

/// One DESCRIBE on a new connection from `src`: the status line and headers.
async fn describe_from(src: [u8; 4], to: SocketAddr, auth: Option<&str>) -> String {
    let mut s = connect_from(src, to).await.expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("DESCRIBE rtsp://{to}/doorbell RTSP/1.0\r\nCSeq: 1\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut got))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&got[..n]).into_owned()
}

#[tokio::test]
async fn http_wrong_passwords_get_an_address_refused_and_no_one_else() {
    let f = Fixture::with_caps(caps(), |_| {}).await;
    let (wrong, right) = (basic("admin", "guess"), basic("admin", "s3cret"));
    // Requests without credentials are challenges, not guesses.
    for _ in 0..6 {
        let a = get_from(C, f.http, "/api/status", None).await;
        assert_eq!(a.status, 401, "{}", a.text());
    }
    // A right answer in between starts the count again.
    for auth in [&wrong, &wrong, &right, &wrong, &wrong] {
        let a = get_from(B, f.http, "/api/status", Some(auth)).await;
        assert_ne!(a.status, 429, "B was never over the limit: {}", a.text());
    }
    // Three wrong passwords in a row: the address is refused, the right password included.
    for i in 0..3 {
        let a = get_from(A, f.http, "/api/doorbell/mjpeg", Some(&wrong)).await;
        assert_eq!(a.status, 401, "guess {i}");
    }
    for auth in [Some(wrong.as_str()), Some(right.as_str()), None] {
        let a = get_from(A, f.http, "/api/doorbell/snapshot.jpg?live=1", auth).await;
        assert_eq!(a.status, 429, "{auth:?}: {}", a.text());
        let retry: u64 = a
            .header("Retry-After")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!(retry > 0, "Retry-After {retry}");
    }
    assert_eq!(f.invites(), 0, "nothing refused placed a call");
    // Everyone else still gets in.
    let a = get_from(C, f.http, "/api/status", Some(&right)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let m = get_from(C, f.http, "/metrics", Some(&right)).await.text();
    let line = m
        .lines()
        .find(|l| {
            l.starts_with(
                "c300x_connections_refused_total{server=\"http\",reason=\"auth_throttle\"}",
            )
        })
        .expect("the auth_throttle refusal counter");
    let n: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a count");
    assert_eq!(n, 3, "{line}");
}

#[tokio::test]
async fn rtsp_wrong_passwords_get_an_address_refused_and_no_one_else() {
    let f = Fixture::with_caps(caps(), |_| {}).await;
    let (wrong, right) = (basic("admin", "guess"), basic("admin", "s3cret"));
    for _ in 0..5 {
        let r = describe_from(C, f.rtsp, None).await;
        assert!(r.starts_with("RTSP/1.0 401 "), "no credentials: {r}");
    }
    for i in 0..3 {
        let r = describe_from(A, f.rtsp, Some(&wrong)).await;
        assert!(r.starts_with("RTSP/1.0 401 "), "guess {i}: {r}");
    }
    let r = describe_from(A, f.rtsp, Some(&right)).await;
    assert!(r.starts_with("RTSP/1.0 503 "), "refused address: {r}");
    let retry = r
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("Retry-After");
    assert!(retry > 0);
    assert!(r.contains("wrong credentials"), "{r}");
    assert_eq!(f.invites(), 0, "nothing refused placed a call");
    let r = describe_from(C, f.rtsp, Some(&right)).await;
    assert!(r.starts_with("RTSP/1.0 200 "), "another address: {r}");
}
