//! The bytes of one upgraded WebSocket: socket → session actor → socket.
//!
//! The session is an `actix-web-actors` actor (`WebsocketContext::with_codec`): it
//! decodes what it is fed and yields encoded frames. This module only moves bytes,
//! and keeps no buffer while a connection is idle — what an idle connection costs
//! is its actor and its task. Reads go through a stack buffer and become `Bytes` of
//! exactly what arrived; writes go straight from the encoded frames. Polling the
//! output drives the actor; while a write waits for a slow reader the actor is not
//! polled, so its mailbox fills and the rooms' backpressure applies (a session that
//! stays behind is closed; `TCP_USER_TIMEOUT` drops a peer that stopped acknowledging).

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web_actors::ws;
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use parley_actors::Session;
use tokio::net::TcpStream;

/// Largest single read; it lives on the stack only while a read runs.
const READ_CHUNK: usize = 16 * 1024;
/// After our close frame, how long the peer has to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Runs `session` on `io` until either side closes. `early` holds bytes the client
/// sent behind its upgrade request.
pub async fn serve(io: TcpStream, early: Bytes, session: Session, frame_size: usize) {
    let io = Rc::new(io);
    let input = SocketReader {
        io: io.clone(),
        early: (!early.is_empty()).then_some(early),
        done: false,
    };
    let codec = actix_http::ws::Codec::new().max_size(frame_size);
    let mut output = std::pin::pin!(ws::WebsocketContext::with_codec(session, input, codec));
    while let Some(chunk) = output.next().await {
        let written = match chunk {
            Ok(bytes) => write_all(&io, bytes).await,
            Err(e) => {
                tracing::debug!(error = %e, "encoding a WebSocket frame");
                return;
            }
        };
        if let Err(e) = written {
            // The peer is gone; dropping the output stops the session.
            tracing::debug!(error = %e, "writing to a WebSocket");
            return;
        }
    }
    // The session ended (its close frame is out): half-close, and give the peer a
    // moment to answer with its own close so the connection ends cleanly, not reset.
    let _ = socket2::SockRef::from(&*io).shutdown(std::net::Shutdown::Write);
    let _ = tokio::time::timeout(LINGER, drain(&io)).await;
}

async fn write_all(io: &TcpStream, mut bytes: Bytes) -> io::Result<()> {
    while !bytes.is_empty() {
        match io.try_write(&bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and discards until the peer closes (or errs). The buffer lives only inside
/// each poll, not in the connection's future.
async fn drain(io: &TcpStream) {
    std::future::poll_fn(|cx| loop {
        if ready!(io.poll_read_ready(cx)).is_err() {
            return Poll::Ready(());
        }
        let mut buf = [0u8; 512];
        match io.try_read(&mut buf) {
            Ok(0) => return Poll::Ready(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Poll::Ready(()),
        }
    })
    .await
}

/// The socket's incoming bytes as the stream the session's codec reads.
struct SocketReader {
    io: Rc<TcpStream>,
    early: Option<Bytes>,
    done: bool,
}

impl Stream for SocketReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(early) = self.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            if let Err(e) = ready!(self.io.poll_read_ready(cx)) {
                self.done = true;
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            let mut buf = [0u8; READ_CHUNK];
            match self.io.try_read(&mut buf) {
                Ok(0) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf[..n])))),
                // Readiness was stale; `poll_read_ready` registers for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}
