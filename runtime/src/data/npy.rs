//! NumPy `.npy` arrays through the npyz crate: read as f32 whatever the stored number type,
//! written as little-endian f32.

use super::DataError;
use npyz::WriterBuilder;
use std::path::Path;

/// An array: its shape and its elements in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read(path: &Path) -> Result<Array, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| DataError::new(path, format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() == npyz::Order::Fortran {
        return Err(DataError::new(
            path,
            "Fortran-ordered arrays are not supported; save it with numpy.ascontiguousarray",
        ));
    }
    let dtype = npy.dtype();
    let ty = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(DataError::new(path, format!("structured array {other:?} is not supported"))),
    };
    let bad = |e: std::io::Error| DataError::new(path, format!("cannot read the data: {e}"));
    let data: Vec<f32> = match ty.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => npy.into_vec::<f32>().map_err(bad)?,
        "f8" => npy.into_vec::<f64>().map_err(bad)?.into_iter().map(|v| v as f32).collect(),
        "u1" => npy.into_vec::<u8>().map_err(bad)?.into_iter().map(f32::from).collect(),
        "i4" => npy.into_vec::<i32>().map_err(bad)?.into_iter().map(|v| v as f32).collect(),
        "i8" => npy.into_vec::<i64>().map_err(bad)?.into_iter().map(|v| v as f32).collect(),
        other => {
            return Err(DataError::new(
                path,
                format!("element type `{other}` is not supported (f4, f8, u1, i4, i8 are)"),
            ))
        }
    };
    let expected: usize = shape.iter().product();
    if data.len() != expected {
        return Err(DataError::new(
            path,
            format!("the header promises {expected} elements, the file has {}", data.len()),
        ));
    }
    Ok(Array { shape, data })
}

/// Writes `data` with `shape` as f32, to a temporary file renamed into place, so that a
/// failure leaves nothing half-written.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DataError> {
    let err = |e: std::io::Error| DataError::new(path, format!("cannot write: {e}"));
    let mut bytes = Vec::with_capacity(128 + 4 * data.len());
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(std::io::Cursor::new(&mut bytes))
            .begin_nd()
            .map_err(err)?;
        w.extend(data.iter().copied()).map_err(err)?;
        w.finish().map_err(err)?;
    }
    crate::io::write_atomic(path, &bytes).map_err(|m| {
        let prefix = format!("{}: ", path.display());
        DataError::new(path, m.strip_prefix(&prefix).unwrap_or(&m))
    })
}
