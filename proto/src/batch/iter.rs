//! Walking a buffer of consecutive batches (a segment, a fetch response, a produce request).

use std::iter::FusedIterator;

use super::{BatchHeader, InvalidBatch, validate};

/// Iterates over the consecutive batches at the start of `buf`, validating each (see
/// [`validate`]).
///
/// Yields `(position, header)` for each valid batch, where `position` is the batch's first byte
/// in `buf`. At the first invalid batch it yields one [`InvalidBatch`] naming that position and
/// stops. A buffer that ends exactly after a batch (or is empty) ends cleanly.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        buf,
        position: 0,
        failed: false,
    }
}

/// Iterator over the batches of a buffer; see [`batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

impl Batches<'_> {
    /// Byte position of the next batch to read. Once the iterator is done, this is the end of
    /// the last valid batch: where a log would be truncated.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(usize, BatchHeader), InvalidBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position == self.buf.len() {
            return None;
        }
        let position = self.position;
        match validate(&self.buf[position..]) {
            Ok(header) => {
                self.position += header.size();
                Some(Ok((position, header)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(InvalidBatch { position, error }))
            }
        }
    }
}

impl FusedIterator for Batches<'_> {}
