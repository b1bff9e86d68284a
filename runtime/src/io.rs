//! Checkpoints as safetensors, with PyTorch's names and layouts (`<layer>.weight`,
//! `<layer>.bias`; dense `[out, in]`), so a model trained here loads in the Python ecosystem
//! and back. Saving writes a temporary file and renames it ([`write_atomic`]); loading checks every tensor's
//! name, type and shape against the plan before touching the parameters.

use crate::plan::Param;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// A checkpoint that cannot be read or written, with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointError(pub String);

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckpointError {}

/// The checkpoint's bytes: every parameter of `plan`, f32 little-endian (a batch norm's
/// count of batches an int64, as PyTorch's `num_batches_tracked`). The header carries
/// `format = pt` and nothing else, so that the same weights always give the same bytes
/// (safetensors keeps metadata in a hash map, whose order varies from run to run).
pub fn to_bytes(table: &[Param], params: &[f32]) -> Result<Vec<u8>, CheckpointError> {
    let count = |p: &Param| p.role == crate::plan::Role::Count;
    let bytes: Vec<Vec<u8>> = table
        .iter()
        .map(|p| match count(p) {
            true => params[p.buf.range()].iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
            false => params[p.buf.range()].iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let mut views = Vec::new();
    for (p, b) in table.iter().zip(&bytes) {
        let dtype = if count(p) { Dtype::I64 } else { Dtype::F32 };
        let view =
            TensorView::new(dtype, p.shape.clone(), b).map_err(|e| CheckpointError(format!("{}: {e}", p.name)))?;
        views.push((p.name.clone(), view));
    }
    let meta: HashMap<String, String> = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| CheckpointError(e.to_string()))
}

/// Writes the checkpoint to `path` atomically (`table` is the plan's `params`).
pub fn save(path: &Path, table: &[Param], params: &[f32]) -> Result<(), CheckpointError> {
    let bytes = to_bytes(table, params)?;
    write_atomic(path, &bytes).map_err(CheckpointError)
}

/// What a path is, when it is not a regular file: "a directory", "a symbolic link", …
fn not_regular(path: &Path) -> Option<&'static str> {
    let t = std::fs::symlink_metadata(path).ok()?.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        special(&t)
    })
}

#[cfg(unix)]
fn special(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

/// Refuses a path that exists and is not a regular file: writing replaces files, and must
/// never replace (or write into) a device, a pipe, a link or a directory.
pub fn check_replaceable(path: &Path) -> Result<(), String> {
    match not_regular(path) {
        Some(what) => Err(format!("{}: refusing to replace it: it is {what}, not a regular file", path.display())),
        None => Ok(()),
    }
}

/// Refuses to write `output` when it is one of the command's `inputs` (each with what it
/// is, for the message): the same path, or the same file under another name (a link).
pub fn check_not_input(output: &Path, inputs: &[(&str, &Path)]) -> Result<(), String> {
    let Ok(out) = std::fs::metadata(output) else { return Ok(()) };
    let out_canon = std::fs::canonicalize(output).ok();
    for (what, input) in inputs {
        let Ok(m) = std::fs::metadata(input) else { continue };
        let same = same_file(&out, &m) || (out_canon.is_some() && std::fs::canonicalize(input).ok() == out_canon);
        if same {
            return Err(format!(
                "{}: refusing to write the output over this command's {what} ({}); choose another output",
                output.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// The temporary files of atomic writes in flight, removed by [`remove_temporaries`] when a
/// signal ends the process.
static TEMPORARIES: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

fn temporaries() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temporary files of the atomic writes in flight (the process is ending).
pub fn remove_temporaries() {
    for t in temporaries().drain(..) {
        let _ = std::fs::remove_file(t);
    }
}

/// Writes `bytes` to `path` so that `path` holds either its old content or all of the new:
/// a temporary file beside it, written and synced, renamed over it, then the directory
/// synced. Refuses to replace anything but a regular file; never leaves the temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    check_replaceable(path)?;
    let fail = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    temporaries().push(tmp.clone());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    temporaries().retain(|t| t != &tmp);
    if let Err(e) = written {
        return Err(fail(e));
    }
    // The rename is durable once the directory is; a failure here loses nothing written.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A tensor's values as f32, checked against the shape the model expects.
fn f32_values(
    name: &str,
    t: &safetensors::tensor::TensorView<'_>,
    shape: &[usize],
) -> Result<Vec<f32>, CheckpointError> {
    if t.dtype() != Dtype::F32 {
        return Err(CheckpointError(format!("tensor `{name}` is {:?}, expected F32", t.dtype())));
    }
    if t.shape() != shape {
        return Err(CheckpointError(format!("tensor `{name}` has shape {:?}, the model expects {shape:?}", t.shape())));
    }
    Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The values of a tensor read from several, and the names read.
type Stacked = (Vec<f32>, Vec<String>);

/// An attention's packed projection (`X.in_proj_weight [3d, d]`, `X.in_proj_bias [3d]`, as
/// PyTorch's `nn.MultiheadAttention` keeps them) read from separate query, key and value
/// projections (`X.q_proj.weight`, `X.k_proj.weight`, `X.v_proj.weight [d, d]` and their
/// `.bias [d]`, as Hugging Face's models and `nn.Linear`s name them) when the packed one is
/// absent: the values, and the names read.
fn split_projection(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Option<Stacked>, CheckpointError> {
    if st.tensor(name).is_ok() {
        return Ok(None);
    }
    let (prefix, suffix) = if let Some(p) = name.strip_suffix(".in_proj_weight") {
        (p, "weight")
    } else if let Some(p) = name.strip_suffix(".in_proj_bias") {
        (p, "bias")
    } else {
        return Ok(None);
    };
    let parts: Vec<String> = ["q", "k", "v"].iter().map(|w| format!("{prefix}.{w}_proj.{suffix}")).collect();
    let present: Vec<&String> = parts.iter().filter(|n| st.tensor(n).is_ok()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    if present.len() < 3 {
        let missing: Vec<&str> = parts.iter().filter(|n| st.tensor(n).is_err()).map(|s| s.as_str()).collect();
        return Err(CheckpointError(format!(
            "tensor `{name}` is missing, and of its separate projections {} is missing too",
            missing.join(" and ")
        )));
    }
    let mut part_shape = shape.to_vec();
    if let Some(rows) = part_shape.first_mut() {
        if *rows % 3 != 0 {
            return Ok(None);
        }
        *rows /= 3;
    }
    let mut values = Vec::new();
    for n in &parts {
        let t = st.tensor(n).map_err(|e| CheckpointError(format!("tensor `{n}`: {e}")))?;
        values.extend(f32_values(n, &t, &part_shape)?);
    }
    Ok(Some((values, parts)))
}

/// Reads a checkpoint into `params`, which is left untouched unless every tensor of the plan
/// is present with its exact shape and no other tensor is.
pub fn load(path: &Path, table: &[Param], params: &mut [f32]) -> Result<(), CheckpointError> {
    let bytes = crate::data::read_maybe_gz(path).map_err(|e| CheckpointError(e.to_string()))?;
    from_bytes(&bytes, table, params).map_err(|e| CheckpointError(format!("{}: {}", path.display(), e.0)))
}

/// Reads a checkpoint's bytes into `params`, as [`load`] does.
pub fn from_bytes(bytes: &[u8], table: &[Param], params: &mut [f32]) -> Result<(), CheckpointError> {
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| CheckpointError(format!("not a valid safetensors file ({e})")))?;
    let mut staged = params.to_vec();
    // Tensors read under other names (an attention's separate q, k and v projections).
    let mut consumed: Vec<String> = Vec::new();
    for p in table {
        if p.role == crate::plan::Role::Count {
            // A batch norm's count of batches (`num_batches_tracked`): PyTorch writes it as an
            // integer; a checkpoint from before nnlang kept it has none (the count starts at 0).
            match st.tensor(&p.name) {
                Err(_) => staged[p.buf.range()].iter_mut().for_each(|v| *v = 0.0),
                Ok(t) => {
                    if t.shape().iter().product::<usize>() != 1 {
                        return Err(CheckpointError(format!(
                            "tensor `{}` has shape {:?}, the model expects a single count ([])",
                            p.name,
                            t.shape()
                        )));
                    }
                    let d = t.data();
                    let n = match t.dtype() {
                        Dtype::I64 if d.len() == 8 => i64::from_le_bytes(d.try_into().unwrap_or([0; 8])) as f64,
                        Dtype::F32 if d.len() == 4 => f64::from(f32::from_le_bytes(d.try_into().unwrap_or([0; 4]))),
                        other => {
                            return Err(CheckpointError(format!(
                                "tensor `{}` is {other:?}, expected an integer count (I64) or F32",
                                p.name
                            )))
                        }
                    };
                    if !(0.0..=f64::from(u32::MAX)).contains(&n) || n.fract() != 0.0 {
                        return Err(CheckpointError(format!("tensor `{}` holds {n}, not a count of batches", p.name)));
                    }
                    staged[p.buf.range()].iter_mut().for_each(|v| *v = n as f32);
                }
            }
            continue;
        }
        let values = match split_projection(&st, &p.name, &p.shape)? {
            Some((values, parts)) => {
                consumed.extend(parts);
                values
            }
            None => {
                let t = st.tensor(&p.name).map_err(|_| {
                    let names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
                    CheckpointError(format!("tensor `{}` is missing (the file has: {})", p.name, names.join(", ")))
                })?;
                f32_values(&p.name, &t, &p.shape)?
            }
        };
        staged[p.buf.range()].copy_from_slice(&values);
        if let Some(i) = staged[p.buf.range()].iter().position(|v| !v.is_finite()) {
            return Err(CheckpointError(format!("tensor `{}` holds a non-finite value at element {i}", p.name)));
        }
        // A normalization's running variance (PyTorch's name) is never negative.
        if p.name.ends_with(".running_var") {
            if let Some(i) = staged[p.buf.range()].iter().position(|v| *v < 0.0) {
                return Err(CheckpointError(format!(
                    "tensor `{}` holds a negative variance ({}) at element {i}",
                    p.name,
                    staged[p.buf.offset + i]
                )));
            }
        }
    }
    let expected: Vec<&str> = table.iter().map(|p| p.name.as_str()).collect();
    let mut extra: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !expected.contains(n) && !consumed.iter().any(|c| c == *n))
        .map(|s| s.to_string())
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(CheckpointError(format!("tensors the model does not have: {}", extra.join(", "))));
    }
    params.copy_from_slice(&staged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PBuf, Role};

    /// An attention's projections: `in_proj_weight [3d, d]` and `in_proj_bias [3d]` at d = 2.
    fn table() -> Vec<Param> {
        vec![
            Param {
                name: "a.in_proj_weight".into(),
                shape: vec![6, 2],
                buf: PBuf { offset: 0, len: 12 },
                role: Role::Bias,
            },
            Param { name: "a.in_proj_bias".into(), shape: vec![6], buf: PBuf { offset: 12, len: 6 }, role: Role::Bias },
        ]
    }

    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let bytes: Vec<Vec<u8>> =
            tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| (n.to_string(), TensorView::new(Dtype::F32, s.clone(), b).expect("a view")))
            .collect();
        safetensors::serialize(views, None).expect("serialized")
    }

    #[test]
    fn separate_query_key_and_value_projections_load_as_the_packed_one() {
        let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..6).map(|i| 100.0 + i as f32).collect();
        let split = file(&[
            ("a.q_proj.weight", vec![2, 2], w[0..4].to_vec()),
            ("a.k_proj.weight", vec![2, 2], w[4..8].to_vec()),
            ("a.v_proj.weight", vec![2, 2], w[8..12].to_vec()),
            ("a.q_proj.bias", vec![2], b[0..2].to_vec()),
            ("a.k_proj.bias", vec![2], b[2..4].to_vec()),
            ("a.v_proj.bias", vec![2], b[4..6].to_vec()),
        ]);
        let mut params = vec![0.0; 18];
        from_bytes(&split, &table(), &mut params).expect("loads");
        assert_eq!(&params[..12], w.as_slice());
        assert_eq!(&params[12..], b.as_slice());
        // The same values written packed load the same.
        let packed = to_bytes(&table(), &params).expect("bytes");
        let mut again = vec![0.0; 18];
        from_bytes(&packed, &table(), &mut again).expect("loads");
        assert_eq!(params, again);
    }

    #[test]
    fn a_missing_or_misshapen_projection_is_named() {
        let part = file(&[
            ("a.q_proj.weight", vec![2, 2], vec![0.0; 4]),
            ("a.v_proj.weight", vec![2, 2], vec![0.0; 4]),
            ("a.in_proj_bias", vec![6], vec![0.0; 6]),
        ]);
        let mut params = vec![7.0; 18];
        let e = from_bytes(&part, &table(), &mut params).expect_err("refused");
        assert_eq!(
            e.0,
            "tensor `a.in_proj_weight` is missing, and of its separate projections a.k_proj.weight is missing too"
        );
        assert!(params.iter().all(|&v| v == 7.0), "nothing half-loaded");
        let wrong = file(&[
            ("a.q_proj.weight", vec![2, 2], vec![0.0; 4]),
            ("a.k_proj.weight", vec![2, 3], vec![0.0; 6]),
            ("a.v_proj.weight", vec![2, 2], vec![0.0; 4]),
            ("a.in_proj_bias", vec![6], vec![0.0; 6]),
        ]);
        let e = from_bytes(&wrong, &table(), &mut params).expect_err("refused");
        assert_eq!(e.0, "tensor `a.k_proj.weight` has shape [2, 3], the model expects [2, 2]");
    }
}
