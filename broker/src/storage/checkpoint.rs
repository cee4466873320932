//! Small state files that must survive crashes whole: framed, checksummed, replaced atomically.
//!
//! ```text
//! magic "WEIRCKPT" (8) | version u16 | payload length u32 | CRC-32 of payload u32 | payload
//! ```
//!
//! A write goes to `<name>.tmp`, is fsynced, renamed over `<name>`, and the directory is
//! fsynced, so a reader finds either the old file or the new one, never a mix. A damaged file
//! is reported as [`Error::Corrupt`] naming it; its owner decides what to fall back to.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::files;

const MAGIC: &[u8; 8] = b"WEIRCKPT";
const HEADER_LEN: usize = 8 + 2 + 4 + 4;

/// Writes `payload` to `path` atomically and durably, framed with `version` and a checksum.
pub fn write_checkpoint(path: &Path, version: u16, payload: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let length = u32::try_from(payload.len()).expect("checkpoints are small");
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    frame.extend_from_slice(payload);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&frame)?;
        file.sync_all()
    };
    write().map_err(|e| no_space_or_io("write", &tmp, frame.len(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    files::sync_directory(path.parent().unwrap_or(Path::new(".")))
}

/// Reads the payload of a checkpoint written with `version`; `None` if there is no file.
pub fn read_checkpoint(path: &Path, version: u16) -> Result<Option<Vec<u8>>> {
    let frame = match std::fs::read(path) {
        Ok(frame) => frame,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let corrupt = |position: usize, reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason,
    };
    if frame.len() < HEADER_LEN {
        return Err(corrupt(
            0,
            format!("{} bytes is shorter than the header", frame.len()),
        ));
    }
    if &frame[0..8] != MAGIC {
        return Err(corrupt(0, "not a Weir checkpoint file (bad magic)".into()));
    }
    let found_version = u16::from_be_bytes([frame[8], frame[9]]);
    if found_version != version {
        let reason = format!("format version {found_version}, expected {version}");
        return Err(corrupt(8, reason));
    }
    let length = u32::from_be_bytes(frame[10..14].try_into().expect("4 bytes")) as usize;
    let stored_crc = u32::from_be_bytes(frame[14..18].try_into().expect("4 bytes"));
    let payload = &frame[HEADER_LEN..];
    if payload.len() != length {
        let reason = format!("payload is {} bytes, header says {length}", payload.len());
        return Err(corrupt(10, reason));
    }
    let crc = crc32fast::hash(payload);
    if crc != stored_crc {
        let reason = format!("CRC-32 mismatch: stored {stored_crc:#010x}, computed {crc:#010x}");
        return Err(corrupt(14, reason));
    }
    Ok(Some(payload.to_vec()))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("a checkpoint path names a file")
        .to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn no_space_or_io(op: &'static str, path: &Path, bytes: usize, source: std::io::Error) -> Error {
    if Error::is_no_space(&source) {
        Error::DiskFull {
            path: path.to_path_buf(),
            bytes: bytes as u64,
            source,
        }
    } else {
        Error::io(op, path, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(read_checkpoint(&path, 1).unwrap(), None);
        write_checkpoint(&path, 1, b"first").unwrap();
        write_checkpoint(&path, 1, b"second").unwrap();
        assert_eq!(
            read_checkpoint(&path, 1).unwrap().as_deref(),
            Some(&b"second"[..])
        );
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn damage_is_reported_with_the_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_checkpoint(&path, 1, b"payload").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let message = read_checkpoint(&path, 1).unwrap_err().to_string();
        assert!(
            message.contains("state is corrupt at byte 14: CRC-32 mismatch"),
            "{message}"
        );

        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            read_checkpoint(&path, 1),
            Err(Error::Corrupt { position: 0, .. })
        ));
        write_checkpoint(&path, 2, b"payload").unwrap();
        assert!(matches!(
            read_checkpoint(&path, 1),
            Err(Error::Corrupt { position: 8, .. })
        ));
    }
}
