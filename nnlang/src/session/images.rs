//! `images("dir", height, width, channels)`: a folder with one subfolder per class (classes
//! numbered in the order of their names), each holding PNG and JPEG files (other files are
//! passed over), decoded by the `image` crate, converted to grey or RGB, resized on load when
//! the data block gives a size (else every image must have the first one's), and kept as
//! bytes, channels last — as IDX images are.

use nnlang_runtime::data::{DataError, Table};
use std::path::{Path, PathBuf};

/// Whether `p` names a PNG or JPEG file, by its extension.
pub fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        let e = e.to_ascii_lowercase();
        e == "png" || e == "jpg" || e == "jpeg"
    })
}

/// The entries of a folder, sorted by name.
fn sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::new(dir, format!("cannot read the folder ({e})")))?;
    let mut out = Vec::new();
    for e in entries {
        out.push(e.map_err(|e| DataError::new(dir, format!("cannot read the folder ({e})")))?.path());
    }
    out.sort();
    Ok(out)
}

/// The class folders of `dir` and the image files of each, in order.
pub fn listing(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let mut classes = Vec::new();
    for sub in sorted(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = sub.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let files: Vec<PathBuf> = sorted(&sub)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
        classes.push((name, files));
    }
    if classes.is_empty() {
        return Err(DataError::new(
            dir,
            "has no class subfolders: an image folder holds one subfolder per class (`cat/`, `dog/`, …) of PNG and JPEG files",
        ));
    }
    if let Some((name, _)) = classes.iter().find(|(_, f)| f.is_empty()) {
        return Err(DataError::new(&dir.join(name), "class folder without PNG or JPEG files"));
    }
    Ok(classes)
}

/// One image file as `height × width × channels` bytes, resized to `size` when given.
pub fn decode(
    path: &Path,
    size: Option<(usize, usize)>,
    channels: usize,
) -> Result<(Vec<u8>, (usize, usize)), DataError> {
    #[cfg(feature = "images")]
    {
        let img = image::ImageReader::open(path)
            .map_err(|e| DataError::new(path, format!("cannot open ({e})")))?
            .with_guessed_format()
            .map_err(|e| DataError::new(path, format!("cannot read ({e})")))?
            .decode()
            .map_err(|e| DataError::new(path, format!("not a readable PNG or JPEG image ({e})")))?;
        let img = match size {
            Some((h, w)) if (img.height() as usize, img.width() as usize) != (h, w) => {
                img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
            }
            _ => img,
        };
        let dims = (img.height() as usize, img.width() as usize);
        let bytes = if channels == 1 { img.into_luma8().into_raw() } else { img.into_rgb8().into_raw() };
        Ok((bytes, dims))
    }
    #[cfg(not(feature = "images"))]
    {
        let _ = (size, channels);
        Err(DataError::new(path, "this build of nnlang reads no images (its `images` feature is off)"))
    }
}

/// Reads the folder `dir` as a table: images as bytes, labels the class numbers; at most
/// `rows` images (the first, in class order).
pub fn read(
    dir: &Path,
    size: Option<(usize, usize)>,
    channels: usize,
    rows: Option<usize>,
) -> Result<Table, DataError> {
    let classes = listing(dir)?;
    let mut bytes = Vec::new();
    let mut labels = Vec::new();
    let mut first: Option<(PathBuf, (usize, usize))> = None;
    'read: for (class, (_, files)) in classes.iter().enumerate() {
        for f in files {
            if rows.is_some_and(|n| labels.len() >= n) {
                break 'read;
            }
            let (b, dims) = decode(f, size, channels)?;
            match &first {
                None => first = Some((f.clone(), dims)),
                Some((p, d)) if *d != dims => {
                    return Err(DataError::new(
                        f,
                        format!(
                            "is {}×{} pixels and {} is {}×{}: give the images one size, or `height` and `width` to resize them on load",
                            dims.0,
                            dims.1,
                            p.display(),
                            d.0,
                            d.1
                        ),
                    ))
                }
                Some(_) => {}
            }
            bytes.extend_from_slice(&b);
            labels.push(class as f32);
        }
    }
    let cols = first.map_or(0, |(_, (h, w))| h * w * channels);
    Ok(Table::from_bytes(bytes, cols, labels, 1))
}
