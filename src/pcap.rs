//! The `pcap` port driver: frames from a pcap file in, transmitted frames to a pcap file out,
//! like DPDK's `net_pcap`. Reader and writer implement the classic libpcap format (microsecond
//! and nanosecond variants, either byte order, Ethernet link type) and are small enough to need
//! no library.

use dataplane::mbuf::{Mbuf, PoolCache};
use dataplane::port::Port;
use dataplane::time::Instant;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record we accept; larger ones are corrupt files, not frames.
const MAX_RECORD: u32 = 256 * 1024;

/// A pcap file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PcapError {
    pub path: PathBuf,
    pub reason: String,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: Instant,
    pub data: Vec<u8>,
    /// Length on the wire (may exceed `data` for truncated captures).
    pub orig_len: u32,
}

/// Reads records from a pcap file.
pub struct PcapReader {
    path: PathBuf,
    input: BufReader<File>,
    swapped: bool,
    nanos: bool,
}

impl PcapReader {
    pub fn open(path: &Path) -> Result<PcapReader, PcapError> {
        let err = |reason: String| PcapError {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut input = BufReader::new(file);
        let mut hdr = [0u8; 24];
        input
            .read_exact(&mut hdr)
            .map_err(|e| err(format!("not a pcap file (no 24-byte header: {e})")))?;
        let magic = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let (swapped, nanos) = match magic {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m => return Err(err(format!("not a pcap file (magic {m:#010x})"))),
        };
        let rd = |b: &[u8]| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let linktype = rd(&hdr[20..24]) & 0x0fff_ffff;
        if linktype != LINKTYPE_ETHERNET {
            return Err(err(format!(
                "link type {linktype} is not Ethernet (1); capture with an Ethernet interface"
            )));
        }
        Ok(PcapReader {
            path: path.to_path_buf(),
            input,
            swapped,
            nanos,
        })
    }

    /// The next record, `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        let mut hdr = [0u8; 16];
        match self.input.read_exact(&mut hdr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(self.err(format!("read error: {e}"))),
        }
        let rd = |b: &[u8]| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if self.swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let (sec, frac, incl, orig) = (
            rd(&hdr[0..4]),
            rd(&hdr[4..8]),
            rd(&hdr[8..12]),
            rd(&hdr[12..16]),
        );
        if incl > MAX_RECORD {
            return Err(self.err(format!("record of {incl} bytes: file is corrupt")));
        }
        let mut data = vec![0u8; incl as usize];
        self.input
            .read_exact(&mut data)
            .map_err(|e| self.err(format!("truncated record: {e}")))?;
        let nanos = if self.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        Ok(Some(Record {
            time: Instant::from_nanos(u64::from(sec) * 1_000_000_000 + nanos),
            data,
            orig_len: orig,
        }))
    }

    fn err(&self, reason: String) -> PcapError {
        PcapError {
            path: self.path.clone(),
            reason,
        }
    }

    /// Every record of a file.
    pub fn read_all(path: &Path) -> Result<Vec<Record>, PcapError> {
        let mut r = PcapReader::open(path)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }
}

/// Writes records to a pcap file (microsecond timestamps, little endian).
pub struct PcapWriter {
    out: BufWriter<File>,
}

impl PcapWriter {
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&MAGIC_US.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&0i32.to_le_bytes());
        hdr.extend_from_slice(&0u32.to_le_bytes());
        hdr.extend_from_slice(&65535u32.to_le_bytes());
        hdr.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&hdr)?;
        Ok(PcapWriter { out })
    }

    pub fn write(&mut self, time: Instant, frame: &[u8]) -> io::Result<()> {
        let ns = time.as_nanos();
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        hdr[4..8].copy_from_slice(&(((ns % 1_000_000_000) / 1000) as u32).to_le_bytes());
        hdr[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        hdr[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&hdr)?;
        self.out.write_all(frame)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The clock a pcap replay runs on: the timestamp of the frame being processed.
#[derive(Clone, Default)]
pub struct ReplayClock(Arc<AtomicU64>);

impl ReplayClock {
    pub fn set(&self, t: Instant) {
        self.0.store(t.as_nanos(), Ordering::Relaxed);
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// The transmit side of a pcap port. Receiving is driven by the replay loop, which merges every
/// pcap port's input in timestamp order; this port only writes.
pub struct PcapTxPort {
    name: String,
    writer: Option<PcapWriter>,
    clock: ReplayClock,
    trace: bool,
    error: WriteError,
}

/// The first write error of any pcap port of a run; the replay loop stops on it.
pub type WriteError = Arc<std::sync::OnceLock<String>>;

impl PcapTxPort {
    pub fn new(
        name: &str,
        writer: Option<PcapWriter>,
        clock: ReplayClock,
        trace: bool,
        error: WriteError,
    ) -> Self {
        PcapTxPort {
            name: name.to_string(),
            writer,
            clock,
            trace,
            error,
        }
    }
}

impl Port for PcapTxPort {
    fn rx_burst(&mut self, _: &mut PoolCache, _: &mut Vec<Mbuf>, _: usize) -> usize {
        0
    }

    fn tx_burst(&mut self, pool: &mut PoolCache, burst: &mut Vec<Mbuf>) -> usize {
        let n = burst.len();
        let now = self.clock.now();
        for m in burst.drain(..) {
            if self.trace {
                println!("  tx {:<6} {}", self.name, crate::trace::describe(&m));
            }
            if let Some(w) = &mut self.writer {
                if let Err(e) = w.write(now, &m) {
                    let _ = self.error.set(format!("port {}: {e}", self.name));
                }
            }
            pool.free(m);
        }
        if let Some(w) = &mut self.writer {
            if let Err(e) = w.flush() {
                let _ = self.error.set(format!("port {}: {e}", self.name));
            }
        }
        n
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_write_then_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pcap");
        let mut w = PcapWriter::create(&p).unwrap();
        w.write(Instant::from_micros(1_500_000), &[1, 2, 3])
            .unwrap();
        w.write(Instant::from_micros(2_000_001), &[4; 60]).unwrap();
        w.flush().unwrap();
        let recs = PcapReader::read_all(&p).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].data, vec![1, 2, 3]);
        assert_eq!(recs[0].time, Instant::from_micros(1_500_000));
        assert_eq!(recs[1].time, Instant::from_micros(2_000_001));
    }

    #[test]
    fn test_rejects_non_pcap_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pcap");
        std::fs::write(&p, b"hello world, this is not a capture").unwrap();
        let e = PcapReader::open(&p).err().unwrap();
        assert!(e.to_string().contains("not a pcap file"), "{e}");
        let mut w = PcapWriter::create(&p).unwrap();
        w.write(Instant::ZERO, &[9; 100]).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = PcapReader::read_all(&p).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
