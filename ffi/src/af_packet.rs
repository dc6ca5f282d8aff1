//! AF_PACKET with memory-mapped rings (`TPACKET_V2`): the port driver that works on any Linux
//! interface. Received frames are read from the RX ring's slots as soon as the kernel has
//! written each one, transmitted frames are written into TX ring slots and sent with one
//! `sendto` kick per burst; the qdisc layer is bypassed (`PACKET_QDISC_BYPASS`) and our own
//! transmissions are not looped back to us (`PACKET_IGNORE_OUTGOING`).
//!
//! Why V2 and not V3: a V3 RX block is handed to user space only when it is full or when its
//! retire timeout (1 ms at least) expires, so on a quiet link every frame waited up to that
//! long (p50 0.2–0.6 ms at 100 kpps in docs/benchmarks.md). A poll-mode worker gains nothing
//! from V3's batched wake-ups; V2's per-frame slots deliver at once.
//!
//! All ring access goes through `Ring`'s bounds-checked helpers; the layouts below are those
//! of `<linux/if_packet.h>`.

use std::io;
use std::sync::atomic::{fence, Ordering};

const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: libc::c_int = 0;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// RX: the frame's TCP/UDP checksum is partial (the sender offloaded it).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// What [`AfPacket::recv`] tells about a frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The frame was longer than the ring slot or the buffer (a GSO super-frame, or a jumbo
    /// frame): what was copied is only its beginning.
    pub truncated: bool,
    /// The TCP/UDP checksum still has to be computed (`TP_STATUS_CSUMNOTREADY`).
    pub checksum_partial: bool,
}

/// `struct tpacket_req`.
#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

/// Offsets in `struct tpacket2_hdr`, at the start of every slot.
mod hdr {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    /// Where a frame to send starts: `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`.
    pub const TX_DATA: usize = 32;
}

/// Slots of `FRAME_SIZE` bytes, 32 to a 64 KiB block (a slot never straddles a block, so the
/// ring is one array of slots).
const BLOCK_SIZE: usize = 1 << 16;
const FRAME_SIZE: usize = 2048;
/// 4096 RX slots (8 MiB per socket): what absorbs a burst while the worker sends.
const RX_FRAMES: usize = 4096;
const TX_FRAMES: usize = 512;

/// The mapped memory of both rings, with checked access.
struct Ring {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one `AfPacket`, which is used by one thread at a time (`Send`
// but not `Sync`); the kernel's concurrent accesses are synchronised through the status words.
unsafe impl Send for Ring {}

impl Ring {
    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "ring access {offset}+{len} outside {} bytes",
            self.len
        );
    }

    fn read_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        // SAFETY: in bounds (checked) of a live mapping; 4-byte aligned by the kernel's layout
        // (all fields are at 4-byte offsets from 2 KiB-aligned slots);
        // volatile because the kernel writes these words concurrently.
        unsafe { core::ptr::read_volatile(self.base.add(offset) as *const u32) }
    }

    fn write_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        // SAFETY: as in `read_u32`; the slot or block is owned by user space while written.
        unsafe { core::ptr::write_volatile(self.base.add(offset) as *mut u32, value) }
    }

    fn read_u16(&self, offset: usize) -> u16 {
        self.check(offset, 2);
        // SAFETY: in bounds (checked) of a live mapping, 2-byte aligned by the layout.
        unsafe { core::ptr::read_volatile(self.base.add(offset) as *const u16) }
    }

    fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: source in bounds (checked), owned by user space (status USER); `dst` is a
        // distinct Rust slice, so the ranges cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base.add(offset), dst.as_mut_ptr(), dst.len())
        }
    }

    fn copy_in(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: destination in bounds (checked), a TX slot owned by user space (status
        // AVAILABLE); `src` is a distinct Rust slice.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(offset), src.len()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, unmapped once here.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

/// An AF_PACKET socket bound to one interface, with its RX and TX rings.
pub struct AfPacket {
    fd: std::os::fd::OwnedFd,
    ring: Ring,
    rx_slot: usize,
    tx_slot: usize,
    tx_pending: bool,
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn setsockopt<T>(fd: libc::c_int, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of exactly `size_of::<T>()` bytes, which is what the
    // option expects (each caller passes the kernel's struct or an int).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            name,
            value as *const T as *const libc::c_void,
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what)
}

impl AfPacket {
    /// Opens a TPACKET_V2 socket on `interface` in promiscuous mode.
    pub fn open(interface: &str) -> io::Result<AfPacket> {
        AfPacket::open_with(interface, None)
    }

    /// Opens one member of fanout group `group` on `interface`: the kernel spreads received
    /// frames over the group's sockets by flow hash (`PACKET_FANOUT_HASH`), one per worker.
    pub fn open_fanout(interface: &str, group: u16) -> io::Result<AfPacket> {
        AfPacket::open_with(interface, Some(group))
    }

    fn open_with(interface: &str, fanout: Option<u16>) -> io::Result<AfPacket> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = std::ffi::CString::new(interface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated C string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface `{interface}`"),
            ));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        check(raw, "socket(AF_PACKET)")?;
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        setsockopt(s, PACKET_VERSION, &TPACKET_V2, "PACKET_VERSION")?;
        let one: libc::c_int = 1;
        setsockopt(s, PACKET_QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS")?;
        setsockopt(s, PACKET_IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING")?;
        let req = |frames: usize| TpacketReq {
            block_size: BLOCK_SIZE as u32,
            block_nr: (frames * FRAME_SIZE / BLOCK_SIZE) as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: frames as u32,
        };
        setsockopt(s, PACKET_RX_RING, &req(RX_FRAMES), "PACKET_RX_RING")?;
        setsockopt(s, PACKET_TX_RING, &req(TX_FRAMES), "PACKET_TX_RING")?;
        let len = FRAME_SIZE * (RX_FRAMES + TX_FRAMES);
        // SAFETY: maps the rings the kernel just allocated for this socket; length and
        // protection match what the packet(7) ring API requires; the result is checked.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                s,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mmap of the packet rings: {e}"),
            ));
        }
        let ring = Ring {
            base: base as *mut u8,
            len,
        };
        let mreq = PacketMreq {
            ifindex: ifindex as libc::c_int,
            kind: PACKET_MR_PROMISC,
            alen: 0,
            address: [0; 8],
        };
        setsockopt(s, PACKET_ADD_MEMBERSHIP, &mreq, "PACKET_ADD_MEMBERSHIP")?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a live sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                s,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                core::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(rc, "bind")?;
        if let Some(group) = fanout {
            let arg: libc::c_int = libc::c_int::from(group) | (PACKET_FANOUT_HASH << 16);
            setsockopt(s, PACKET_FANOUT, &arg, "PACKET_FANOUT")?;
        }
        Ok(AfPacket {
            fd,
            ring,
            rx_slot: 0,
            tx_slot: 0,
            tx_pending: false,
        })
    }

    /// Copies the next received frame into `buf` (frames longer than `buf` are cut to it);
    /// `None` when nothing is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        let h = self.rx_slot * FRAME_SIZE;
        let status = self.ring.read_u32(h + hdr::STATUS);
        if status & TP_STATUS_USER == 0 {
            return None;
        }
        fence(Ordering::Acquire);
        let snap = self.ring.read_u32(h + hdr::SNAPLEN) as usize;
        let wire = self.ring.read_u32(h + hdr::LEN) as usize;
        let mac = usize::from(self.ring.read_u16(h + hdr::MAC));
        // The kernel keeps the frame inside its slot; a corrupt header is cut to it, not
        // followed out of it.
        let n = snap.min(buf.len()).min(FRAME_SIZE.saturating_sub(mac));
        self.ring.copy_out(h + mac, &mut buf[..n]);
        fence(Ordering::Release);
        self.ring.write_u32(h + hdr::STATUS, TP_STATUS_KERNEL);
        self.rx_slot = (self.rx_slot + 1) % RX_FRAMES;
        Some(Received {
            len: n,
            truncated: wire > n,
            checksum_partial: status & TP_STATUS_CSUMNOTREADY != 0,
        })
    }

    /// Queues `frame` in the TX ring; false when the ring is full (or the frame too big). Call
    /// [`AfPacket::flush`] to send what is queued.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if frame.len() > FRAME_SIZE - hdr::TX_DATA {
            return false;
        }
        let h = (RX_FRAMES + self.tx_slot) * FRAME_SIZE;
        let status = self.ring.read_u32(h + hdr::STATUS);
        if status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
            return false;
        }
        if status & TP_STATUS_WRONG_FORMAT != 0 {
            // A frame the kernel rejected earlier: reuse the slot.
            self.ring.write_u32(h + hdr::STATUS, 0);
        }
        fence(Ordering::Acquire);
        self.ring.copy_in(h + hdr::TX_DATA, frame);
        self.ring.write_u32(h + hdr::LEN, frame.len() as u32);
        self.ring.write_u32(h + hdr::SNAPLEN, frame.len() as u32);
        fence(Ordering::Release);
        self.ring.write_u32(h + hdr::STATUS, TP_STATUS_SEND_REQUEST);
        self.tx_slot = (self.tx_slot + 1) % TX_FRAMES;
        self.tx_pending = true;
        true
    }

    /// Tells the kernel to send the queued frames (one system call per burst).
    pub fn flush(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if !core::mem::take(&mut self.tx_pending) {
            return Ok(());
        }
        // SAFETY: a zero-length sendto with no buffer and no address is the documented kick
        // for the TX ring of a bound packet socket.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                core::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_unknown_interface_is_an_error() {
        let e = AfPacket::open("ng-no-such-if")
            .err()
            .expect("no such interface");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn test_ring_accesses_are_bounds_checked() {
        let mut backing = vec![0u32; 16];
        let ring = Ring {
            base: backing.as_mut_ptr() as *mut u8,
            len: 64,
        };
        ring.write_u32(60, 7);
        assert_eq!(ring.read_u32(60), 7);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ring.read_u32(61)));
        assert!(r.is_err(), "a read past the end must not happen");
        core::mem::forget(ring); // not an mmap: must not be unmapped
    }
}
