//! Random numbers from the kernel (`getrandom`), buffered: DNS ids for
//! upstream queries and hash seeds. Ids must be unpredictable to an
//! off-path spoofer, so they come from the kernel's CSPRNG, not a PRNG.
//!
//! The daemon is single-threaded; the buffer is thread-local.

use std::cell::RefCell;

const BUF: usize = 4096;

struct Pool {
    bytes: [u8; BUF],
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; BUF], used: BUF }) };
}

fn fill(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n > 0 {
            done += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom(2) exists on every kernel we run on (3.17+); failing
            // here would mean a broken system, and predictable ids are worse
            // than stopping.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
}

fn take<const N: usize>() -> [u8; N] {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.used + N > BUF {
            fill(&mut p.bytes);
            p.used = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&p.bytes[p.used..p.used + N]);
        p.used += N;
        out
    })
}

pub fn u16() -> u16 {
    u16::from_ne_bytes(take::<2>())
}

pub fn u64() -> u64 {
    u64::from_ne_bytes(take::<8>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..1000).map(|_| super::u16()).collect();
        assert!(ids.len() > 900, "only {} distinct ids in 1000", ids.len());
    }
}
