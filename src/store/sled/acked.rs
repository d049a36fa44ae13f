//! The count of acknowledged records, kept beside sled's files, and the flush that
//! makes appends durable before that count (and the ledger) may claim them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{ACKED_INTERVAL, sled_error};
use crate::error::{Error, Result};

/// The count of records made durable, kept outside sled's files.
#[derive(Debug)]
pub(super) struct Acked {
    pub(super) db: sled::Db,
    /// sled's data file, synced after each durable flush: sled's own `flush` ends
    /// in `sync_file_range` on Linux, which reaches neither the device cache nor
    /// the file's metadata, so it survives a process crash but not a power cut.
    pub(super) data: std::fs::File,
    /// The store's directory, synced after the count file is renamed into it.
    pub(super) dir: PathBuf,
    /// How many `sync_data` calls durable flushes have made.
    pub(super) syncs: AtomicU64,
    pub(super) file: PathBuf,
    /// The count read at open.
    pub(super) base: u64,
    /// Appends since open.
    pub(super) appended: AtomicU64,
    /// The count last written, and when.
    pub(super) written: Mutex<(u64, Option<Instant>)>,
}

impl Acked {
    pub(super) fn read(file: &Path) -> Result<u64> {
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| Error::Corrupt {
            key: file.display().to_string(),
            reason,
        };
        let (count, crc) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt(format!("{} bytes, not 12", bytes.len())))?;
        let crc: [u8; 4] = crc
            .try_into()
            .map_err(|_| corrupt(format!("{} bytes, not 12", bytes.len())))?;
        if crc32fast::hash(count) != u32::from_be_bytes(crc) {
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        Ok(u64::from_be_bytes(*count))
    }

    /// Writes `count` if it is more than was written, atomically (a new file,
    /// synced, then renamed over the old one).
    fn write(&self, count: u64, force: bool) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let due = force || written.1.is_none_or(|at| at.elapsed() >= ACKED_INTERVAL);
        if count <= written.0 || !due {
            return Ok(());
        }
        let mut bytes = count.to_be_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&count.to_be_bytes()).to_be_bytes());
        let staged = self.file.with_extension("acked.new");
        let mut out = std::fs::File::create(&staged)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&staged, &self.file)?;
        // The rename is an entry of the directory: sync it too, or a power cut
        // may keep the old count (a lagging count is safe, but it is not exact).
        std::fs::File::open(&self.dir)?.sync_all()?;
        *written = (count, Some(Instant::now()));
        Ok(())
    }

    /// Flushes sled and, for `sync`, its data file to the device; then records
    /// what that flush covered.
    pub(super) fn flush(&self, force: bool, sync: bool) -> std::result::Result<(), Error> {
        let covered = self.appended.load(Ordering::SeqCst);
        self.db.flush().map_err(|e| sled_error(e, &self.file))?;
        if sync {
            self.data.sync_data()?;
            self.syncs.fetch_add(1, Ordering::SeqCst);
        }
        self.write(self.base.saturating_add(covered), force)
    }
}

impl Drop for Acked {
    fn drop(&mut self) {
        // The last handle is going: flush, and leave the exact count behind. A
        // failure here leaves the count lagging, which is safe.
        let _ = self.flush(true, true);
    }
}
