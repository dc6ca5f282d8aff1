//! TAP devices (`/dev/net/tun`): a kernel network interface whose frames are read and written
//! by us, one `read`/`write` per frame. The slowest of the port drivers, and the simplest; it is
//! also the shape of the node's exception path (frames handed up to the kernel).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// `_IOW('T', 202, int)`, from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// `struct ifreq` as TUNSETIFF reads it: the interface name and the flags.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP interface in non-blocking mode.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates (or attaches to) the TAP interface `name` without packet information headers:
    /// every read returns one Ethernet frame.
    pub fn open(name: &str) -> io::Result<Tap> {
        Tap::open_with(name, false)
    }

    /// Opens one queue of a multi-queue TAP interface (`IFF_MULTI_QUEUE`): call it once per
    /// queue; the kernel spreads received frames over the queues by flow.
    pub fn open_queue(name: &str) -> io::Result<Tap> {
        Tap::open_with(name, true)
    }

    fn open_with(name: &str, multi_queue: bool) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name `{name}` must have 1 to 15 bytes"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP
                | libc::IFF_NO_PI
                | if multi_queue {
                    libc::IFF_MULTI_QUEUE
                } else {
                    0
                }) as libc::c_short,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: the fd is an open /dev/net/tun descriptor owned by `file`; TUNSETIFF reads and
        // writes one `struct ifreq`, and `req` is a live, properly sized and aligned
        // #[repr(C)] value with a NUL-terminated name (checked length < IFNAMSIZ, zero padded).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap {
            file,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`; `Ok(None)` when none is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one frame; `Ok(false)` when the interface cannot take it now (it is down, or its
    /// queue is full).
    pub fn send(&mut self, frame: &[u8]) -> io::Result<bool> {
        match self.file.write(frame) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            // The kernel refuses writes to an interface that is down.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_rejects_bad_names_before_touching_the_system() {
        assert_eq!(
            Tap::open("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            Tap::open("a-name-far-too-long").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
