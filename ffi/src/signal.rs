//! SIGINT and SIGTERM as a flag the run loop polls: the handler only stores to an atomic, which
//! is async-signal-safe.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM (once is enough; again is harmless).
pub fn install_stop_handler() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only performs an atomic store,
        // which is async-signal-safe; `signal` replaces the disposition of a catchable signal and
        // touches no memory of ours.
        let prev = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        if prev == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM has arrived since the handler was installed.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
