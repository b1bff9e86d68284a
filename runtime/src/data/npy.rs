//! NumPy `.npy` arrays through the npyz crate: read as f32 whatever the stored number type,
//! written as little-endian f32.

use super::{DataError, MAX_INPUT_BYTES};
use npyz::WriterBuilder;
use std::path::Path;

/// An array: its shape and its elements in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The array's dimensions.
    pub shape: Vec<usize>,
    /// Its values as f32, row-major.
    pub data: Vec<f32>,
}

/// Reads a `.npy` file of any float or integer type as f32.
pub fn read(path: &Path) -> Result<Array, DataError> {
    read_rows(path, None)
}

/// Reads the array, or only its first `rows` rows; the header decides how much is read.
pub fn read_rows(path: &Path, rows: Option<usize>) -> Result<Array, DataError> {
    use std::io::Read;
    let r = super::open(path)?.take(MAX_INPUT_BYTES);
    let npy = npyz::NpyFile::new(r).map_err(|e| DataError::new(path, format!("not a .npy file: {e}")))?;
    let mut shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() == npyz::Order::Fortran {
        return Err(DataError::new(
            path,
            "Fortran-ordered arrays are not supported; save it with numpy.ascontiguousarray",
        ));
    }
    let dtype = npy.dtype();
    let ty = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        _ => return Err(DataError::new(path, "structured arrays are not supported; save a plain numeric array")),
    };
    let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let size = ty.trim_start_matches(['<', '>', '|', '=']).get(1..).and_then(|n| n.parse::<u64>().ok()).unwrap_or(8);
    if elements.and_then(|e| e.checked_mul(size)).is_none_or(|b| b > MAX_INPUT_BYTES) {
        return Err(DataError::new(
            path,
            format!("the header promises a {shape:?} array, more than the 16 GiB nnlang reads from one file"),
        ));
    }
    let per_row: usize = shape.iter().skip(1).product();
    let wanted = match (rows, shape.first()) {
        (Some(n), Some(&r0)) => {
            shape[0] = r0.min(n);
            shape[0] * per_row
        }
        _ => shape.iter().product(),
    };
    let bad = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DataError::new(path, format!("the file ends before the {wanted} elements of its {shape:?} array"))
        }
        _ => DataError::new(path, format!("cannot read the data: {e}")),
    };
    fn take<T: npyz::Deserialize, R: std::io::Read>(
        npy: npyz::NpyFile<R>,
        n: usize,
        f: impl Fn(T) -> f32,
    ) -> std::io::Result<Vec<f32>> {
        npy.data::<T>().map_err(std::io::Error::other)?.take(n).map(|v| v.map(&f)).collect()
    }
    let data: Vec<f32> = match ty.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => take::<f32, _>(npy, wanted, |v| v).map_err(bad)?,
        "f8" => take::<f64, _>(npy, wanted, |v| v as f32).map_err(bad)?,
        "u1" => take::<u8, _>(npy, wanted, f32::from).map_err(bad)?,
        "i4" => take::<i32, _>(npy, wanted, |v| v as f32).map_err(bad)?,
        "i8" => take::<i64, _>(npy, wanted, |v| v as f32).map_err(bad)?,
        other => {
            return Err(DataError::new(
                path,
                format!("element type `{other}` is not supported (f4, f8, u1, i4, i8 are)"),
            ))
        }
    };
    if data.len() != wanted {
        return Err(DataError::new(
            path,
            format!("the file ends before the {wanted} elements of its {shape:?} array (it has {})", data.len()),
        ));
    }
    Ok(Array { shape, data })
}

/// The inputs of an uncompressed `.npy` array left in their file when they take more than
/// `limit` bytes (the first `rows` rows when given); `None` when the array is smaller, gzipped,
/// or of a type read into memory instead (big-endian).
pub fn on_disk(path: &Path, rows: Option<usize>, limit: u64) -> Result<Option<super::disk::OnDisk>, DataError> {
    use std::io::Read;
    let mut head = [0u8; 12];
    if super::provided(path).is_some() {
        return Ok(None); // held in memory already
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    if !meta.is_file() || meta.len() <= limit {
        return Ok(None);
    }
    let mut f = std::fs::File::open(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    if f.read_exact(&mut head).is_err() || &head[..6] != b"\x93NUMPY" {
        return Ok(None); // gzipped, or not .npy: the reader says what is wrong
    }
    // The data starts after the magic, the version, the header's length and the header.
    let offset = match head[6] {
        1 => 10 + u64::from(u16::from_le_bytes([head[8], head[9]])),
        2 | 3 => 12 + u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])),
        _ => return Ok(None),
    };
    // The header through npyz, from the same open file (which then serves the rows).
    use std::io::Seek;
    f.rewind().map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    let (fortran, shape, element) = {
        let npy = npyz::NpyFile::new(std::io::BufReader::new(&mut f))
            .map_err(|e| DataError::new(path, format!("not a .npy file: {e}")))?;
        let element = match npy.dtype() {
            npyz::DType::Plain(t) => super::disk::Element::of(&t.to_string()),
            _ => None,
        };
        (npy.order() == npyz::Order::Fortran, npy.shape().iter().map(|&d| d as usize).collect::<Vec<usize>>(), element)
    };
    if fortran {
        return Ok(None);
    }
    let (Some(element), Some(&total)) = (element, shape.first()) else { return Ok(None) };
    let cols: usize = shape.iter().skip(1).product();
    let kept = rows.map_or(total, |r| r.min(total)) as u64;
    if kept.saturating_mul(cols as u64).saturating_mul(element.size() as u64) <= limit {
        return Ok(None);
    }
    super::disk::OnDisk::from_file(f, path, offset, element, cols, total, rows).map(Some)
}

/// `data` with `shape` as the bytes of an f32 `.npy` file.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(128 + 4 * data.len());
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(std::io::Cursor::new(&mut bytes))
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    Ok(bytes)
}

/// Writes `data` with `shape` as f32, to a temporary file renamed into place, so that a
/// failure leaves nothing half-written.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DataError> {
    let bytes = to_bytes(shape, data).map_err(|e| DataError::new(path, format!("cannot write: {e}")))?;
    crate::io::write_atomic(path, &bytes).map_err(|m| {
        let prefix = format!("{}: ", path.display());
        DataError::new(path, m.strip_prefix(&prefix).unwrap_or(&m))
    })
}
