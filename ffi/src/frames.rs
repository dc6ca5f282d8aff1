//! Frame memory: the 2 KiB buffers every packet lives in, from receive to transmit.
//!
//! A [`Frame`] owns one 2 KiB buffer, either its own heap allocation ([`Frame::heap`], for tests
//! and small pools) or one slot of a [`FrameRegion`]: a single mapping, allocated once per
//! process and never freed, that AF_XDP sockets register as their UMEM. A frame of the region
//! can be handed to the kernel and come back without its bytes ever being copied: the NIC (or
//! the kernel, in copy mode) writes a received frame into it, the data plane rewrites it in
//! place, and the TX ring sends it from there.
//!
//! Ownership is what keeps this sound: every slot of a region is handed out exactly once, as a
//! `Frame`, by [`FrameRegion::new`]; a `Frame` given to the kernel is consumed
//! ([`crate::af_xdp`] records which slots it lent), and only a slot recorded as lent can become a
//! `Frame` again.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of one frame buffer (one UMEM chunk).
pub const FRAME_SIZE: usize = 2048;
/// Where packet data starts in a frame: the kernel writes received frames this far in
/// (`XDP_PACKET_HEADROOM`), which also leaves room to push headers in front.
pub const HEADROOM: usize = 256;

/// Bytes of a frame after the headroom.
pub const DATA_SIZE: usize = FRAME_SIZE - HEADROOM;

/// The regions of this process, as (start, end) addresses: a frame inside one is a region slot,
/// any other frame a heap allocation. Kept outside `Frame` so a frame is one pointer (and an
/// `Mbuf` 16 bytes); read only when a frame is dropped or lent, never per packet.
const MAX_REGIONS: usize = 16;
static REGIONS: [(AtomicUsize, AtomicUsize); MAX_REGIONS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_REGIONS];

fn in_any_region(addr: usize) -> bool {
    REGIONS.iter().any(|(start, end)| {
        let end = end.load(Ordering::Acquire);
        end != 0 && (start.load(Ordering::Relaxed)..end).contains(&addr)
    })
}

/// One frame buffer, owned.
pub struct Frame {
    ptr: NonNull<[u8; FRAME_SIZE]>,
}

// SAFETY: a `Frame` is the unique owner of its buffer (heap allocation or region slot), like a
// `Box<[u8; FRAME_SIZE]>`; moving it to another thread moves that ownership.
unsafe impl Send for Frame {}

impl Frame {
    /// A frame in its own heap allocation, zeroed.
    pub fn heap() -> Frame {
        let b: Box<[u8; FRAME_SIZE]> = Box::new([0; FRAME_SIZE]);
        Frame {
            ptr: NonNull::from(Box::leak(b)),
        }
    }

    /// The bytes after the headroom, where packet data lives.
    #[inline(always)]
    pub fn data(&self) -> &[u8; DATA_SIZE] {
        // SAFETY: HEADROOM + DATA_SIZE == FRAME_SIZE, so the range is inside the buffer this
        // `Frame` owns; the borrow is tied to `self`.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(HEADROOM) as *const [u8; DATA_SIZE]) }
    }

    /// The bytes after the headroom, mutable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8; DATA_SIZE] {
        // SAFETY: as in `data`, and `&mut self` makes the borrow unique.
        unsafe { &mut *(self.ptr.as_ptr().cast::<u8>().add(HEADROOM) as *mut [u8; DATA_SIZE]) }
    }

    #[inline(always)]
    pub fn bytes(&self) -> &[u8; FRAME_SIZE] {
        // SAFETY: `ptr` points to a live buffer of FRAME_SIZE bytes that this `Frame` owns
        // exclusively (see the type's invariant); the borrow is tied to `self`.
        unsafe { self.ptr.as_ref() }
    }

    #[inline(always)]
    pub fn bytes_mut(&mut self) -> &mut [u8; FRAME_SIZE] {
        // SAFETY: as in `bytes`, and `&mut self` makes the borrow unique.
        unsafe { self.ptr.as_mut() }
    }

    /// Whether the frame is a slot of a region (and so can be lent to an AF_XDP socket).
    pub fn in_region(&self) -> bool {
        in_any_region(self.ptr.as_ptr() as usize)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if !self.in_region() {
            // SAFETY: `ptr` came from `Box::leak` in `Frame::heap` and is released once, here.
            unsafe { drop(Box::from_raw(self.ptr.as_ptr())) }
        }
        // A region slot simply leaves circulation: the region lives until the process exits.
    }
}

/// One mapping of frames, registered as UMEM by AF_XDP sockets. Lives for the whole process.
pub struct FrameRegion {
    base: NonNull<u8>,
    frames: usize,
}

// SAFETY: the region itself is immutable metadata (base and size); the bytes of its slots are
// only reached through the `Frame`s that own them.
unsafe impl Sync for FrameRegion {}
// SAFETY: as above.
unsafe impl Send for FrameRegion {}

impl FrameRegion {
    /// Maps `frames` frames (huge pages advised) and hands out every slot once.
    pub fn new(frames: usize) -> io::Result<(&'static FrameRegion, Vec<Frame>)> {
        let frames = frames.max(1);
        let len = frames * FRAME_SIZE;
        // SAFETY: a fresh anonymous private mapping chosen by the kernel, checked below.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mmap of {len} bytes of frames: {e}"),
            ));
        }
        let base = NonNull::new(base as *mut u8).expect("mmap never returns null on success");
        // SAFETY: the range is the mapping just created, whole and page aligned.
        unsafe {
            libc::madvise(base.as_ptr() as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        let start = base.as_ptr() as usize;
        let registered = REGIONS.iter().any(|(s, e)| {
            if s.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                e.store(start + len, Ordering::Release);
                true
            } else {
                false
            }
        });
        if !registered {
            // SAFETY: the mapping created above, unused so far, unmapped once.
            unsafe { libc::munmap(base.as_ptr() as *mut libc::c_void, len) };
            return Err(io::Error::other(format!(
                "at most {MAX_REGIONS} frame regions per process"
            )));
        }
        let region: &'static FrameRegion = Box::leak(Box::new(FrameRegion { base, frames }));
        let slots = (0..frames).map(|i| region.slot(i)).collect();
        Ok((region, slots))
    }

    /// The frame of slot `index`. Private: only `new` (once per slot) and the AF_XDP module's
    /// lent-slot check may create one, so no slot ever has two owners.
    fn slot(&self, index: usize) -> Frame {
        assert!(index < self.frames, "slot {index} outside the region");
        // SAFETY: index * FRAME_SIZE + FRAME_SIZE <= len (checked above), inside the mapping.
        let p = unsafe { self.base.as_ptr().add(index * FRAME_SIZE) };
        Frame {
            ptr: NonNull::new(p as *mut [u8; FRAME_SIZE]).expect("inside a non-null mapping"),
        }
    }

    /// Re-creates the frame of slot `index` that was consumed by [`FrameRegion::lend`].
    ///
    /// Only `crate::af_xdp` calls this, and only for a slot its own record shows as lent and
    /// not yet returned: the previous owner was consumed by `lend`, so the new `Frame` is the
    /// slot's only owner.
    pub(crate) fn reclaim(&self, index: usize) -> Frame {
        self.slot(index)
    }

    /// Consumes `frame` (a slot of this region) and returns its slot index, to be given to the
    /// kernel; `Err(frame)` for a frame of another region or the heap.
    pub(crate) fn lend(&self, frame: Frame) -> Result<usize, Frame> {
        match self.index_of(&frame) {
            Some(i) => {
                core::mem::forget(frame);
                Ok(i)
            }
            None => Err(frame),
        }
    }

    fn index_of(&self, frame: &Frame) -> Option<usize> {
        let offset = (frame.ptr.as_ptr() as usize).checked_sub(self.base.as_ptr() as usize)?;
        (offset < self.len()).then_some(offset / FRAME_SIZE)
    }

    /// Start of the mapping (the UMEM address).
    pub fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.frames * FRAME_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn frames(&self) -> usize {
        self.frames
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_region_slots_are_distinct_and_lend_round_trips() {
        let (region, mut frames) = FrameRegion::new(8).unwrap();
        assert_eq!(frames.len(), 8);
        frames[3].bytes_mut()[HEADROOM] = 0xab;
        let f = frames.remove(3);
        assert!(f.in_region());
        let i = region.lend(f).ok().unwrap();
        assert_eq!(i, 3);
        let back = region.reclaim(i);
        assert_eq!(back.bytes()[HEADROOM], 0xab);
        let heap = Frame::heap();
        assert!(!heap.in_region());
        assert!(region.lend(heap).is_err(), "heap frames are not lent");
        assert_eq!(std::mem::size_of::<Frame>(), 8);
        let (other, mut theirs) = FrameRegion::new(1).unwrap();
        assert!(region.lend(theirs.remove(0)).is_err());
        assert_eq!(other.frames(), 1);
    }
}
