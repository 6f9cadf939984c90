//! Requests that are wrong at the HTTP level get the status that says why: a body
//! announced too large is refused before it is sent (no `100 Continue`), a malformed
//! chunked body is a bad request, not a too-large one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::start;

/// Sends `request` on a new connection; returns what the server answered before it
/// closed the connection or went quiet for a second.
fn exchange(base: &str, request: &[u8]) -> String {
    let address = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    // The server may answer and close before it read everything: what it said counts.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_body_announced_too_large_is_refused_before_it_is_sent() {
    let site = start();
    let answer = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "refused at once: {answer}"
    );
    assert!(!answer.contains("100 Continue"), "{answer}");
    // Without Expect too: the announced length is enough.
    let answer = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000000\r\n\r\nlogin=x",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body within the limit is still asked for and read.
    let answer = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nlogin=x",
    );
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    assert!(answer.contains("HTTP/1.1 400"), "CSRF refused: {answer}");
}

#[test]
fn a_malformed_chunked_body_is_a_bad_request() {
    let site = start();
    let answer = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nlogin=x\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
