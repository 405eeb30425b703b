//! Readings the kernel keeps for us: socket queue lengths and process memory (SPEC §5.3).
//!
//! These are Linux facilities (`ioctl(SIOCOUTQ)`, `ioctl(FIONREAD)`, `/proc/self`). On other systems
//! every function returns an error of kind [`io::ErrorKind::Unsupported`], and reports show the figure
//! as unavailable rather than as zero.
//!
//! The queue functions take any socket descriptor; [`SocketProbe`](crate::SocketProbe) is how a
//! connection offers them to a [`SocketSet`](crate::SocketSet), and says what they mean for each kind
//! of socket.

use std::io;

/// Bytes in a TCP socket's send queue: written by the application but not yet acknowledged by the
/// peer (sent-but-unacknowledged plus not-yet-sent), from `ioctl(SIOCOUTQ)`. On a Unix domain stream
/// socket, the kernel memory holding what the peer has not yet read (see
/// [`SocketProbe::unsent_bytes`](crate::SocketProbe::unsent_bytes)).
///
/// One system call; does not wait.
#[cfg(target_os = "linux")]
pub fn unsent_bytes(socket: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
    ioctl_int(socket.as_raw_fd(), libc::TIOCOUTQ)
}

/// Bytes that have arrived on a TCP or Unix domain stream socket and not yet been read by the
/// application, from `ioctl(FIONREAD)` (also known as `SIOCINQ`).
///
/// One system call; does not wait.
#[cfg(target_os = "linux")]
pub fn unread_bytes(socket: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
    ioctl_int(socket.as_raw_fd(), libc::FIONREAD)
}

#[cfg(target_os = "linux")]
fn ioctl_int(fd: std::os::fd::RawFd, request: libc::Ioctl) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: both requests write one `int` through the pointer, which is valid for the call; a
    // closed or non-socket `fd` makes the call fail with EBADF/ENOTTY, reported as an error.
    let rc = unsafe { libc::ioctl(fd, request, &mut value as *mut libc::c_int) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

/// Unavailable on this system: see the module documentation.
#[cfg(not(target_os = "linux"))]
pub fn unsent_bytes<S>(_socket: &S) -> io::Result<usize> {
    Err(unsupported("SIOCOUTQ"))
}

/// Unavailable on this system: see the module documentation.
#[cfg(not(target_os = "linux"))]
pub fn unread_bytes<S>(_socket: &S) -> io::Result<usize> {
    Err(unsupported("FIONREAD"))
}

/// The process's resident set size now, in bytes (`/proc/self/statm`, second field × page size).
///
/// Reads a small file: a few microseconds, does not wait on anything else.
pub fn rss_bytes() -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm")?;
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/statm")
            })?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Ok(pages * u64::try_from(page).unwrap_or(4096))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(unsupported("/proc/self/statm"))
    }
}

/// The most resident memory the process has used since it started, in bytes (`VmHWM` in
/// `/proc/self/status`, kept by the kernel, so no peak between two samples is missed).
///
/// Reads a small file: a few microseconds.
pub fn peak_rss_bytes() -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "no VmHWM in /proc/self/status")
            })
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(unsupported("/proc/self/status"))
    }
}

#[cfg(not(target_os = "linux"))]
fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is only read on Linux"),
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn rss_is_plausible_and_below_its_peak() {
        let now = rss_bytes().unwrap();
        let peak = peak_rss_bytes().unwrap();
        assert!(now > 100_000, "rss {now}");
        assert!(peak >= now / 2, "peak {peak} now {now}");
    }

    #[test]
    fn queue_probes_see_bytes_written_and_not_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        tx.write_all(&[7u8; 1000]).unwrap();
        // Loopback delivers at once, but give the kernel a moment to move the segment.
        let mut unread = 0;
        for _ in 0..100 {
            unread = unread_bytes(&rx).unwrap();
            if unread == 1000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(unread, 1000);
        let mut buf = [0u8; 600];
        rx.read_exact(&mut buf).unwrap();
        assert_eq!(unread_bytes(&rx).unwrap(), 400);
        // Acknowledged at once on loopback, so the send queue drains to zero.
        let mut unsent = usize::MAX;
        for _ in 0..100 {
            unsent = unsent_bytes(&tx).unwrap();
            if unsent == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(unsent, 0);
    }
}
