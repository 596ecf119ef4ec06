//! Raw WebSocket frames, for tests that decide byte by byte what is read and written
//! (oversized or fragmented frames, clients that stop reading).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `/ws` by hand on a raw socket: the upgrade request, then the 101
/// response's head. `recv_buffer` shrinks the socket's receive buffer (a client that
/// stops reading then stalls the server's writes quickly).
pub async fn raw_ws(port: u16, token: &str, recv_buffer: Option<u32>) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let mut s = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("upgrade response in time")
            .unwrap();
        assert_eq!(n, 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    s
}

/// A client frame header (masked, FIN) declaring `len` bytes of `opcode`.
pub fn frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![0x80 | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xffff => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: the payload goes as it is
    h
}

/// A whole masked text frame.
pub fn text_frame(payload: &str) -> Vec<u8> {
    let mut f = frame_header(0x1, payload.len() as u64);
    f.extend_from_slice(payload.as_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form_and_a_mask() {
        assert_eq!(frame_header(0x1, 5), [0x81, 0x85, 0, 0, 0, 0]);
        assert_eq!(frame_header(0x2, 126), [0x82, 0xFE, 0, 126, 0, 0, 0, 0]);
        let big = frame_header(0x1, 1 << 30);
        assert_eq!(big[..2], [0x81, 0xFF]);
        assert_eq!(big[2..10], (1u64 << 30).to_be_bytes());
        assert_eq!(big.len(), 14);
        let f = text_frame("hi");
        assert_eq!(f, [0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }
}
