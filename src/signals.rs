//! The daemon's signals: SIGHUP (reload), SIGTERM and SIGINT (stop), read
//! from a signalfd on the event loop. While a `Signals` lives the three
//! are blocked for ordinary delivery, so they only arrive through the
//! descriptor, in order, none lost between two reads; dropping it unblocks
//! them. The daemon starts no other program, and its only other thread
//! (loading the TC program) ends before the load returns, so the blocked
//! mask reaches no one else.
//!
//! Neighbours: `daemon` (its only user).

use std::io;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reload,
    Stop,
}

/// The signal descriptor and the mask it was made for.
pub struct Signals {
    fd: AsyncFd<SignalFd>,
    mask: SigSet,
}

impl Signals {
    /// Blocks SIGHUP, SIGTERM and SIGINT and opens a descriptor for them.
    /// Needs a tokio runtime with I/O enabled.
    pub fn new() -> io::Result<Signals> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(s);
        }
        mask.thread_block()?;
        let opened = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io::Error::from)
            .and_then(|fd| {
                // SAFETY: a SignalFd owns its descriptor, keeps it open
                // until it is dropped and always reports that one.
                unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
            });
        match opened {
            Ok(fd) => Ok(Signals { fd, mask }),
            Err(e) => {
                let _ = mask.thread_unblock();
                Err(e)
            }
        }
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> io::Result<Request> {
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| match fd.get_ref().read_signal() {
                Ok(Some(info)) => Ok(info.ssi_signo),
                Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e.into()),
            });
            match read {
                Ok(Ok(signo)) if signo == Signal::SIGHUP as u32 => return Ok(Request::Reload),
                Ok(Ok(_)) => return Ok(Request::Stop),
                Ok(Err(e)) => return Err(e),
                // Nothing to read after all: wait again.
                Err(_) => continue,
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let _ = self.mask.thread_unblock();
    }
}
