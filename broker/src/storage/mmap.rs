//! File preallocation and memory maps: the only place in Weir with `unsafe` code.
//!
//! A segment or index file is preallocated with `fallocate` before it is mapped, so every byte
//! of the map has disk blocks behind it: a full disk shows up as an error here, at roll time,
//! never as a SIGBUS while copying into the map.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions};
use rustix::fs::FallocateFlags;

use super::error::{Error, Result};

/// Makes `file` at least `len` bytes long with disk blocks allocated for all of it. Existing
/// bytes are kept; new bytes read as zero.
pub(crate) fn preallocate(file: &File, path: &Path, len: u64) -> Result<()> {
    let current = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if current >= len {
        return Ok(());
    }
    let result = match rustix::fs::fallocate(file, FallocateFlags::empty(), current, len - current)
    {
        Err(errno) if errno == rustix::io::Errno::OPNOTSUPP => write_zeros(file, current, len),
        other => other.map_err(io::Error::from),
    };
    result.map_err(|source| {
        if Error::is_no_space(&source) {
            // Give back whatever part was allocated; the caller's state is then unchanged.
            if let Err(e) = file.set_len(current) {
                tracing::warn!(path = %path.display(), error = %e,
                    "could not release the space of a failed preallocation");
            }
            Error::DiskFull {
                path: path.to_path_buf(),
                bytes: len - current,
                source,
            }
        } else {
            Error::io("preallocate", path, source)
        }
    })
}

/// Preallocation for file systems without `fallocate`: write real zeros.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = CHUNK.min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Maps the first `len` bytes of `file` for reading. The file must be at least `len` long.
#[allow(unsafe_code)]
pub(crate) fn map_read(file: &File, path: &Path, len: usize) -> Result<Mmap> {
    // SAFETY: a map is only UB-free if nothing changes the mapped bytes while a reference to
    // them lives, and if the file is not shortened under it. Weir owns the file (the data
    // directory is locked against other brokers). The writer changes bytes only through its own
    // `MmapMut` and only past the segment's published end, and readers only slice bytes below
    // the published end. Files are shortened only to their published end (a segment is trimmed
    // when sealed), or by recovery before any map exists, so no mapped byte that is read lies
    // past the end of the file.
    unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io("map", path, e))
}

/// Maps the first `len` bytes of `file` for writing. The file must be preallocated to `len`.
#[allow(unsafe_code)]
pub(crate) fn map_write(file: &File, path: &Path, len: usize) -> Result<MmapMut> {
    // SAFETY: as for `map_read`. There is at most one writable map of a file at a time (the one
    // the log's single writer holds), and it writes only past the published end, where no
    // reader looks; the file was preallocated to `len`, so no write lands in a hole.
    unsafe { MmapOptions::new().len(len).map_mut(file) }.map_err(|e| Error::io("map", path, e))
}

/// Tells the kernel not to read ahead around faults in `map`. Index files are written a few
/// bytes at a time and searched at random; read-ahead of their preallocated (unwritten) space
/// only zero-fills pages nobody asked for. A refusal is harmless and only logged.
pub(crate) fn advise_random(map: &MmapMut, path: &Path) {
    if let Err(e) = map.advise(Advice::Random) {
        tracing::debug!(path = %path.display(), error = %e, "madvise(MADV_RANDOM) was refused");
    }
}
