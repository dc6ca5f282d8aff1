//! AF_XDP: frames straight from the driver's receive path into memory we own.
//!
//! Three pieces, all from the kernel's uapi (`<linux/if_xdp.h>`, `<linux/bpf.h>`,
//! `<linux/if_link.h>`), no libbpf or libxdp:
//!
//! - [`XdpProgram`]: a five-instruction XDP program, loaded with `bpf(BPF_PROG_LOAD)`, that
//!   redirects every frame of receive queue *q* into the AF_XDP socket registered at key *q* of
//!   its `XSKMAP` (and passes the frame to the kernel when no socket is registered there). It is
//!   attached with an `RTM_SETLINK` netlink message, which *replaces* whatever program the
//!   interface had (a leftover from a crashed run included; the other attach mode's program is
//!   detached first, so there is never more than one), and detached again on drop.
//! - [`XskSocket`]: one AF_XDP socket bound to one queue, with the four single-producer
//!   single-consumer rings: fill and RX bring received frames, TX and completion send them. Its
//!   UMEM is the process's [`FrameRegion`], registered by every socket, so the frames of the
//!   data plane's pool are the frames the kernel receives into and sends from: no copy between
//!   receive and transmit (in copy mode the kernel copies once into the UMEM, in zero-copy mode
//!   not even that). Which slots a socket has lent to the kernel is recorded, and only those
//!   can come back as frames.
//! - Checked ring access (`Mapping`): every read and write of a ring goes through
//!   bounds-checked helpers, and descriptor addresses from the kernel only ever name a slot we
//!   lent, so a bad descriptor cannot make us touch memory outside our own.
//!
//! Modes: `skb` attaches the program in generic mode and copies (works on any interface, veth and
//! TAP included); `native` runs the program in the driver and copies; `zerocopy` runs it in the
//! driver and lets the NIC DMA into the UMEM; `auto` takes the best the driver accepts.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::frames::{Frame, FrameRegion, FRAME_SIZE, HEADROOM};

/// Entries of each ring (a power of two).
const RING: u32 = 2048;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const XDP_PASS: i32 = 2;
/// `BPF_FUNC_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
/// `IFLA_XDP_ATTACHED` values: the mode of the attached program.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const NLA_F_NESTED: u16 = 1 << 15;
const NLMSG_ERROR: u16 = 2;

/// How the program runs and how frames reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The best the driver supports: zero-copy, else native with copies, else generic (SKB).
    Auto,
    /// Generic XDP (after the kernel built an skb) and copies: works on every interface.
    Skb,
    /// The program runs in the driver; frames are copied into the UMEM.
    Native,
    /// The program runs in the driver and the NIC writes frames into the UMEM directly.
    ZeroCopy,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Skb => "skb",
            Mode::Native => "native",
            Mode::ZeroCopy => "zerocopy",
        })
    }
}

fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(os_error(what))
    } else {
        Ok(rc)
    }
}

/// The index of `interface`, or a NotFound error naming it.
pub fn ifindex(interface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated C string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface `{interface}`"),
        ));
    }
    Ok(index)
}

/// `bpf(2)` with a zero-padded attribute block; returns the non-negative result.
fn bpf(cmd: libc::c_long, attr: &mut [u64; 16], what: &str) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a live, writable, 128-byte `union bpf_attr` image (zero beyond the
    // fields the command reads); every pointer stored in it by the callers points to memory
    // that outlives this call. The kernel reads at most the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            core::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(os_error(what));
    }
    Ok(rc as libc::c_int)
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` is a fresh, valid descriptor (the caller checked the call succeeded) that
    // nothing else owns or will close.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// One `struct bpf_insn`.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// The redirect program, with `map_fd` as its XSKMAP:
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)          ; ctx->rx_queue_index
/// r1 = map_fd ll                  ; the XSKMAP
/// r3 = XDP_PASS                   ; what to do when no socket sits at that index
/// call bpf_redirect_map
/// exit
/// ```
fn redirect_program(map_fd: RawFd) -> [u64; 6] {
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    [
        insn(0x61, 2, 1, 16, 0),                     // BPF_LDX | BPF_MEM | BPF_W
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_DW | BPF_IMM, first half
        insn(0, 0, 0, 0, 0),                         // second half of the 64-bit immediate
        insn(0xb7, 3, 0, 0, XDP_PASS),               // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),  // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                      // BPF_JMP | BPF_EXIT
    ]
}

/// Sends one route netlink request (`msg`, a whole `nlmsghdr` message) and returns the
/// kernel's first answer.
fn netlink_request(msg: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    let sock = owned(check(raw, "socket(AF_NETLINK)")?);
    // SAFETY: `msg` is a live buffer of `msg.len()` bytes; the socket is a valid descriptor.
    let rc = unsafe {
        libc::send(
            sock.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(os_error("netlink send"));
    }
    let mut reply = vec![0u8; 32 * 1024];
    // SAFETY: `reply` is a live, writable buffer of the length passed.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            reply.as_mut_ptr() as *mut libc::c_void,
            reply.len(),
            0,
        )
    };
    if n < 0 {
        return Err(os_error("netlink recv"));
    }
    reply.truncate(n as usize);
    Ok(reply)
}

/// An `RTM_*LINK` message header for `ifindex` with room for `attrs` bytes of attributes.
fn link_message(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = 32 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // change
    msg.extend_from_slice(attrs);
    msg
}

/// The errno of a netlink `NLMSG_ERROR` answer (0: success).
fn netlink_errno(reply: &[u8], what: &str) -> io::Result<i32> {
    if reply.len() < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err(io::Error::other(format!(
            "netlink: unexpected answer to {what}"
        )));
    }
    Ok(-i32::from_ne_bytes([
        reply[16], reply[17], reply[18], reply[19],
    ]))
}

/// Sets (`fd` >= 0) or removes (`fd` = -1) the XDP program of `ifindex` in the mode of `flags`,
/// through an `RTM_SETLINK` request on a route netlink socket, and waits for the kernel's answer.
/// With `expected`, the kernel changes the program only if the one attached is `expected`
/// (`XDP_FLAGS_REPLACE`, Linux 5.7), else it answers EEXIST: so nodegate never removes a
/// program it did not attach.
fn netlink_set_xdp(ifindex: u32, fd: RawFd, flags: u32, expected: Option<RawFd>) -> io::Result<()> {
    let mut attrs = Vec::with_capacity(28);
    let nested = if expected.is_some() { 28u16 } else { 20 };
    attrs.extend_from_slice(&nested.to_ne_bytes());
    attrs.extend_from_slice(&(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
    attrs.extend_from_slice(&8u16.to_ne_bytes());
    attrs.extend_from_slice(&IFLA_XDP_FD.to_ne_bytes());
    attrs.extend_from_slice(&fd.to_ne_bytes());
    attrs.extend_from_slice(&8u16.to_ne_bytes());
    attrs.extend_from_slice(&IFLA_XDP_FLAGS.to_ne_bytes());
    let flags = flags
        | if expected.is_some() {
            XDP_FLAGS_REPLACE
        } else {
            0
        };
    attrs.extend_from_slice(&flags.to_ne_bytes());
    if let Some(old) = expected {
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&IFLA_XDP_EXPECTED_FD.to_ne_bytes());
        attrs.extend_from_slice(&old.to_ne_bytes());
    }
    let nl_flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    let reply = netlink_request(&link_message(libc::RTM_SETLINK, nl_flags, ifindex, &attrs))?;
    match netlink_errno(&reply, "RTM_SETLINK")? {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// The XDP program attached to an interface, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedXdp {
    pub id: u32,
    /// The program's name (up to 15 bytes); nodegate's is [`PROGRAM_NAME`].
    pub name: String,
}

/// The name nodegate gives its XDP program.
pub const PROGRAM_NAME: &str = "nodegate_xsk";

/// The XDP program attached to `interface` in any mode, if there is one
/// (`RTM_GETLINK`'s `IFLA_XDP_PROG_ID`, then the program's name from `BPF_OBJ_GET_INFO_BY_FD`).
pub fn attached_program(interface: &str) -> io::Result<Option<AttachedXdp>> {
    let Some((id, prog, _)) = attached_program_fd(ifindex(interface)?)? else {
        return Ok(None);
    };
    // struct bpf_prog_info up to and including `name` (offset 64, 16 bytes).
    let mut info = [0u8; 96];
    let mut attr = [0u64; 16];
    attr[0] = prog.as_raw_fd() as u64 | (info.len() as u64) << 32; // bpf_fd, info_len
    attr[1] = info.as_mut_ptr() as u64;
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &mut attr,
        "bpf(BPF_OBJ_GET_INFO_BY_FD)",
    )?;
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(Some(AttachedXdp {
        id,
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
    }))
}

/// The XDP program attached to interface `ifindex`: its id, a file descriptor of it, and its
/// mode (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`; `None` for another, e.g. offloaded).
fn attached_program_fd(ifindex: u32) -> io::Result<Option<(u32, OwnedFd, Option<u32>)>> {
    let reply = netlink_request(&link_message(
        libc::RTM_GETLINK,
        libc::NLM_F_REQUEST as u16,
        ifindex,
        &[],
    ))?;
    if reply.len() >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
        let errno = netlink_errno(&reply, "RTM_GETLINK")?;
        return Err(io::Error::from_raw_os_error(errno));
    }
    let Some(id) = xdp_attr(&reply, IFLA_XDP_PROG_ID)
        .and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
        .filter(|&id| id != 0)
    else {
        return Ok(None);
    };
    let mode = match xdp_attr(&reply, IFLA_XDP_ATTACHED).and_then(|v| v.first().copied()) {
        Some(XDP_ATTACHED_DRV) => Some(XDP_FLAGS_DRV_MODE),
        Some(XDP_ATTACHED_SKB) => Some(XDP_FLAGS_SKB_MODE),
        _ => None,
    };
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id); // prog_id
    let prog = owned(bpf(
        BPF_PROG_GET_FD_BY_ID,
        &mut attr,
        "bpf(BPF_PROG_GET_FD_BY_ID)",
    )?);
    Ok(Some((id, prog, mode)))
}

/// The netlink attributes of `b`: (type without the nested flag, value).
fn netlink_attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let kind = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & !NLA_F_NESTED;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, value))
    })
}

/// Attribute `kind` of the `IFLA_XDP` nest of an `RTM_NEWLINK` answer.
fn xdp_attr(reply: &[u8], kind: u16) -> Option<&[u8]> {
    let msg_len = u32::from_ne_bytes(reply.get(..4)?.try_into().ok()?) as usize;
    let body = reply.get(32..msg_len.min(reply.len()))?;
    let (_, xdp) = netlink_attrs(body).find(|&(k, _)| k == IFLA_XDP)?;
    netlink_attrs(xdp).find(|&(k, _)| k == kind).map(|(_, v)| v)
}

/// The redirect program attached to one interface, with its XSKMAP. Dropping it detaches the
/// program.
pub struct XdpProgram {
    ifindex: u32,
    flags: u32,
    map: OwnedFd,
    prog: OwnedFd,
    /// The program this one replaced and its mode, put back by
    /// [`XdpProgram::restore_previous`].
    previous: Option<(OwnedFd, u32)>,
    /// Cleared once the previous program is back: nothing to detach then.
    attached: bool,
}

impl XdpProgram {
    /// Loads the program and attaches it to `interface` for sockets on queues `0..queues`,
    /// replacing any XDP program the interface has. `Mode::Skb` attaches in generic mode,
    /// `Native` and `ZeroCopy` in driver mode, `Auto` in driver mode when the driver has it.
    pub fn attach(interface: &str, mode: Mode, queues: u32) -> io::Result<XdpProgram> {
        let ifindex = ifindex(interface)?;
        let mut attr = [0u64; 16];
        // map_type, key_size | value_size, max_entries (u32 fields, packed in pairs).
        attr[0] = u64::from(BPF_MAP_TYPE_XSKMAP) | 4 << 32;
        attr[1] = 4 | u64::from(queues.max(1)) << 32;
        let map = owned(bpf(
            BPF_MAP_CREATE,
            &mut attr,
            "bpf(BPF_MAP_CREATE, XSKMAP)",
        )?);

        let code = redirect_program(map.as_raw_fd());
        let license = c"Apache-2.0";
        let mut name = [0u8; 16];
        name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
        let mut log = vec![0u8; 4096];
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_PROG_TYPE_XDP) | (code.len() as u64) << 32;
        attr[1] = code.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        attr[3] = 1 | (log.len() as u64) << 32; // log_level 1, log_size
        attr[4] = log.as_mut_ptr() as u64;
        attr[6] = u64::from_ne_bytes(name[..8].try_into().expect("8 bytes"));
        attr[7] = u64::from_ne_bytes(name[8..].try_into().expect("8 bytes"));
        let prog = match bpf(BPF_PROG_LOAD, &mut attr, "bpf(BPF_PROG_LOAD)") {
            Ok(fd) => owned(fd),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]);
                return Err(io::Error::new(e.kind(), format!("{e}; verifier: {log}")));
            }
        };

        // What runs now (and in which mode), to put it back if this run cannot start after
        // all.
        let previous = attached_program_fd(ifindex)
            .ok()
            .flatten()
            .and_then(|(_, fd, mode)| Some((fd, mode?)));
        // Never two programs: remove whatever either mode holds, then attach ours.
        for flags in [XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE] {
            let _ = netlink_set_xdp(ifindex, -1, flags, None);
        }
        let attempts: &[u32] = match mode {
            Mode::Skb => &[XDP_FLAGS_SKB_MODE],
            Mode::Native | Mode::ZeroCopy => &[XDP_FLAGS_DRV_MODE],
            Mode::Auto => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
        };
        let mut last = None;
        for &flags in attempts {
            match netlink_set_xdp(ifindex, prog.as_raw_fd(), flags, None) {
                Ok(()) => {
                    return Ok(XdpProgram {
                        ifindex,
                        flags,
                        map,
                        prog,
                        previous,
                        attached: true,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.expect("at least one attempt");
        Err(io::Error::new(
            e.kind(),
            format!("attaching the XDP program to `{interface}` ({mode} mode): {e}"),
        ))
    }

    /// Puts back the program this one replaced, or detaches this one if it replaced none: for
    /// a start that fails after the attach (a queue bound by another AF_XDP socket), so that
    /// whoever ran there runs again. In the same mode the swap is atomic (and only if this one
    /// is still attached); across modes, this one is detached first.
    pub fn restore_previous(mut self) {
        let Some((previous, mode)) = self.previous.take() else {
            return; // dropped: detached
        };
        let ours = Some(self.prog.as_raw_fd());
        let result = if mode == self.flags {
            netlink_set_xdp(self.ifindex, previous.as_raw_fd(), mode, ours)
        } else {
            netlink_set_xdp(self.ifindex, -1, self.flags, ours)
                .and_then(|()| netlink_set_xdp(self.ifindex, previous.as_raw_fd(), mode, None))
        };
        match result {
            Ok(()) => self.attached = false,
            Err(e) => eprintln!(
                "nodegate: putting back the XDP program of interface {} failed: {e}",
                self.ifindex
            ),
        }
    }

    /// Whether the program runs in the driver (native) rather than generic (SKB) mode.
    pub fn is_native(&self) -> bool {
        self.flags == XDP_FLAGS_DRV_MODE
    }

    /// Routes queue `queue`'s frames to `socket`.
    fn register(&self, queue: u32, socket: RawFd) -> io::Result<()> {
        let key = queue;
        let value = socket as u32;
        let mut attr = [0u64; 16];
        attr[0] = self.map.as_raw_fd() as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = &value as *const u32 as u64;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &mut attr,
            "bpf(BPF_MAP_UPDATE_ELEM, XSKMAP)",
        )
        .map(|_| ())
    }
}

impl Drop for XdpProgram {
    /// Detaches the program, only if it is still the one attached (another process may have
    /// replaced it since: its program stays).
    fn drop(&mut self) {
        if !self.attached {
            return;
        }
        match netlink_set_xdp(self.ifindex, -1, self.flags, Some(self.prog.as_raw_fd())) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => eprintln!(
                "nodegate: interface {} runs another XDP program than ours now; left attached",
                self.ifindex
            ),
            Err(e) => eprintln!(
                "nodegate: detaching the XDP program from interface {} failed: {e}",
                self.ifindex
            ),
        }
    }
}

/// A memory mapping with bounds-checked access (one ring).
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: a `Mapping` is owned by one `XskSocket`, used by one thread at a time (`Send`, not
// `Sync`); the kernel's concurrent accesses are ordered by the rings' producer/consumer words.
unsafe impl Send for Mapping {}

impl Mapping {
    fn map(len: usize, fd: Option<(RawFd, u64)>, what: &str) -> io::Result<Mapping> {
        let (flags, fd, offset) = match fd {
            Some((fd, offset)) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd, offset),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            ),
        };
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of `len` bytes; for a
        // ring, `fd` is an AF_XDP socket and `offset` one of the ring offsets it defines.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_error(what));
        }
        Ok(Mapping {
            base: base as *mut u8,
            len,
        })
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "access {offset}+{len} outside a {}-byte mapping",
            self.len
        );
    }

    /// The 32-bit word at `offset`, for atomic access shared with the kernel.
    fn word(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4), "unaligned ring word at {offset}");
        // SAFETY: in bounds (checked) and 4-byte aligned (checked; mappings are page aligned)
        // in a mapping that lives as long as `self`; AtomicU32 has the layout of u32, and the
        // kernel only ever accesses these words atomically too.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    fn read_u64(&self, offset: usize) -> u64 {
        self.check(offset, 8);
        // SAFETY: in bounds (checked) of a live mapping; the descriptor slot being read belongs
        // to user space (between consumer and producer), so the kernel is not writing it.
        unsafe { core::ptr::read_unaligned(self.base.add(offset) as *const u64) }
    }

    fn write_u64(&self, offset: usize, value: u64) {
        self.check(offset, 8);
        // SAFETY: in bounds (checked); the slot belongs to user space until the producer
        // word is advanced past it.
        unsafe { core::ptr::write_unaligned(self.base.add(offset) as *mut u64, value) }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        // SAFETY: as in `read_u64`.
        unsafe { core::ptr::read_unaligned(self.base.add(offset) as *const u32) }
    }

    fn write_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        // SAFETY: as in `write_u64`.
        unsafe { core::ptr::write_unaligned(self.base.add(offset) as *mut u32, value) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, unmapped once here.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

/// One of the four rings: a mapping plus our cached copy of the index we own.
struct Ring {
    map: Mapping,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    /// Bytes per descriptor: 8 (fill, completion) or 16 (RX, TX).
    entry: usize,
    /// Our index: the producer for fill/TX, the consumer for RX/completion.
    cached: u32,
}

impl Ring {
    fn new(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
        entry: usize,
        what: &str,
    ) -> io::Result<Ring> {
        let len = off.desc as usize + RING as usize * entry;
        let map = Mapping::map(len, Some((fd, pgoff)), what)?;
        let ring = Ring {
            map,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            entry,
            cached: 0,
        };
        // Validate every offset once, so the accesses below cannot fail.
        ring.map.word(ring.producer);
        ring.map.word(ring.consumer);
        ring.map.word(ring.flags);
        Ok(ring)
    }

    fn slot(&self, index: u32) -> usize {
        self.desc + (index & (RING - 1)) as usize * self.entry
    }

    fn needs_wakeup(&self) -> bool {
        self.map.word(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Entries the kernel produced that we have not consumed yet (RX, completion).
    fn available(&self) -> u32 {
        let producer = self.map.word(self.producer).load(Ordering::Acquire);
        producer.wrapping_sub(self.cached)
    }

    fn release(&mut self, n: u32) {
        self.cached = self.cached.wrapping_add(n);
        self.map
            .word(self.consumer)
            .store(self.cached, Ordering::Release);
    }

    /// Slots we may fill before the kernel consumes more (fill, TX).
    fn free(&self) -> u32 {
        let consumer = self.map.word(self.consumer).load(Ordering::Acquire);
        RING - self.cached.wrapping_sub(consumer)
    }

    fn submit(&mut self, n: u32) {
        self.cached = self.cached.wrapping_add(n);
        self.map
            .word(self.producer)
            .store(self.cached, Ordering::Release);
    }
}

/// Kernel-side counters of one socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than a full RX ring or an empty fill ring.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
}

/// The socket option setting how many descriptors a copy-mode TX kick sends (Linux 6.17+; the
/// libc crate does not have it yet).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// TX kicks one flush makes at most while a copy-mode kernel answers EAGAIN (32 frames each).
const MAX_KICKS: usize = 8;

/// One AF_XDP socket bound to one queue of one interface. Its UMEM is the process's
/// [`FrameRegion`] (every socket registers the same one), so a frame received on one socket can
/// be sent on any other without a copy.
pub struct XskSocket {
    fd: OwnedFd,
    fill: Ring,
    completion: Ring,
    rx: Ring,
    tx: Ring,
    region: &'static FrameRegion,
    /// One bit per region slot: lent to the kernel through this socket (fill or TX ring) and
    /// not returned yet. Only such a slot may come back as a `Frame`.
    lent: Vec<u64>,
    tx_queued: u32,
    zerocopy: bool,
    /// Descriptors from the kernel naming a slot we had not lent (never expected).
    pub bad_descriptors: u64,
}

impl XskSocket {
    /// Opens a socket on queue `queue` of the interface `program` is attached to, with `region`
    /// as its UMEM, and registers it with the program. `mode` decides copy or zero-copy
    /// (`Auto`: zero-copy where the driver supports it). Fill the fill ring with
    /// [`XskSocket::fill`] before expecting frames.
    pub fn open(
        program: &XdpProgram,
        queue: u32,
        mode: Mode,
        region: &'static FrameRegion,
    ) -> io::Result<XskSocket> {
        let attempts: &[u16] = match mode {
            Mode::ZeroCopy => &[libc::XDP_ZEROCOPY],
            Mode::Auto if program.is_native() => &[libc::XDP_ZEROCOPY, libc::XDP_COPY],
            _ => &[libc::XDP_COPY],
        };
        let mut last = None;
        for &flags in attempts {
            match XskSocket::open_with(program.ifindex, queue, flags, region) {
                Ok(s) => {
                    program.register(queue, s.fd.as_raw_fd())?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// A socket that only transmits (no XDP program needed, copy mode), e.g. for a traffic
    /// generator.
    pub fn open_tx(
        interface: &str,
        queue: u32,
        region: &'static FrameRegion,
    ) -> io::Result<XskSocket> {
        XskSocket::open_with(ifindex(interface)?, queue, libc::XDP_COPY, region)
    }

    fn open_with(
        ifindex: u32,
        queue: u32,
        bind_flags: u16,
        region: &'static FrameRegion,
    ) -> io::Result<XskSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        let fd = owned(check(raw, "socket(AF_XDP)")?);
        let s = fd.as_raw_fd();

        let reg = libc::xdp_umem_reg {
            addr: region.addr(),
            len: region.len() as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(s, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(s, opt, &RING, "XDP ring size")?;
        }
        // Copy mode sends at most 32 descriptors per kick unless told otherwise (Linux 6.17's
        // XDP_MAX_TX_SKB_BUDGET): let one kick send the whole ring. Older kernels do not know
        // the option (ENOPROTOOPT) and keep 32; `flush` kicks again for them.
        let _ = setsockopt(s, XDP_MAX_TX_SKB_BUDGET, &RING, "XDP_MAX_TX_SKB_BUDGET");
        // SAFETY: xdp_mmap_offsets is plain old data; all-zero is a valid value.
        let mut off: libc::xdp_mmap_offsets = unsafe { core::mem::zeroed() };
        let mut len = core::mem::size_of_val(&off) as libc::socklen_t;
        // SAFETY: `off` is a live, writable struct and `len` holds its size, as the option needs.
        let rc = unsafe {
            libc::getsockopt(
                s,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        check(rc, "XDP_MMAP_OFFSETS")?;
        let desc = core::mem::size_of::<libc::xdp_desc>();
        let fill = Ring::new(s, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING, 8, "fill ring")?;
        let completion = Ring::new(
            s,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            8,
            "completion ring",
        )?;
        let rx = Ring::new(s, &off.rx, libc::XDP_PGOFF_RX_RING as u64, desc, "RX ring")?;
        let tx = Ring::new(s, &off.tx, libc::XDP_PGOFF_TX_RING as u64, desc, "TX ring")?;

        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sxdp` is a live sockaddr_xdp and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                s,
                &sxdp as *const libc::sockaddr_xdp as *const libc::sockaddr,
                core::mem::size_of_val(&sxdp) as libc::socklen_t,
            )
        };
        let mode = if bind_flags == libc::XDP_ZEROCOPY {
            "zero-copy"
        } else {
            "copy"
        };
        check(rc, &format!("bind to queue {queue} ({mode} mode)"))?;
        Ok(XskSocket {
            fd,
            fill,
            completion,
            rx,
            tx,
            region,
            lent: vec![0; region.frames().div_ceil(64)],
            tx_queued: 0,
            zerocopy: bind_flags == libc::XDP_ZEROCOPY,
            bad_descriptors: 0,
        })
    }

    /// Whether the NIC writes into the UMEM directly (zero-copy mode).
    pub fn is_zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Lends `frame` to the kernel: records its slot and returns the slot index, or gives the
    /// frame back when it is not a slot of our region.
    fn lend(&mut self, frame: Frame) -> Result<usize, Frame> {
        let i = self.region.lend(frame)?;
        self.lent[i / 64] |= 1 << (i % 64);
        Ok(i)
    }

    /// The frame of the slot holding UMEM address `addr`, if we lent that slot.
    fn take_back(&mut self, addr: u64) -> Option<Frame> {
        let i = (addr / FRAME_SIZE as u64) as usize;
        let word = self.lent.get_mut(i / 64)?;
        if *word & (1 << (i % 64)) == 0 {
            self.bad_descriptors += 1;
            return None;
        }
        *word &= !(1 << (i % 64));
        Some(self.region.reclaim(i))
    }

    /// Tops the fill ring up with frames from `next`, for the kernel to receive into. Returns
    /// how many were added.
    pub fn fill(&mut self, mut next: impl FnMut() -> Option<Frame>) -> usize {
        let room = self.fill.free();
        let mut n = 0;
        while n < room {
            let Some(frame) = next() else { break };
            let Ok(i) = self.lend(frame) else {
                continue; // a frame from elsewhere: not ours to lend (dropped)
            };
            let slot = self.fill.slot(self.fill.cached + n);
            self.fill.map.write_u64(slot, (i * FRAME_SIZE) as u64);
            n += 1;
        }
        if n > 0 {
            self.fill.submit(n);
        }
        if self.fill.needs_wakeup() {
            self.wakeup_rx();
        }
        n as usize
    }

    /// Frames the TX ring can take before the next flush.
    pub fn tx_room(&self) -> usize {
        self.tx.free().saturating_sub(self.tx_queued) as usize
    }

    /// Entries the fill ring could take.
    pub fn fill_room(&self) -> usize {
        self.fill.free() as usize
    }

    /// Hands up to `max` received frames to `f`, each with its length (its data starts at
    /// [`HEADROOM`]). Returns how many were received.
    pub fn recv_burst(&mut self, max: usize, mut f: impl FnMut(Frame, usize)) -> usize {
        let n = self.rx.available().min(max as u32);
        for i in 0..n {
            let slot = self.rx.slot(self.rx.cached + i);
            let addr = self.rx.map.read_u64(slot);
            let len = self.rx.map.read_u32(slot + 8) as usize;
            let Some(mut frame) = self.take_back(addr) else {
                continue;
            };
            let start = (addr % FRAME_SIZE as u64) as usize;
            let len = len.min(FRAME_SIZE - start.max(HEADROOM));
            if start != HEADROOM {
                // Only with a different UMEM headroom than ours; keep the data where we want it.
                frame.bytes_mut().copy_within(start..start + len, HEADROOM);
            }
            f(frame, len);
        }
        if n > 0 {
            self.rx.release(n);
        }
        n as usize
    }

    fn wakeup_rx(&self) {
        // SAFETY: a zero-length, non-blocking recvfrom with no buffer is the documented way to
        // wake the kernel's RX processing of an AF_XDP socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                core::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            );
        }
    }

    /// Queues `frame` (`len` bytes from [`HEADROOM`]) on the TX ring, without copying it.
    /// Gives the frame back when the ring is full or the frame is not a slot of our region.
    /// [`XskSocket::flush`] sends what is queued.
    pub fn send(&mut self, frame: Frame, len: usize) -> Result<(), Frame> {
        if self.tx_queued >= self.tx.free() || len > FRAME_SIZE - HEADROOM {
            return Err(frame);
        }
        let i = self.lend(frame)?;
        let slot = self.tx.slot(self.tx.cached + self.tx_queued);
        self.tx
            .map
            .write_u64(slot, (i * FRAME_SIZE + HEADROOM) as u64);
        self.tx.map.write_u32(slot + 8, len as u32);
        self.tx.map.write_u32(slot + 12, 0);
        self.tx_queued += 1;
        Ok(())
    }

    /// Publishes the queued frames, kicks the kernel for the whole burst, and hands the
    /// frames it finished sending to `done`.
    pub fn flush(&mut self, mut done: impl FnMut(Frame)) {
        if self.tx_queued > 0 {
            self.tx.submit(core::mem::take(&mut self.tx_queued));
        }
        // In copy mode the kernel sends at most 32 descriptors per kick and answers EAGAIN
        // while more are queued: kick again, a bounded number of times (a full ring of 2048
        // would need 64; what is left goes with the next flush).
        for _ in 0..MAX_KICKS {
            // Nothing left for the kernel to send: no kick. (Copy mode used to kick on every
            // flush, a syscall per port per poll even for a port that only receives.)
            if self.tx.free() == RING || (self.zerocopy && !self.tx.needs_wakeup()) {
                break;
            }
            // SAFETY: a zero-length, non-blocking sendto with no buffer and no address is the
            // documented TX kick of an AF_XDP socket. Errors (EAGAIN, EBUSY, ENOBUFS while the
            // kernel is busy) leave the frames queued for the next kick.
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
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                break;
            }
        }
        let n = self.completion.available();
        for i in 0..n {
            let addr = self
                .completion
                .map
                .read_u64(self.completion.slot(self.completion.cached + i));
            if let Some(frame) = self.take_back(addr) {
                done(frame);
            }
        }
        if n > 0 {
            self.completion.release(n);
        }
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        // SAFETY: xdp_statistics is plain old data; all-zero is a valid value.
        let mut st: libc::xdp_statistics = unsafe { core::mem::zeroed() };
        let mut len = core::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a live, writable struct and `len` holds its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        check(rc, "XDP_STATISTICS")?;
        Ok(XskStats {
            rx_dropped: st.rx_dropped,
            rx_ring_full: st.rx_ring_full,
            rx_fill_ring_empty: st.rx_fill_ring_empty_descs,
            rx_invalid_descs: st.rx_invalid_descs,
            tx_invalid_descs: st.tx_invalid_descs,
        })
    }
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of exactly `size_of::<T>()` bytes, which is what the
    // option expects (each caller passes the kernel's struct or a u32).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            value as *const T as *const libc::c_void,
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what).map(|_| ())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_program_encoding() {
        let p = redirect_program(7);
        // r2 = *(u32 *)(r1 + 16): opcode, registers dst=2 src=1, offset 16.
        assert_eq!(p[0] & 0xff, 0x61);
        assert_eq!((p[0] >> 8) & 0xff, 0x12);
        assert_eq!((p[0] >> 16) & 0xffff, 16);
        // the map load carries the descriptor and the pseudo-map-fd marker.
        assert_eq!(p[1] & 0xffff, 0x1118);
        assert_eq!(p[1] >> 32, 7);
        assert_eq!(p[3] >> 32, XDP_PASS as u64);
        assert_eq!(p[4] >> 32, BPF_FUNC_REDIRECT_MAP as u64);
        assert_eq!(p[5], 0x95);
    }

    #[test]
    fn test_unknown_interface_is_an_error() {
        let e = XdpProgram::attach("ng-no-such-if", Mode::Skb, 1)
            .err()
            .expect("no such interface");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn test_mapping_accesses_are_bounds_checked() {
        let m = Mapping::map(4096, None, "test mapping").expect("anonymous mapping");
        m.write_u64(4088, 42);
        assert_eq!(m.read_u64(4088), 42);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.read_u64(4089)));
        assert!(r.is_err(), "a read past the end must not happen");
    }
}
