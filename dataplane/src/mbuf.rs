//! Packet buffers and their pool.
//!
//! An [`Mbuf`] is a fixed-size frame buffer (an `ffi::frames::Frame`) that is allocated once at
//! start-up and then moves between the pool, ports, workers and handoff queues without ever being
//! freed or reallocated. A live run's pool is one `FrameRegion` that AF_XDP sockets register as
//! their UMEM, so a frame received there is forwarded from the very buffer the kernel wrote it
//! into: no copy inside nodegate between receive and transmit. The shared [`Pool`] is a lock-free bounded queue; each worker keeps a small
//! [`PoolCache`] in front of it (the DPDK mempool per-lcore cache) so the fast path touches the
//! shared queue only once per `CACHE_BULK` buffers.

use crossbeam_queue::ArrayQueue;
use ffi::frames::{Frame, FrameRegion, DATA_SIZE};
use std::sync::Arc;

/// Bytes of frame data an [`Mbuf`] holds: a 2 KiB frame less the headroom the kernel keeps in
/// front of received data; a 1500-byte MTU frame with two VLAN tags fits.
pub const MBUF_SIZE: usize = DATA_SIZE;

/// How many buffers a [`PoolCache`] moves to or from the shared pool at once.
const CACHE_BULK: usize = 32;
/// Buffers a [`PoolCache`] keeps before it gives `CACHE_BULK` back. Large enough that a worker
/// whose allocations and frees balance over a few bursts (an AF_XDP port refilling its fill
/// ring with what its completions returned) stays inside its cache: the same few hundred hot
/// buffers go round, instead of the whole pool rotating through the shared FIFO queue, which
/// on a 64 Ki-buffer pool means cold memory for every frame.
const CACHE_MAX: usize = 512;

/// One frame buffer. Derefs to the frame's bytes (`len` of them).
pub struct Mbuf {
    frame: Frame,
    len: u16,
}

impl core::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mbuf").field("len", &self.len).finish()
    }
}

impl Default for Mbuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Mbuf {
    /// Allocates a new, empty buffer. Only pools and tests call this; the fast path reuses.
    pub fn new() -> Mbuf {
        Mbuf {
            frame: Frame::heap(),
            len: 0,
        }
    }

    /// A buffer over `frame` holding `len` bytes of data (after the frame's headroom), as a driver
    /// receives it; `len` is cut to [`MBUF_SIZE`].
    #[inline]
    pub fn from_frame(frame: Frame, len: usize) -> Mbuf {
        Mbuf {
            frame,
            len: len.min(MBUF_SIZE) as u16,
        }
    }

    /// The frame and the data length, for a driver to transmit it in place.
    #[inline]
    pub fn into_frame(self) -> (Frame, usize) {
        (self.frame, self.len as usize)
    }

    /// A buffer holding a copy of `frame`, or `None` if it does not fit.
    pub fn from_slice(frame: &[u8]) -> Option<Mbuf> {
        let mut m = Mbuf::new();
        m.copy_from(frame).then_some(m)
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the frame length; returns false (and changes nothing) beyond [`MBUF_SIZE`].
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > MBUF_SIZE {
            return false;
        }
        self.len = len as u16;
        true
    }

    /// Replaces the frame with a copy of `frame`; false if it does not fit.
    pub fn copy_from(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MBUF_SIZE {
            return false;
        }
        self.buffer_mut()[..frame.len()].copy_from_slice(frame);
        self.len = frame.len() as u16;
        true
    }

    /// The whole buffer, beyond the frame's current length (for building frames in place).
    #[inline]
    pub fn buffer_mut(&mut self) -> &mut [u8; MBUF_SIZE] {
        self.frame.data_mut()
    }
}

impl core::ops::Deref for Mbuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        &self.frame.data()[..self.len as usize]
    }
}

impl core::ops::DerefMut for Mbuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len as usize;
        &mut self.frame.data_mut()[..len]
    }
}

/// The shared, bounded pool of every buffer a data plane instance owns.
pub struct Pool {
    free: ArrayQueue<Mbuf>,
    capacity: usize,
    region: Option<&'static FrameRegion>,
}

impl Pool {
    /// Allocates `capacity` buffers up front, each on the heap (tests, replays, benchmarks).
    pub fn new(capacity: usize) -> Arc<Pool> {
        let capacity = capacity.max(1);
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            let _ = free.push(Mbuf::new());
        }
        Arc::new(Pool {
            free,
            capacity,
            region: None,
        })
    }

    /// `capacity` buffers in one [`FrameRegion`] (the UMEM of AF_XDP ports), for a live run.
    /// The region is never freed: a process makes one.
    pub fn with_region(capacity: usize) -> std::io::Result<Arc<Pool>> {
        let (region, frames) = FrameRegion::new(capacity.max(1))?;
        let free = ArrayQueue::new(frames.len());
        let capacity = frames.len();
        for f in frames {
            let _ = free.push(Mbuf::from_frame(f, 0));
        }
        Ok(Arc::new(Pool {
            free,
            capacity,
            region: Some(region),
        }))
    }

    /// The region the buffers live in, if they do.
    pub fn region(&self) -> Option<&'static FrameRegion> {
        self.region
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Buffers currently in the shared queue (not in caches, rings or flight).
    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn get(&self) -> Option<Mbuf> {
        self.free.pop()
    }

    /// Returns a buffer. A buffer that was not allocated from this pool and finds it full is
    /// simply freed.
    pub fn put(&self, mut m: Mbuf) {
        m.len = 0;
        let _ = self.free.push(m);
    }
}

/// A worker's private cache in front of the shared [`Pool`].
pub struct PoolCache {
    pool: Arc<Pool>,
    cache: Vec<Mbuf>,
}

impl PoolCache {
    pub fn new(pool: Arc<Pool>) -> PoolCache {
        PoolCache {
            pool,
            cache: Vec::with_capacity(CACHE_MAX),
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// An empty buffer, or `None` when the whole pool is exhausted.
    #[inline]
    pub fn alloc(&mut self) -> Option<Mbuf> {
        if self.cache.is_empty() {
            for _ in 0..CACHE_BULK {
                match self.pool.get() {
                    Some(m) => self.cache.push(m),
                    None => break,
                }
            }
        }
        self.cache.pop()
    }

    #[inline]
    pub fn free(&mut self, mut m: Mbuf) {
        m.len = 0;
        if self.cache.len() >= CACHE_MAX {
            for _ in 0..CACHE_BULK {
                if let Some(b) = self.cache.pop() {
                    self.pool.put(b);
                }
            }
        }
        self.cache.push(m);
    }

    /// Gives every cached buffer back to the shared pool.
    pub fn flush(&mut self) {
        for m in self.cache.drain(..) {
            self.pool.put(m);
        }
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_cache_round_trip_keeps_every_buffer() {
        let pool = Pool::new(100);
        let mut cache = PoolCache::new(pool.clone());
        let mut held = Vec::new();
        while let Some(m) = cache.alloc() {
            held.push(m);
        }
        assert_eq!(held.len(), 100);
        assert_eq!(pool.available(), 0);
        for m in held.drain(..) {
            cache.free(m);
        }
        cache.flush();
        assert_eq!(pool.available(), 100);
    }

    #[test]
    fn test_copy_from_rejects_oversize() {
        let mut m = Mbuf::new();
        assert!(!m.copy_from(&[0u8; MBUF_SIZE + 1]));
        assert!(m.copy_from(&[1, 2, 3]));
        assert_eq!(&m[..], &[1, 2, 3]);
    }
}
