//! TAP devices (`/dev/net/tun`): a kernel network interface whose frames are read and written
//! by us, one `read`/`write` per frame. The slowest of the port drivers, and the simplest; it is
//! also the shape of the node's exception path (frames handed up to the kernel).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// `struct ifreq` as SIOCSIFHWADDR reads it: the name and `ifr_hwaddr`, a `struct sockaddr`.
#[repr(C)]
struct IfReqHwAddr {
    name: [libc::c_char; libc::IFNAMSIZ],
    family: libc::sa_family_t,
    data: [u8; 14],
    _pad: [u8; 8],
}

/// A NUL-terminated, zero-padded interface name; `name` is shorter than `IFNAMSIZ` (checked
/// when the `Tap` was opened).
fn c_name(name: &str) -> [libc::c_char; libc::IFNAMSIZ] {
    let mut out = [0; libc::IFNAMSIZ];
    for (d, s) in out.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as libc::c_char;
    }
    out
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
        req.name = c_name(name);
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

    /// Sets the interface's MAC address, as `ip link set NAME address MAC` does: the address the
    /// kernel sends from and accepts unicast frames for.
    pub fn set_mac(&self, mac: [u8; 6]) -> io::Result<()> {
        let mut req = IfReqHwAddr {
            name: c_name(&self.name),
            family: libc::ARPHRD_ETHER,
            data: [0; 14],
            _pad: [0; 8],
        };
        req.data[..6].copy_from_slice(&mac);
        // SAFETY: the fd is the open /dev/net/tun descriptor owned by `self.file`, attached to
        // this interface; the TUN driver's SIOCSIFHWADDR copies one `struct ifreq` in, and `req`
        // is a live #[repr(C)] value of that size (16-byte name, then a 16-byte `struct
        // sockaddr`, padded to 40 bytes) that outlives the call.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::SIOCSIFHWADDR as _,
                &mut req as *mut IfReqHwAddr,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Brings the interface up (`IFF_UP`), as `ip link set NAME up` does.
    pub fn set_up(&self) -> io::Result<()> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nothing else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: c_name(&self.name),
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: `sock` is an open socket; SIOCGIFFLAGS reads the name from and writes the
        // flags (a short after the name) into one `struct ifreq`; `req` is a live #[repr(C)]
        // value of the kernel's size with a NUL-terminated name.
        let rc = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &mut req as *mut IfReq,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: as above; SIOCSIFFLAGS only reads the same `struct ifreq`.
        let rc = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFFLAGS as _,
                &mut req as *mut IfReq,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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
    fn test_ifreq_layouts_match_the_kernel() {
        // `struct ifreq` is 40 bytes on Linux; the union starts after the 16-byte name.
        assert_eq!(core::mem::size_of::<IfReq>(), 40);
        assert_eq!(core::mem::size_of::<IfReqHwAddr>(), 40);
        assert_eq!(core::mem::offset_of!(IfReqHwAddr, family), libc::IFNAMSIZ);
        assert_eq!(core::mem::offset_of!(IfReq, flags), libc::IFNAMSIZ);
        assert_eq!(
            c_name("nghost0")[..8],
            b"nghost0\0".map(|b| b as libc::c_char)
        );
    }

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
