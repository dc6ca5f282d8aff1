//! DPDK poll-mode drivers (cargo feature `dpdk`) over the system libdpdk (DPDK 22.11), through
//! the small C shim in `ffi/dpdk/`: our own ABI of fourteen functions, declared by hand in
//! the private `sys` module (docs/decisions.md says why not bindgen).
//!
//! - [`Eal`]: the Environment Abstraction Layer, initialised once per process and cleaned up
//!   (`rte_eal_cleanup`) when its last handle is dropped; ports and queues hold handles, so the
//!   EAL outlives every use of it.
//! - [`EthPort`]: a device, configured and started with its own mbuf pool; stopped and closed
//!   (and the pool freed) when the port and all its queues are dropped.
//! - [`RxQueue`], [`TxQueue`]: one queue each, handed out once and used through `&mut self`, so
//!   one thread at a time. They copy frames between rte_mbufs and the caller's buffers, with
//!   one shim call (one `rte_eth_rx_burst` / `rte_eth_tx_burst`) per burst.
//!
//! Threads: DPDK's burst and mempool functions are valid from any thread on distinct queues
//! (the default mempool ring is multi-producer, multi-consumer), but only an lcore has a mempool
//! cache. The first queue call from a thread that is not an lcore registers it
//! (`rte_thread_register`, after the caller has pinned it: the EAL records its CPU set); it is
//! unregistered when the thread exits.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most frames one [`RxQueue::recv`] or [`TxQueue::send`] call moves.
pub const MAX_BURST: usize = 64;
/// Largest frame [`TxQueue::send`] can send: the data room of the pool's mbufs.
pub const MAX_FRAME: usize = 2048;

/// The shim's functions (`ffi/dpdk/shim.h`), declared by hand; keep them in step.
mod sys {
    use std::ffi::{c_char, c_int, c_void};

    /// `struct ng_dev_info`.
    #[repr(C)]
    pub struct DevInfo {
        pub port_id: u16,
        pub max_rx_queues: u16,
        pub max_tx_queues: u16,
        pub mac: [u8; 6],
        pub socket_id: i32,
        pub driver: [c_char; 32],
    }

    /// `struct ng_stats`.
    #[repr(C)]
    #[derive(Default)]
    pub struct Stats {
        pub ipackets: u64,
        pub opackets: u64,
        pub imissed: u64,
        pub ierrors: u64,
        pub oerrors: u64,
        pub rx_nombuf: u64,
    }

    // The shim asserts the same sizes on its side.
    const _: () = assert!(std::mem::size_of::<DevInfo>() == 48);
    const _: () = assert!(std::mem::size_of::<Stats>() == 48);

    extern "C" {
        pub fn ng_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
        pub fn ng_eal_cleanup() -> c_int;
        pub fn ng_lcore_id() -> c_int;
        pub fn ng_thread_register() -> c_int;
        pub fn ng_thread_unregister();
        pub fn ng_strerror(errnum: c_int) -> *const c_char;
        pub fn ng_dev_info(name: *const c_char, out: *mut DevInfo) -> c_int;
        pub fn ng_pool_create(
            name: *const c_char,
            n: u32,
            cache: u32,
            socket: i32,
            err: *mut c_int,
        ) -> *mut c_void;
        pub fn ng_pool_free(pool: *mut c_void);
        pub fn ng_port_start(
            port: u16,
            rxq: u16,
            txq: u16,
            rx_desc: *mut u16,
            tx_desc: *mut u16,
            pool: *mut c_void,
            promisc: c_int,
        ) -> c_int;
        pub fn ng_port_close(port: u16);
        pub fn ng_port_stats(port: u16, out: *mut Stats) -> c_int;
        pub fn ng_rx(
            port: u16,
            q: u16,
            dst: *const *mut u8,
            cap: u16,
            lens: *mut u16,
            n: u16,
            dropped: *mut u64,
        ) -> u16;
        pub fn ng_tx(
            port: u16,
            q: u16,
            pool: *mut c_void,
            src: *const *const u8,
            lens: *const u16,
            n: u16,
        ) -> u16;
    }
}

/// A failed DPDK call: which one, and the errno it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub call: &'static str,
    pub errno: i32,
}

impl Error {
    fn new(call: &'static str, errno: i32) -> Error {
        Error {
            call,
            errno: errno.abs(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (errno {})",
            self.call,
            strerror(self.errno),
            self.errno
        )
    }
}

impl std::error::Error for Error {}

/// `rte_strerror`, copied out.
fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a NUL-terminated string, either static
    // or in a per-thread buffer that stays valid until this thread's next call; it is copied
    // before anything else runs on this thread.
    unsafe { CStr::from_ptr(sys::ng_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// Set by the first [`Eal::init`]: the EAL cannot be initialised twice in one process.
static EAL_INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Cloning is cheap; `rte_eal_cleanup` runs when the last clone (held by
/// the caller, ports, queues and registered threads) is dropped.
#[derive(Clone)]
pub struct Eal(Arc<EalInner>);

struct EalInner {
    /// Ports started through this EAL (a device is configured once).
    started: Mutex<Vec<u16>>,
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: the last handle is gone, so no port, queue or registered thread of ours can
        // use DPDK any more; cleanup runs once (this value exists once per process).
        unsafe { sys::ng_eal_cleanup() };
    }
}

impl Eal {
    /// Initialises the EAL with `args` (without the program name). Once per process: a second
    /// call fails with `EALREADY`, even after the first handle was dropped.
    ///
    /// `rte_eal_init` pins the calling thread to the main lcore's CPU; the thread's CPU set from
    /// before is restored, so threads spawned later can be pinned freely.
    pub fn init(args: &[&str]) -> Result<Eal, Error> {
        let strings = std::iter::once(&"nodegate")
            .chain(args)
            .map(|a| CString::new(*a))
            .collect::<Result<Vec<CString>, _>>()
            .map_err(|_| Error::new("rte_eal_init", libc::EINVAL))?;
        if EAL_INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::new("rte_eal_init", libc::EALREADY));
        }
        let mut argv: Vec<*mut c_char> = strings.into_iter().map(CString::into_raw).collect();
        argv.push(std::ptr::null_mut());
        // The EAL may keep pointers into argv (and getopt permutes it): leak both, once per
        // process.
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
        let argc = (argv.len() - 1) as c_int;
        let affinity = thread_affinity();
        // SAFETY: argv holds `argc` valid NUL-terminated strings followed by NULL, all leaked
        // so they live as long as the process; this is the process's only rte_eal_init call
        // (EAL_INITIALISED).
        let ret = unsafe { sys::ng_eal_init(argc, argv.as_mut_ptr()) };
        if let Some(set) = affinity {
            set_thread_affinity(&set);
        }
        if ret < 0 {
            return Err(Error::new("rte_eal_init", ret));
        }
        Ok(Eal(Arc::new(EalInner {
            started: Mutex::new(Vec::new()),
        })))
    }

    /// Drops this handle and, if it was the last one, cleans the EAL up now
    /// (`rte_eal_cleanup`); returns whether it did. While a port, queue or registered thread
    /// still holds a handle, cleanup waits for the last of them.
    pub fn cleanup(self) -> bool {
        Arc::try_unwrap(self.0).is_ok()
    }

    /// The probed device named `name` (a PCI address in long form, or a vdev name).
    pub fn device(&self, name: &str) -> Result<DeviceInfo, Error> {
        let c = CString::new(name)
            .map_err(|_| Error::new("rte_eth_dev_get_port_by_name", libc::EINVAL))?;
        let mut info = sys::DevInfo {
            port_id: 0,
            max_rx_queues: 0,
            max_tx_queues: 0,
            mac: [0; 6],
            socket_id: 0,
            driver: [0; 32],
        };
        // SAFETY: `c` is a NUL-terminated string and `info` a live struct of the shim's layout
        // (size checked on both sides); the EAL is initialised (we hold a handle).
        let ret = unsafe { sys::ng_dev_info(c.as_ptr(), &mut info) };
        if ret != 0 {
            return Err(Error::new("rte_eth_dev_get_port_by_name", ret));
        }
        let driver: Vec<u8> = info
            .driver
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as u8)
            .collect();
        Ok(DeviceInfo {
            port_id: info.port_id,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            mac: info.mac,
            socket_id: info.socket_id,
            driver: String::from_utf8_lossy(&driver).into_owned(),
        })
    }
}

/// The calling thread's CPU set, if it can be read.
fn thread_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel writes at most the size we pass into the
    // live `set`.
    let ret =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (ret == 0).then_some(set)
}

fn set_thread_affinity(set: &libc::cpu_set_t) {
    // SAFETY: pid 0 is the calling thread; the kernel reads the size we pass from a live set.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// What nodegate needs to know about a probed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub port_id: u16,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// The device's own MAC address.
    pub mac: [u8; 6],
    /// NUMA socket of the device (-1: any).
    pub socket_id: i32,
    /// The poll-mode driver (`net_af_packet`, `net_ixgbe`, ...).
    pub driver: String,
}

/// How to configure a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Descriptors per RX and per TX queue (adjusted to the device's limits).
    pub descriptors: u16,
    /// Buffers in the port's mbuf pool.
    pub mbufs: u32,
    /// Per-lcore cache of the pool (0..=512, at most `mbufs / 1.5`).
    pub mbuf_cache: u32,
    /// Receive frames for every MAC address, not only the device's.
    pub promiscuous: bool,
}

/// Device counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    /// Frames the device dropped for lack of RX descriptors (we did not poll fast enough).
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A started port. Hands out each of its queues once.
pub struct EthPort {
    inner: Arc<PortInner>,
    rx_taken: Mutex<Vec<bool>>,
    tx_taken: Mutex<Vec<bool>>,
}

struct PortInner {
    eal: Eal,
    port_id: u16,
    pool: NonNull<c_void>,
    rx_descriptors: u16,
    tx_descriptors: u16,
}

// SAFETY: `pool` is an rte_mempool, which DPDK allows any thread to use concurrently (the
// default ring ops are multi-producer/multi-consumer, and the per-lcore caches are indexed by
// the calling thread's own lcore id); the port id is plain data. The queues, which are not
// thread-safe in DPDK, are handed out once each and used through `&mut`.
unsafe impl Send for PortInner {}
// SAFETY: as above; `&PortInner` only gives access to the pool pointer and the port id.
unsafe impl Sync for PortInner {}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no queue of this port is left (they hold this value), so nothing polls it;
        // the port was started by us, and the pool is ours and freed once, after the port that
        // used it is closed.
        unsafe {
            sys::ng_port_close(self.port_id);
            sys::ng_pool_free(self.pool.as_ptr());
        }
        if let Ok(mut started) = self.eal.0.started.lock() {
            started.retain(|&p| p != self.port_id);
        }
    }
}

impl EthPort {
    /// Configures `dev` with `setup` (RSS over the RX queues when there are several and the
    /// device hashes), gives it its own mbuf pool, and starts it.
    pub fn start(eal: &Eal, dev: &DeviceInfo, setup: &PortSetup) -> Result<EthPort, Error> {
        let (rxq, txq) = (setup.rx_queues, setup.tx_queues);
        if rxq == 0 || txq == 0 || rxq > dev.max_rx_queues || txq > dev.max_tx_queues {
            return Err(Error::new("rte_eth_dev_configure", libc::EINVAL));
        }
        {
            let mut started = eal.0.started.lock().expect("EAL port list");
            if started.contains(&dev.port_id) {
                return Err(Error::new("rte_eth_dev_configure", libc::EBUSY));
            }
            started.push(dev.port_id);
        }
        let release = || {
            if let Ok(mut s) = eal.0.started.lock() {
                s.retain(|&p| p != dev.port_id);
            }
        };
        let name = CString::new(format!("nodegate_pool_{}", dev.port_id)).expect("no NUL");
        let mut err: c_int = 0;
        // SAFETY: `name` is NUL-terminated and `err` a live int; the EAL is initialised.
        let pool = unsafe {
            sys::ng_pool_create(
                name.as_ptr(),
                setup.mbufs,
                setup.mbuf_cache,
                dev.socket_id,
                &mut err,
            )
        };
        let Some(pool) = NonNull::new(pool) else {
            release();
            return Err(Error::new("rte_pktmbuf_pool_create", err));
        };
        let (mut rx_desc, mut tx_desc) = (setup.descriptors, setup.descriptors);
        // SAFETY: the port id names a probed device not started by anyone else (`started`);
        // the descriptor counts are live u16s the shim adjusts in place; `pool` is a live
        // mempool, which the port keeps using until it is closed before the pool is freed.
        let ret = unsafe {
            sys::ng_port_start(
                dev.port_id,
                rxq,
                txq,
                &mut rx_desc,
                &mut tx_desc,
                pool.as_ptr(),
                c_int::from(setup.promiscuous),
            )
        };
        if ret != 0 {
            // SAFETY: the port is stopped (the shim leaves it so on failure) and was never
            // polled; close it, then free the pool nothing else has seen.
            unsafe {
                sys::ng_port_close(dev.port_id);
                sys::ng_pool_free(pool.as_ptr());
            }
            release();
            return Err(Error::new("port set-up (configure, queues, start)", ret));
        }
        Ok(EthPort {
            inner: Arc::new(PortInner {
                eal: eal.clone(),
                port_id: dev.port_id,
                pool,
                rx_descriptors: rx_desc,
                tx_descriptors: tx_desc,
            }),
            rx_taken: Mutex::new(vec![false; usize::from(rxq)]),
            tx_taken: Mutex::new(vec![false; usize::from(txq)]),
        })
    }

    /// RX queue `q`, once; `None` if it does not exist or was taken.
    pub fn rx_queue(&self, q: u16) -> Option<RxQueue> {
        take(&self.rx_taken, q).then(|| RxQueue {
            port: self.inner.clone(),
            queue: q,
            dropped: 0,
        })
    }

    /// TX queue `q`, once; `None` if it does not exist or was taken.
    pub fn tx_queue(&self, q: u16) -> Option<TxQueue> {
        take(&self.tx_taken, q).then(|| TxQueue {
            port: self.inner.clone(),
            queue: q,
        })
    }

    /// Descriptors per RX and TX queue, as the device accepted them.
    pub fn descriptors(&self) -> (u16, u16) {
        (self.inner.rx_descriptors, self.inner.tx_descriptors)
    }

    pub fn port_id(&self) -> u16 {
        self.inner.port_id
    }

    /// The device's counters.
    pub fn stats(&self) -> Result<PortStats, Error> {
        let mut s = sys::Stats::default();
        // SAFETY: the port is started and alive; `s` is a live struct of the shim's layout.
        let ret = unsafe { sys::ng_port_stats(self.inner.port_id, &mut s) };
        if ret != 0 {
            return Err(Error::new("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

fn take(taken: &Mutex<Vec<bool>>, q: u16) -> bool {
    let mut t = taken.lock().expect("queue list");
    match t.get_mut(usize::from(q)) {
        Some(slot) if !*slot => {
            *slot = true;
            true
        }
        _ => false,
    }
}

/// One RX queue of a started port.
pub struct RxQueue {
    port: Arc<PortInner>,
    queue: u16,
    dropped: u64,
}

impl RxQueue {
    /// Receives up to `bufs.len()` frames (at most [`MAX_BURST`] and `lens.len()`), copying
    /// them in order into `bufs[..n]` with their lengths in `lens[..n]`; returns `n`. A frame
    /// longer than the shortest buffer is dropped and counted in [`RxQueue::dropped`].
    pub fn recv<B: AsMut<[u8]>>(&mut self, bufs: &mut [B], lens: &mut [u16]) -> usize {
        register_thread(&self.port.eal);
        let n = bufs.len().min(lens.len()).min(MAX_BURST);
        let mut dst = [std::ptr::null_mut::<u8>(); MAX_BURST];
        let mut cap = usize::from(u16::MAX);
        for (p, b) in dst.iter_mut().zip(bufs[..n].iter_mut()) {
            let s = b.as_mut();
            cap = cap.min(s.len());
            *p = s.as_mut_ptr();
        }
        if n == 0 {
            return 0;
        }
        // SAFETY: dst[..n] point to n distinct live buffers of at least `cap` bytes, borrowed
        // mutably for this call and not touched otherwise until it returns; lens has room for
        // n values; the shim writes at most n of each. The queue is this value's alone (handed
        // out once, used through &mut) and its port is started while `self.port` lives.
        let k = unsafe {
            sys::ng_rx(
                self.port.port_id,
                self.queue,
                dst.as_ptr(),
                cap as u16,
                lens.as_mut_ptr(),
                n as u16,
                &mut self.dropped,
            )
        };
        usize::from(k).min(n)
    }

    /// Frames dropped because they did not fit the caller's buffers.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }
}

/// One TX queue of a started port.
pub struct TxQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl TxQueue {
    /// Sends a prefix of `frames` (at most [`MAX_BURST`], stopping before a frame longer than
    /// [`MAX_FRAME`]) with one `rte_eth_tx_burst`, each copied into an mbuf of the port's
    /// pool; returns how many the device took. None are sent when the pool is empty.
    pub fn send<B: std::ops::Deref<Target = [u8]>>(&mut self, frames: &[B]) -> usize {
        register_thread(&self.port.eal);
        let mut src = [std::ptr::null::<u8>(); MAX_BURST];
        let mut lens = [0u16; MAX_BURST];
        let mut n = 0;
        for f in frames.iter().take(MAX_BURST) {
            if f.len() > MAX_FRAME {
                break;
            }
            src[n] = f.as_ptr();
            lens[n] = f.len() as u16;
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        // SAFETY: src[..n] point to n live frames of lens[..n] bytes, borrowed for this call;
        // the shim only reads them. The pool is the port's own live mempool; the queue is this
        // value's alone and its port is started while `self.port` lives.
        let sent = unsafe {
            sys::ng_tx(
                self.port.port_id,
                self.queue,
                self.port.pool.as_ptr(),
                src.as_ptr(),
                lens.as_ptr(),
                n as u16,
            )
        };
        usize::from(sent).min(n)
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }
}

/// This thread's lcore registration, undone when the thread exits.
struct Lcore {
    /// Keeps the EAL up until the thread has unregistered.
    _eal: Option<Eal>,
    registered: bool,
}

impl Drop for Lcore {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: this thread registered itself (below) and the EAL is still up (`_eal` is
            // dropped after this body).
            unsafe { sys::ng_thread_unregister() };
        }
    }
}

thread_local! {
    static LCORE: RefCell<Option<Lcore>> = const { RefCell::new(None) };
}

/// Makes the calling thread an lcore (so it gets mempool caches) on its first DPDK call;
/// threads that already are (the EAL's main thread) are left alone. A refusal is harmless:
/// the thread then uses the pool without a cache.
fn register_thread(eal: &Eal) {
    let _ = LCORE.try_with(|l| {
        if l.borrow().is_some() {
            return;
        }
        // SAFETY: the EAL is initialised (we hold a handle); reads a thread-local.
        let lcore = if unsafe { sys::ng_lcore_id() } >= 0 {
            Lcore {
                _eal: None,
                registered: false,
            }
        } else {
            // SAFETY: the EAL is initialised and this thread is not an lcore yet.
            let ok = unsafe { sys::ng_thread_register() } == 0;
            Lcore {
                _eal: ok.then(|| eal.clone()),
                registered: ok,
            }
        };
        *l.borrow_mut() = Some(lcore);
    });
}

/// The calling thread's lcore id, if it has one (registered worker threads do after their
/// first queue call).
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local of the EAL; valid before and after initialisation.
    let id = unsafe { sys::ng_lcore_id() };
    u32::try_from(id).ok()
}

#[cfg(test)]
mod test {
    use super::*;

    /// The whole life of the EAL in one test (it can be initialised once per process): a
    /// `net_ring` vdev, whose TX queue feeds its RX queue, carries frames from a registered
    /// worker thread and back, byte for byte.
    #[test]
    fn test_eal_ring_port_loopback() {
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "64",
            "--no-shconf",
            "--no-telemetry",
            "--no-pci",
            "--log-level=warning",
            "--vdev=net_ring0",
        ])
        .expect("EAL up");
        assert_eq!(
            Eal::init(&["--no-huge"]).err().map(|e| e.errno),
            Some(libc::EALREADY)
        );
        assert_eq!(
            eal.device("net_ring9").unwrap_err().call,
            "rte_eth_dev_get_port_by_name"
        );
        let dev = eal.device("net_ring0").expect("the vdev is probed");
        assert_eq!(dev.driver, "net_ring");
        assert!(dev.max_rx_queues >= 1 && dev.max_tx_queues >= 1, "{dev:?}");
        let setup = PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            descriptors: 256,
            mbufs: 1023,
            mbuf_cache: 32,
            promiscuous: false,
        };
        let too_many = PortSetup {
            rx_queues: dev.max_rx_queues + 1,
            ..setup.clone()
        };
        assert!(EthPort::start(&eal, &dev, &too_many).is_err());
        let port = EthPort::start(&eal, &dev, &setup).expect("port started");
        assert_eq!(
            EthPort::start(&eal, &dev, &setup).err().map(|e| e.errno),
            Some(libc::EBUSY),
            "a device is started once"
        );
        let mut rx = port.rx_queue(0).unwrap();
        let mut tx = port.tx_queue(0).unwrap();
        assert!(port.rx_queue(0).is_none() && port.tx_queue(1).is_none());

        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| (0..60 + usize::from(i) * 30).map(|b| b as u8 ^ i).collect())
            .collect();
        let worker = std::thread::spawn(move || {
            let sent = tx.send(&frames[..32]) + tx.send(&frames[32..]);
            assert_eq!(sent, 40);
            assert!(current_lcore().is_some(), "the worker became an lcore");
            // Too long for an mbuf: not sent, and stops the burst there.
            assert_eq!(tx.send(&[vec![0u8; MAX_FRAME + 1], vec![0u8; 60]]), 0);
            let mut bufs = vec![vec![0u8; 2048]; 64];
            let mut lens = [0u16; 64];
            let mut got = Vec::new();
            while got.len() < frames.len() {
                let n = rx.recv(&mut bufs, &mut lens);
                assert!(n > 0, "frames looped back");
                for (b, &l) in bufs.iter().zip(&lens).take(n) {
                    got.push(b[..usize::from(l)].to_vec());
                }
            }
            assert_eq!(got, frames);
            // A buffer too small for the frame: dropped and counted.
            assert_eq!(tx.send(&[vec![7u8; 100]]), 1);
            let mut small = vec![vec![0u8; 64]; 1];
            assert_eq!(rx.recv(&mut small, &mut lens), 0);
            assert_eq!(rx.dropped(), 1);
            (rx, tx)
        });
        let (rx, tx) = worker.join().unwrap();
        let stats = port.stats().unwrap();
        assert_eq!((stats.ipackets, stats.opackets), (41, 41), "{stats:?}");
        drop((rx, tx, port));
        // Closed with its last queue: no longer refused as busy (closing a vdev releases its
        // port id, so DPDK itself now refuses it, and says so on stderr).
        let again = EthPort::start(&eal, &dev, &setup).err().map(|e| e.errno);
        assert_ne!(again, Some(libc::EBUSY));
    }
}
