//! What `train` does to the data before the model sees it, saved with the weights
//! (`preprocess.json`) and done again wherever the model meets raw data: `nnlangc run`, the
//! exports, and generated models' `fit` and `predict`.

use super::{read_maybe_gz, DataError};
use std::path::Path;

/// What a recipe says to do to the data (its `data` block's `scale` and `standardize`, its
/// loss's `bins`); the statistics are learned from the training set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PreprocessRecipe {
    /// `scale = s`.
    pub scale: Option<f32>,
    /// `standardize = true`: statistics of this many values (an example's, or a step's for
    /// sequences of different lengths).
    pub standardize: Option<usize>,
    /// `cross_entropy(bins = n)`.
    pub bins: Option<usize>,
}

/// The mean and standard deviation of each of `width` columns over `rows` (f64 sums; a
/// deviation of zero becomes 1, so a constant feature stays finite).
pub fn moments<'a>(rows: impl Iterator<Item = &'a [f32]>, width: usize) -> (Vec<f32>, Vec<f32>) {
    scaled_moments(rows, width, 1.0)
}

/// [`moments`] of the values times `scale` (each product rounded to f32, as scaling the data
/// first would), without a scaled copy of the data.
pub fn scaled_moments<'a>(rows: impl Iterator<Item = &'a [f32]>, width: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let mut m = Moments::new(width, scale);
    rows.for_each(|r| m.add(r));
    m.finish()
}

/// [`scaled_moments`] a row at a time: for rows that are never all in memory at once.
#[derive(Clone, Debug)]
pub struct Moments {
    n: f64,
    mean: Vec<f64>,
    sq: Vec<f64>,
    scale: f32,
}

impl Moments {
    /// No rows yet, of `width` columns, each value to be multiplied by `scale`.
    pub fn new(width: usize, scale: f32) -> Moments {
        Moments { n: 0.0, mean: vec![0.0; width], sq: vec![0.0; width], scale }
    }

    /// One more row.
    pub fn add(&mut self, row: &[f32]) {
        self.n += 1.0;
        for ((m, s), &v) in self.mean.iter_mut().zip(&mut self.sq).zip(row) {
            let v = v * self.scale;
            *m += v as f64;
            *s += (v as f64) * (v as f64);
        }
    }

    /// The mean and standard deviation of each column.
    pub fn finish(self) -> (Vec<f32>, Vec<f32>) {
        let rows = self.n.max(1.0);
        let mean: Vec<f64> = self.mean.iter().map(|m| m / rows).collect();
        let std: Vec<f32> = self
            .sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| (s / rows - m * m).max(0.0).sqrt())
            .map(|s| if s > 1e-12 { s as f32 } else { 1.0 })
            .collect();
        (mean.iter().map(|&m| m as f32).collect(), std)
    }
}

/// What `train` did to the data before the model saw it, saved with the weights
/// (`preprocess.json`) and done again by `run` on raw data: inputs multiplied by `scale`,
/// then standardized per feature; a regression target cut into bins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preprocess {
    /// `scale = s`: every input value times `s`.
    pub scale: Option<f32>,
    /// Per-feature mean and standard deviation (per feature of a step, for sequences).
    pub standardize: Option<(Vec<f32>, Vec<f32>)>,
    /// A binned regression's bins.
    pub bins: Option<Bins>,
}

/// `cross_entropy(bins = n)`: bin `i` holds the targets in `lo + i·width .. lo + (i+1)·width`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bins {
    /// The lowest training target.
    pub lo: f32,
    /// Each bin's width.
    pub width: f32,
    /// The number of bins.
    pub n: usize,
}

impl Bins {
    /// `n` bins of one width over the range of `y` (none if a target is not finite).
    pub fn over(y: &[f32], n: usize) -> Option<Bins> {
        let lo = y.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = y.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if !(lo.is_finite() && hi.is_finite()) || n == 0 {
            return None;
        }
        let width = ((hi - lo) / n as f32).max(f32::MIN_POSITIVE);
        Some(Bins { lo, width, n })
    }

    /// The bin of a target (the lowest or highest bin beyond the training range).
    pub fn index(&self, v: f32) -> usize {
        (((v - self.lo) / self.width).floor().max(0.0) as usize).min(self.n - 1)
    }

    /// The value a predicted bin stands for: its centre.
    pub fn centre(&self, i: usize) -> f32 {
        self.lo + (i as f32 + 0.5) * self.width
    }
}

impl Preprocess {
    /// What `recipe` does to the training inputs `x` and targets `y` (`y_cols` values per
    /// row): the scale, then the scaled inputs' statistics, and the targets' bins. An error
    /// says what about the targets keeps them from being binned.
    pub fn learn(recipe: &PreprocessRecipe, x: &[f32], y: &[f32], y_cols: usize) -> Result<Preprocess, String> {
        let bins = match recipe.bins {
            Some(n) if y_cols != 1 => {
                return Err(format!("binning {n} ways needs one target per example, found {y_cols}"))
            }
            Some(n) => Some(Bins::over(y, n).ok_or("the targets are not finite numbers")?),
            None => None,
        };
        let standardize = recipe.standardize.map(|width| {
            let width = width.max(1);
            scaled_moments(x.chunks_exact(width), width, recipe.scale.unwrap_or(1.0))
        });
        Ok(Preprocess { scale: recipe.scale, standardize, bins })
    }

    /// Binned targets: each value replaced by its bin (nothing without bins).
    pub fn bin_targets(&self, y: &mut [f32]) {
        if let Some(b) = self.bins {
            y.iter_mut().for_each(|v| *v = b.index(*v) as f32);
        }
    }

    /// Whether nothing is done to the data.
    pub fn is_empty(&self) -> bool {
        self.scale.is_none() && self.standardize.is_none() && self.bins.is_none()
    }

    /// `preprocess.json`.
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "format": "nnlang-preprocess",
            "version": 1,
            "scale": self.scale,
            "mean": self.standardize.as_ref().map(|(m, _)| m.clone()),
            "std": self.standardize.as_ref().map(|(_, s)| s.clone()),
            "bins": self.bins.map(|b| serde_json::json!({"lo": b.lo, "width": b.width, "n": b.n})),
        });
        format!("{v:#}\n")
    }

    /// Reads `preprocess.json`.
    pub fn read(path: &Path) -> Result<Preprocess, DataError> {
        let bytes = read_maybe_gz(path)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| DataError::new(path, format!("not a preprocessing file ({e})")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some("nnlang-preprocess") {
            return Err(DataError::new(path, "not a preprocessing file (no `\"format\": \"nnlang-preprocess\"`)"));
        }
        let bad = |m: String| DataError::new(path, m);
        let Some(o) = v.as_object() else { return Err(bad("not a preprocessing file (not a JSON object)".into())) };
        if let Some(k) = o.keys().find(|k| !["format", "version", "scale", "mean", "std", "bins"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown entry `{k}` (a preprocessing file has `scale`, `mean`, `std` and `bins`)"
            )));
        }
        // A finite f32, or why not.
        let number = |what: &str, x: &serde_json::Value| -> Result<f32, DataError> {
            match x.as_f64() {
                Some(f) if f.is_finite() && (f as f32).is_finite() => Ok(f as f32),
                _ => Err(bad(format!("`{what}` must be a finite number, found {x}"))),
            }
        };
        let floats = |k: &str| -> Result<Option<Vec<f32>>, DataError> {
            match o.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Array(a)) => a.iter().map(|x| number(k, x)).collect::<Result<_, _>>().map(Some),
                Some(x) => Err(bad(format!("`{k}` must be a list of numbers, found {x}"))),
            }
        };
        let standardize = match (floats("mean")?, floats("std")?) {
            (Some(m), Some(s)) if m.len() == s.len() && !m.is_empty() && s.iter().all(|x| *x > 0.0) => Some((m, s)),
            (None, None) => None,
            _ => return Err(bad("`mean` and `std` must be lists of one length, `std` positive".into())),
        };
        let bins = match o.get("bins") {
            None | Some(serde_json::Value::Null) => None,
            Some(b) => {
                let get = |k: &str| b.get(k).ok_or_else(|| bad(format!("`bins` without `{k}`")));
                let (lo, width) = (number("bins.lo", get("lo")?)?, number("bins.width", get("width")?)?);
                let n = get("n")?.as_u64().filter(|n| (2..=1 << 16).contains(n));
                let Some(n) = n else { return Err(bad("`bins.n` must be an integer from 2 to 65536".into())) };
                if width <= 0.0 {
                    return Err(bad(format!("`bins.width` must be positive, found {width}")));
                }
                Some(Bins { lo, width, n: n as usize })
            }
        };
        let scale = match o.get("scale") {
            None | Some(serde_json::Value::Null) => None,
            Some(x) => {
                let s = number("scale", x)?;
                if !(1e-12..=1e12).contains(&s) {
                    return Err(bad(format!("`scale` must be a positive number from 1e-12 to 1e12, found {x}")));
                }
                Some(s)
            }
        };
        Ok(Preprocess { scale, standardize, bins })
    }

    /// Does to raw inputs (`rows × cols`, `cols` a multiple of the features) what `train` did.
    pub fn apply(&self, x: &mut [f32]) {
        if let Some(s) = self.scale {
            x.iter_mut().for_each(|v| *v *= s);
        }
        if let Some((m, sd)) = &self.standardize {
            for row in x.chunks_exact_mut(m.len().max(1)) {
                for ((v, m), s) in row.iter_mut().zip(m).zip(sd) {
                    *v = (*v - m) / s;
                }
            }
        }
    }
}
