//! The IDX format of MNIST and Fashion-MNIST: big-endian, magic `00 00 <type> <ndims>`, then
//! one u32 per dimension, then the data.

use super::{open, read_up_to, DataError, MAX_INPUT_BYTES};
use std::path::Path;

/// An IDX array of unsigned bytes (type 0x08).
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    /// The array's dimensions.
    pub dims: Vec<usize>,
    /// Its bytes, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file (gzipped or plain).
pub fn read(path: &Path) -> Result<Idx, DataError> {
    read_rows(path, None)
}

/// Reads the header, then only what it promises (at most the first `rows` items): a stream
/// that goes on past it, or a gzip stream that would inflate further, is not read on.
pub fn read_rows(path: &Path, rows: Option<usize>) -> Result<Idx, DataError> {
    let mut r = open(path)?;
    let mut bytes = read_up_to(path, &mut r, 4)?;
    if bytes.len() == 4 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08 && (1..=4).contains(&bytes[3]) {
        let nd = bytes[3] as u64;
        bytes.extend(read_up_to(path, &mut r, 4 * nd)?);
        if bytes.len() as u64 == 4 + 4 * nd {
            let dims: Vec<u64> = (0..nd as usize)
                .map(|i| {
                    u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as u64
                })
                .collect();
            let per_item: u64 = dims[1..].iter().product();
            let items = rows.map_or(dims[0], |n| dims[0].min(n as u64));
            let wanted = items.saturating_mul(per_item);
            if wanted > MAX_INPUT_BYTES {
                return Err(DataError::new(
                    path,
                    "the header promises more than the 16 GiB nnlang reads from one file",
                ));
            }
            let data = read_up_to(path, &mut r, wanted)?;
            let full = wanted == dims.iter().product::<u64>();
            // The whole array is read: nothing may follow it.
            if full && data.len() as u64 == wanted && !read_up_to(path, &mut r, 1)?.is_empty() {
                return Err(DataError::new(
                    path,
                    format!("the header promises {wanted} bytes of data, the file has more"),
                ));
            }
            if !full && (data.len() as u64) < wanted {
                return Err(DataError::new(
                    path,
                    format!(
                        "the file ends before the {items} items the header promises ({} of {wanted} bytes)",
                        data.len()
                    ),
                ));
            }
            bytes.extend(data);
            let mut idx = parse_prefix(path, &bytes, !full)?;
            if !full {
                idx.dims[0] = items as usize;
            }
            return Ok(idx);
        }
    }
    parse(path, &bytes)
}

/// Parses IDX bytes read from `path` (for messages).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Idx, DataError> {
    parse_prefix(path, bytes, false)
}

/// Parses an IDX file; with `prefix` the data may be a whole number of items short (a read
/// of the first rows only).
fn parse_prefix(path: &Path, bytes: &[u8], prefix: bool) -> Result<Idx, DataError> {
    parse_checked(path, bytes, prefix)
}

fn parse_checked(path: &Path, bytes: &[u8], prefix: bool) -> Result<Idx, DataError> {
    if bytes.len() < 4 {
        return Err(DataError::new(
            path,
            format!("not an IDX file: {} bytes, shorter than the 4-byte magic number", bytes.len()),
        ));
    }
    let magic = &bytes[..4];
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::new(
            path,
            format!(
                "not an IDX file: magic number {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 <dimensions>",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(DataError::new(
            path,
            format!("IDX element type 0x{:02x} is not supported; only unsigned bytes (0x08) are", magic[2]),
        ));
    }
    let nd = magic[3] as usize;
    if nd == 0 || nd > 4 {
        return Err(DataError::new(path, format!("IDX file with {nd} dimensions; expected 1 to 4")));
    }
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(DataError::new(path, format!("truncated IDX header: {} bytes, expected {header}", bytes.len())));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::new(path, "IDX dimensions overflow"))?;
    let have = bytes.len() - header;
    let per_item = dims[1..].iter().product::<usize>().max(1);
    if prefix && have <= expected && have.is_multiple_of(per_item) {
        return Ok(Idx { dims, data: bytes[header..].to_vec() });
    }
    if have != expected {
        let dims_text: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(DataError::new(
            path,
            format!("the header promises {} = {expected} bytes of data, the file has {have}", dims_text.join(" × ")),
        ));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}
