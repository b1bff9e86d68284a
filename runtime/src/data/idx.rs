//! The IDX format of MNIST and Fashion-MNIST: big-endian, magic `00 00 <type> <ndims>`, then
//! one u32 per dimension, then the data.

use super::{read_maybe_gz, DataError};
use std::path::Path;

/// An IDX array of unsigned bytes (type 0x08).
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read(path: &Path) -> Result<Idx, DataError> {
    parse(path, &read_maybe_gz(path)?)
}

pub fn parse(path: &Path, bytes: &[u8]) -> Result<Idx, DataError> {
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
    if have != expected {
        let dims_text: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        return Err(DataError::new(
            path,
            format!("the header promises {} = {expected} bytes of data, the file has {have}", dims_text.join(" × ")),
        ));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}
