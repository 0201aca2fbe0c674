//! Copies a relayed connection both ways: client to node and back, with
//! half-close, back-pressure and an idle timeout.
//!
//! No buffer belongs to a connection: a direction takes one from a
//! per-thread pool only while it has bytes in hand (read, not yet
//! written), and gives it back when they are out or when a read finds
//! nothing. An idle connection holds none, so a thousand idle relays cost
//! their sockets and tasks, not a thousand pairs of buffers.
//!
//! A direction whose reader ends (EOF) shuts the other side's writer down
//! (half-close) and is done; the relay ends when both are, on the first
//! error, or when no byte has moved either way for the idle time (after a
//! half-close, for the shorter half-closed time).
//!
//! Neighbours: `relay::tcp` (calls `splice` once both ends are open).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes one read may bring: four of Shadowsocks' largest chunks (0x3FFF
/// bytes), so a full read seals into whole chunks (16 KiB made a 16,383
/// and a 1-byte chunk) and a bulk flow costs a quarter of the system calls.
pub const BUF: usize = 4 * 0x3FFF;
/// Buffers kept in the pool for reuse (512 KiB); more are freed when given
/// back.
const POOL_MAX: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF].into_boxed_slice())
}

fn give(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// Buffers held by connections or in the pool now (for `dae status`).
pub fn pooled() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// One direction's state.
#[derive(Default)]
struct Pump {
    /// Bytes read and not yet all written: `buf[start..end]`.
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// Written since the last flush.
    unflushed: bool,
    /// The reader ended; the writer is being shut down.
    eof: bool,
    done: bool,
    moved: u64,
}

impl Pump {
    /// Moves what it can from `r` to `w`. `Ready(Ok)` when this direction
    /// is over; `progress` is set when a byte moved.
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        progress: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf {
                while self.start < self.end {
                    let n = ready!(w.as_mut().poll_write(cx, &buf[self.start..self.end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.start += n;
                    self.moved += n as u64;
                    self.unflushed = true;
                    *progress = true;
                }
                give(self.buf.take().expect("checked above"));
            }
            if self.unflushed {
                ready!(w.as_mut().poll_flush(cx))?;
                self.unflushed = false;
            }
            if self.eof {
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut buf = take();
            let mut rb = ReadBuf::new(&mut buf);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Pending => {
                    give(buf);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    give(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        give(buf);
                        self.eof = true;
                    } else {
                        self.buf = Some(buf);
                        self.start = 0;
                        self.end = n;
                        *progress = true;
                    }
                }
            }
        }
    }
}

/// How a relay ended, and the bytes each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spliced {
    pub up: u64,
    pub down: u64,
    pub idle: bool,
}

/// Time limits of one relay.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No byte either way for this long ends the relay.
    pub idle: Duration,
    /// After one side has ended, the other may go on this long quietly.
    pub half_closed: Duration,
}

struct Splice<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    up: Pump,
    down: Pump,
    timeouts: Timeouts,
    sleep: Pin<Box<Sleep>>,
}

impl<A, B> Future for Splice<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = (io::Result<()>, Spliced);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.get_mut();
        let mut progress = false;
        let up = me.up.poll(
            cx,
            Pin::new(&mut *me.a),
            Pin::new(&mut *me.b),
            &mut progress,
        );
        let down = me.down.poll(
            cx,
            Pin::new(&mut *me.b),
            Pin::new(&mut *me.a),
            &mut progress,
        );
        let spliced = |idle| Spliced {
            up: me.up.moved,
            down: me.down.moved,
            idle,
        };
        for r in [&up, &down] {
            if let Poll::Ready(Err(e)) = r {
                let e = io::Error::new(e.kind(), e.to_string());
                return Poll::Ready((Err(e), spliced(false)));
            }
        }
        if me.up.done && me.down.done {
            return Poll::Ready((Ok(()), spliced(false)));
        }
        if progress {
            let limit = if me.up.done || me.down.done {
                me.timeouts.half_closed
            } else {
                me.timeouts.idle
            };
            me.sleep.as_mut().reset(Instant::now() + limit);
        }
        if me.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready((Ok(()), spliced(true)));
        }
        Poll::Pending
    }
}

impl<A: ?Sized, B: ?Sized> Drop for Splice<'_, A, B> {
    fn drop(&mut self) {
        for p in [&mut self.up, &mut self.down] {
            if let Some(buf) = p.buf.take() {
                give(buf);
            }
        }
    }
}

/// Copies `a` to `b` and `b` to `a` until both have ended, one fails, or
/// the connection idles out. `up` counts bytes from `a`.
pub async fn splice<A, B>(a: &mut A, b: &mut B, timeouts: Timeouts) -> (io::Result<()>, Spliced)
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Splice {
        a,
        b,
        up: Pump::default(),
        down: Pump::default(),
        timeouts,
        sleep: Box::pin(tokio::time::sleep(timeouts.idle)),
    }
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(60),
        half_closed: Duration::from_secs(5),
    };

    #[test]
    fn copies_both_ways_and_half_closes() {
        rt().block_on(async {
            let (mut client, mut a) = tokio::io::duplex(1024);
            let (mut b, mut server) = tokio::io::duplex(1024);
            let relay = tokio::spawn(async move { splice(&mut a, &mut b, T).await });
            let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            let send = big.clone();
            let writer = tokio::spawn(async move {
                client.write_all(&send).await.unwrap();
                client.shutdown().await.unwrap();
                let mut back = Vec::new();
                client.read_to_end(&mut back).await.unwrap();
                back
            });
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, big, "client to server, then EOF passed on");
            server
                .write_all(b"reply after the client's half-close")
                .await
                .unwrap();
            server.shutdown().await.unwrap();
            assert_eq!(
                writer.await.unwrap(),
                b"reply after the client's half-close"
            );
            let (r, s) = relay.await.unwrap();
            r.unwrap();
            assert_eq!((s.up, s.down, s.idle), (100_000, 35, false));
            assert!(pooled() <= POOL_MAX);
        });
    }

    #[test]
    fn an_idle_relay_ends_and_holds_no_buffer() {
        rt().block_on(async {
            let (_client, mut a) = tokio::io::duplex(64);
            let (mut b, _server) = tokio::io::duplex(64);
            let before = pooled();
            let quick = Timeouts {
                idle: Duration::from_millis(300),
                half_closed: Duration::from_millis(100),
            };
            let relay = tokio::spawn(async move { splice(&mut a, &mut b, quick).await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Waiting: its buffer went back to the pool.
            assert!(pooled() >= before.max(1));
            let (r, s) = relay.await.unwrap();
            r.unwrap();
            assert!(s.idle, "ended by the idle timeout");
            assert_eq!((s.up, s.down), (0, 0));
        });
    }

    #[test]
    fn a_slow_reader_holds_back_the_writer() {
        rt().block_on(async {
            let (mut client, mut a) = tokio::io::duplex(4096);
            let (mut b, mut server) = tokio::io::duplex(4096);
            tokio::spawn(async move { splice(&mut a, &mut b, T).await });
            // The server reads nothing: the client can write what the two
            // pipes and one buffer in hand hold, and then must wait.
            let chunk = vec![7u8; 1024];
            let mut written = 0usize;
            while tokio::time::timeout(Duration::from_millis(200), client.write_all(&chunk))
                .await
                .is_ok()
            {
                written += chunk.len();
                assert!(
                    written <= 4096 + BUF + 4096 + 1024,
                    "no back-pressure: {written}"
                );
            }
            let mut got = vec![0u8; written];
            server.read_exact(&mut got).await.unwrap();
        });
    }
}
