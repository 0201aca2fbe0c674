//! The datagram buffers the UDP paths through nodes share: one to receive
//! into and one to seal into, per thread. A relayed flow's path (one per
//! LAN socket, thousands of them live at once) then holds no 64 KiB buffer
//! while it waits; a datagram is read or sealed here, and only its payload
//! leaves (the one `Vec` a reply returns).
//!
//! The closures are not `async`: nothing can await while holding a buffer,
//! so no two paths ever use it at once. Callers wait for the socket to be
//! ready first, then `try_recv`/`try_send` inside the closure.
//!
//! Neighbours: `shadowsocks` and `socks5` (their UDP paths).

use std::cell::RefCell;

/// Room for the largest UDP payload and a proxy header in front of it.
const RX_ROOM: usize = 65535 + 64;

thread_local! {
    static RX: RefCell<Box<[u8]>> = RefCell::new(vec![0; RX_ROOM].into_boxed_slice());
    static TX: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the receive buffer (`RX_ROOM` bytes).
pub(crate) fn rx<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RX.with_borrow_mut(|buf| f(buf))
}

/// Runs `f` with the buffer to build an outgoing datagram in (cleared
/// first; it keeps its capacity for the next).
pub(crate) fn tx<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    TX.with_borrow_mut(|buf| {
        buf.clear();
        f(buf)
    })
}
