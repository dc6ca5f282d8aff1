//! Packet buffers and their pool.
//!
//! An [`Mbuf`] is a fixed-size, heap-allocated frame buffer that is allocated once at start-up and
//! then moves between the pool, ports, workers and handoff queues without ever being freed or
//! reallocated. The shared [`Pool`] is a lock-free bounded queue; each worker keeps a small
//! [`PoolCache`] in front of it (the DPDK mempool per-lcore cache) so the fast path touches the
//! shared queue only once per `CACHE_BULK` buffers.

use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Bytes of frame data an [`Mbuf`] holds: a 1500-byte MTU frame with two VLAN tags fits.
pub const MBUF_SIZE: usize = 2048;

/// How many buffers a [`PoolCache`] moves to or from the shared pool at once.
const CACHE_BULK: usize = 32;

/// One frame buffer. Derefs to the frame's bytes (`len` of them).
pub struct Mbuf {
    data: Box<[u8; MBUF_SIZE]>,
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
            data: Box::new([0; MBUF_SIZE]),
            len: 0,
        }
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
        self.data[..frame.len()].copy_from_slice(frame);
        self.len = frame.len() as u16;
        true
    }

    /// The whole buffer, beyond the frame's current length (for building frames in place).
    pub fn buffer_mut(&mut self) -> &mut [u8; MBUF_SIZE] {
        &mut self.data
    }
}

impl core::ops::Deref for Mbuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

impl core::ops::DerefMut for Mbuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len as usize]
    }
}

/// The shared, bounded pool of every buffer a data plane instance owns.
pub struct Pool {
    free: ArrayQueue<Mbuf>,
    capacity: usize,
}

impl Pool {
    /// Allocates `capacity` buffers up front.
    pub fn new(capacity: usize) -> Arc<Pool> {
        let capacity = capacity.max(1);
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            let _ = free.push(Mbuf::new());
        }
        Arc::new(Pool { free, capacity })
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
            cache: Vec::with_capacity(CACHE_BULK * 2),
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
        if self.cache.len() >= CACHE_BULK * 2 {
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
