//! The bytes of one upgraded WebSocket: socket → session actor → socket.
//!
//! The session is an `actix-web-actors` actor (`WebsocketContext::with_codec`). This
//! module owns both directions of the socket and bounds each:
//!
//! - **In**: [`FrameReader`] reads frames itself and hands the session whole decoded
//!   frames. A frame's declared length is checked as soon as its header is in: past
//!   the hard limit the connection is closed with 1009 at once (nothing of the
//!   payload is buffered); past `limits.ws_frame_bytes` the payload is skipped as it
//!   arrives and the client told `too_large` (the connection stays usable). Unparsed
//!   input is at most one allowed frame plus one read.
//! - **Out**: what the session encodes goes into an outbound queue that the socket
//!   drains as fast as the client reads. The session is polled while the socket is
//!   blocked, so it keeps answering its mailbox; the queue's size is published to it
//!   ([`Outbound`]) so long answers (`sync`, catch-up) are paced by the client's
//!   reading. A queue that grows past `limits.ws_outbound_bytes` means the client has
//!   stopped reading: the session is closed with 1013 (it reconnects and `sync`s;
//!   every message is in MySQL).
//!
//! - **Close**: once the session has queued its close frame, the closing handshake
//!   (RFC 6455 §7.1) runs here: what is queued is sent while the client's input is
//!   still read — frame by frame, from where the session's reader stopped — until
//!   the client's own close frame (or its end of stream), and only then is the
//!   socket closed. Closing with unread input would make the kernel send a reset,
//!   which discards the close frame still in our send buffer: a client that was
//!   sending at that moment would see an abnormal closure instead of the code.
//!
//! No buffer is kept while a connection is idle: reads go through a stack buffer,
//! and the queues are empty.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message, ProtocolError};
use actix_web::error::PayloadError;
use actix_web_actors::ws;
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use parley_actors::session::Inbound;
use parley_actors::Session;
use tokio::net::TcpStream;

/// Largest single read; it lives on the stack only while a read runs.
const READ_CHUNK: usize = 16 * 1024;
/// After our close frame, how long the peer has to take what is queued and close
/// its side.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read (and discarded) while waiting for the peer's close when its
/// frames cannot be followed (the connection ended on a protocol error): a peer
/// still streaming the payload of a frame refused at its header is cut off.
const LINGER_BYTES: usize = 64 * 1024;

/// The socket, and what the session's reader left unread when the session ended:
/// the closing handshake goes on reading frames where it stopped.
struct Socket {
    io: TcpStream,
    leftover: Cell<Option<Leftover>>,
}

impl std::ops::Deref for Socket {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.io
    }
}

/// Where the input stood when the session's reader was dropped.
enum Leftover {
    /// Mid-stream: the unparsed bytes and the payload bytes still to skip.
    Frames { buf: BytesMut, skip: u64 },
    /// The client sent its close frame, or ended its stream: nothing more to read.
    Closed,
    /// A protocol error: frame boundaries are lost.
    Lost,
}

/// The limits one connection runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame the session is given (`limits.ws_frame_bytes`); larger ones,
    /// up to `hard`, are skipped and answered `too_large`.
    pub frame: usize,
    /// A frame declaring more than this closes the connection (1009) at once.
    pub hard: u64,
    /// Most bytes queued for a client that is not reading before it is closed (1013).
    pub outbound: usize,
}

/// Runs `session` on `io` until either side closes. `early` holds bytes the client
/// sent behind its upgrade request.
pub async fn serve(io: TcpStream, early: Bytes, session: Session, limits: Limits) {
    let io = Rc::new(Socket {
        io,
        leftover: Cell::new(None),
    });
    let meter = session.outbound();
    let input = FrameReader::new(io.clone(), early, limits);
    let session = session.with_input(Box::pin(input));
    // The context's own byte stream is never used: `FrameReader` feeds the session.
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    let codec = Codec::new().max_size(limits.frame);
    let mut output = Box::pin(ws::WebsocketContext::with_codec(session, unused, codec));
    let mut queue = Queue::default();
    let mut too_far_behind = false;
    loop {
        if let Err(e) = queue.flush(&io) {
            // The peer is gone; dropping the output stops the session.
            tracing::debug!(error = %e, "writing to a WebSocket");
            return;
        }
        meter.set(queue.bytes);
        if queue.bytes > limits.outbound {
            tracing::info!(
                queued = queue.bytes,
                "closing a WebSocket whose client stopped reading (1013)"
            );
            too_far_behind = true;
            break;
        }
        tokio::select! {
            biased;
            chunk = output.next() => match chunk {
                Some(Ok(bytes)) => queue.push(bytes),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "encoding a WebSocket frame");
                    return;
                }
                // The session ended (its close frame is queued).
                None => break,
            },
            ready = io.writable(), if !queue.is_empty() => {
                if ready.is_err() {
                    return;
                }
            }
        }
    }
    // Dropping the session drops its reader, which leaves its state in `io`.
    drop(output);
    if too_far_behind {
        queue.push(close_frame(
            CloseCode::Again,
            "too far behind; reconnect and sync",
        ));
    }
    let leftover = io.leftover.take().unwrap_or(Leftover::Lost);
    let _ = tokio::time::timeout(LINGER, close_handshake(&io, &mut queue, leftover)).await;
}

/// Our close frame is queued: send the queue while reading what the client still
/// sends, until its close frame (or end of stream); then half-close. Returning
/// early (an error, the budget) only means the socket is closed as it is.
async fn close_handshake(io: &TcpStream, queue: &mut Queue, leftover: Leftover) {
    // Bounded by time (the caller's LINGER), not bytes: a client writing back to
    // back over loopback sends tens of megabytes before it reads our close frame,
    // and reading them costs little (no payload is looked at or kept).
    let (mut buf, mut skip, mut peer_closed) = match leftover {
        Leftover::Frames { buf, skip } => (buf, skip, false),
        Leftover::Closed => (BytesMut::new(), 0, true),
        Leftover::Lost => {
            if queue.drain(io).await.is_ok() {
                let _ = socket2::SockRef::from(io).shutdown(std::net::Shutdown::Write);
                discard_until_closed(io).await;
            }
            return;
        }
    };
    peer_closed = peer_closed || close_seen(&mut buf, &mut skip);
    let mut half_closed = false;
    std::future::poll_fn(|cx| loop {
        if queue.flush(io).is_err() {
            return Poll::Ready(());
        }
        if queue.is_empty() && !half_closed {
            let _ = socket2::SockRef::from(io).shutdown(std::net::Shutdown::Write);
            half_closed = true;
        }
        if half_closed && peer_closed {
            return Poll::Ready(());
        }
        if !queue.is_empty() {
            match io.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                // Registered for writability; reading below may still progress.
                Poll::Pending => {}
            }
        }
        if peer_closed {
            return Poll::Pending;
        }
        if ready!(io.poll_read_ready(cx)).is_err() {
            return Poll::Ready(());
        }
        let mut chunk = [0u8; READ_CHUNK];
        match io.try_read(&mut chunk) {
            Ok(0) => peer_closed = true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                peer_closed = close_seen(&mut buf, &mut skip);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Poll::Ready(()),
        }
    })
    .await
}

/// Discards whole frames from `buf` (and `skip` payload bytes still to come);
/// true once a close frame's header is seen. Payloads are never looked at.
fn close_seen(buf: &mut BytesMut, skip: &mut u64) -> bool {
    loop {
        let n = (*skip).min(buf.len() as u64);
        buf.advance(n as usize);
        *skip -= n;
        if *skip > 0 {
            return false;
        }
        let Some(h) = header(buf) else {
            return false;
        };
        if h.opcode == 0x8 {
            return true;
        }
        *skip = h.len as u64 + h.payload;
    }
}

/// Encoded frames waiting for the socket.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Queue {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes what the socket takes now, without waiting.
    fn flush(&mut self, io: &TcpStream) -> io::Result<()> {
        while let Some(front) = self.chunks.front_mut() {
            match io.try_write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes -= n;
                    front.advance(n);
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes everything, waiting for the socket as needed.
    async fn drain(&mut self, io: &TcpStream) -> io::Result<()> {
        loop {
            self.flush(io)?;
            if self.is_empty() {
                return Ok(());
            }
            io.writable().await?;
        }
    }
}

fn close_frame(code: CloseCode, description: &str) -> Bytes {
    let mut buf = BytesMut::new();
    let reason = CloseReason {
        code,
        description: Some(description.into()),
    };
    // Encoding a close frame into memory cannot fail.
    let _ = Codec::new().encode(Message::Close(Some(reason)), &mut buf);
    buf.freeze()
}

/// Reads and discards until the peer closes (or errs), at most [`LINGER_BYTES`]: a
/// peer still streaming after our close (say, the payload of a frame refused at its
/// header) is cut off, not read. The buffer lives only inside each poll.
async fn discard_until_closed(io: &TcpStream) {
    let mut budget = LINGER_BYTES;
    std::future::poll_fn(|cx| loop {
        if ready!(io.poll_read_ready(cx)).is_err() {
            return Poll::Ready(());
        }
        let mut buf = [0u8; 512];
        match io.try_read(&mut buf) {
            Ok(0) => return Poll::Ready(()),
            Ok(n) if n >= budget => return Poll::Ready(()),
            Ok(n) => budget -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Poll::Ready(()),
        }
    })
    .await
}

/// A frame's header, as far as the limits care.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    /// Bytes of the header itself (with the extended length and the mask).
    len: usize,
    /// The payload length it declares.
    payload: u64,
    control: bool,
    opcode: u8,
}

/// Parses the header at the start of `buf` (RFC 6455 §5.2), or `None` while it is
/// incomplete (at most 14 bytes: the declared length is known before any payload).
/// Only the length matters here; the codec checks the rest.
fn header(buf: &[u8]) -> Option<Header> {
    let (&b0, rest) = buf.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let masked = b1 & 0x80 != 0;
    let (ext, payload) = match b1 & 0x7f {
        126 => (
            2,
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(rest.get(..8)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    let len = 2 + ext + if masked { 4 } else { 0 };
    (buf.len() >= len).then_some(Header {
        len,
        payload,
        control: b0 & 0x08 != 0,
        opcode: b0 & 0x0f,
    })
}

/// The socket's incoming frames, decoded, for the session.
struct FrameReader {
    io: Rc<Socket>,
    /// Bytes read and not yet handed over: the frame being assembled (at most one
    /// allowed frame) and whatever followed it in the same read.
    buf: BytesMut,
    /// Payload bytes of a skipped (too large) frame still to discard.
    skip: u64,
    codec: Codec,
    limits: Limits,
    done: bool,
    /// The client's close frame was handed over, or its stream ended.
    peer_closed: bool,
}

impl Drop for FrameReader {
    /// Leaves where the input stands to the closing handshake.
    fn drop(&mut self) {
        let state = if self.peer_closed {
            Leftover::Closed
        } else if self.done {
            Leftover::Lost
        } else {
            Leftover::Frames {
                buf: std::mem::take(&mut self.buf),
                skip: self.skip,
            }
        };
        self.io.leftover.set(Some(state));
    }
}

impl FrameReader {
    fn new(io: Rc<Socket>, early: Bytes, limits: Limits) -> FrameReader {
        FrameReader {
            io,
            buf: BytesMut::from(&early[..]),
            skip: 0,
            codec: Codec::new().max_size(limits.frame),
            limits,
            done: false,
            peer_closed: false,
        }
    }

    /// The next frame from what is buffered, if it is complete (or needs no more).
    fn parse(&mut self) -> Option<Inbound> {
        if self.skip > 0 {
            let n = self.skip.min(self.buf.len() as u64) as usize;
            self.buf.advance(n);
            self.skip -= n as u64;
            if self.skip > 0 {
                return None;
            }
        }
        let h = header(&self.buf)?;
        if h.payload > self.limits.hard || (h.control && h.payload > 125) {
            return Some(Inbound::Fatal(if h.control {
                ProtocolError::InvalidLength(h.payload as usize)
            } else {
                ProtocolError::Overflow
            }));
        }
        if h.payload > self.limits.frame as u64 {
            self.buf.advance(h.len);
            self.skip = h.payload;
            // Whatever of the payload is here already goes at once.
            let n = self.skip.min(self.buf.len() as u64) as usize;
            self.buf.advance(n);
            self.skip -= n as u64;
            return Some(Inbound::TooLarge {
                declared: h.payload,
            });
        }
        match self.codec.decode(&mut self.buf) {
            Ok(Some(frame)) => Some(match message(frame) {
                Ok(m) => {
                    self.peer_closed |= matches!(m, Message::Close(_));
                    Inbound::Frame(m)
                }
                Err(e) => Inbound::Fatal(e),
            }),
            Ok(None) => None,
            Err(e) => Some(Inbound::Fatal(e)),
        }
    }

    /// Reads once into `buf`; `Ready(false)` at the end of the input.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            let mut chunk = [0u8; READ_CHUNK];
            match self.io.try_read(&mut chunk) {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(n) => {
                    if self.buf.is_empty() {
                        // A fresh buffer of exactly what arrived: an idle connection
                        // keeps no read capacity (the old one goes with its frames).
                        self.buf = BytesMut::from(&chunk[..n]);
                    } else {
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                    return Poll::Ready(Ok(true));
                }
                // Readiness was stale; `poll_read_ready` registers for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Stream for FrameReader {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(item) = this.parse() {
                if matches!(item, Inbound::Fatal(_)) {
                    this.done = true;
                    this.buf = BytesMut::new();
                }
                return Poll::Ready(Some(item));
            }
            match ready!(this.poll_read(cx)) {
                Ok(true) => {}
                Ok(false) => {
                    this.done = true;
                    this.peer_closed = true;
                    return Poll::Ready(None);
                }
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Inbound::Fatal(ProtocolError::Io(e))));
                }
            }
        }
    }
}

/// A decoded frame as the session's message type (as `actix-web-actors` does it).
fn message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(data) => Message::Text(
            ByteString::try_from(data)
                .map_err(|e| ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        ),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Ping(p) => Message::Ping(p),
        Frame::Pong(p) => Message::Pong(p),
        Frame::Close(reason) => Message::Close(reason),
        Frame::Continuation(item) => Message::Continuation(item),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_declare_their_length_before_any_payload() {
        assert_eq!(header(&[0x81]), None);
        assert_eq!(header(&[0x81, 0x85]), None, "mask not in yet");
        assert_eq!(
            header(&[0x81, 0x85, 1, 2, 3, 4]),
            Some(Header {
                len: 6,
                payload: 5,
                control: false,
                opcode: 0x1,
            })
        );
        // 16-bit and 64-bit lengths, masked: known from the header alone.
        assert_eq!(header(&[0x81, 0xfe, 0x01]), None);
        assert_eq!(
            header(&[0x81, 0xfe, 0x01, 0x00, 1, 2, 3]),
            None,
            "mask incomplete"
        );
        assert_eq!(
            header(&[0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4]).map(|h| (h.len, h.payload)),
            Some((8, 256))
        );
        let gib = (1u64 << 30).to_be_bytes();
        let mut h = vec![0x81, 0xff];
        h.extend_from_slice(&gib);
        h.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(header(&h).map(|h| (h.len, h.payload)), Some((14, 1 << 30)));
        assert!(header(&[0x89, 0x80, 1, 2, 3, 4]).is_some_and(|h| h.control));
    }

    #[test]
    fn the_closing_handshake_skips_whole_frames_until_the_close_frame() {
        // A text frame whose payload holds what would look like a close header, split
        // across reads, then the client's close frame.
        let mut text = vec![0x81, 0x80 | 4, 0, 0, 0, 0];
        text.extend_from_slice(&[0x88, 0x80, 0, 0]);
        let close = [0x88, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xe9];
        let (mut buf, mut skip) = (BytesMut::new(), 0);
        buf.extend_from_slice(&text[..3]);
        assert!(!close_seen(&mut buf, &mut skip));
        buf.extend_from_slice(&text[3..8]);
        assert!(
            !close_seen(&mut buf, &mut skip),
            "a payload is not a header"
        );
        buf.extend_from_slice(&text[8..]);
        buf.extend_from_slice(&close[..1]);
        assert!(
            !close_seen(&mut buf, &mut skip),
            "half a header is not a close"
        );
        buf.extend_from_slice(&close[1..]);
        assert!(close_seen(&mut buf, &mut skip));
        // A large frame's payload is skipped as it arrives, without being buffered.
        let (mut buf, mut skip) = (
            BytesMut::from(&[0x82u8, 0x80 | 126, 0x01, 0x00, 0, 0, 0, 0][..]),
            0,
        );
        assert!(!close_seen(&mut buf, &mut skip));
        assert_eq!((buf.len(), skip), (0, 256));
        buf.extend_from_slice(&[0x88; 256]);
        assert!(!close_seen(&mut buf, &mut skip));
        assert_eq!(skip, 0);
    }
}
