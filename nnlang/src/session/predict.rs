//! Running a model on an array: `nnlangc run`, and the outputs it writes.

use super::*;

impl Session {
    /// Runs `model` with the weights in `weights` on the `.npy` array in `input` and writes
    /// its outputs to `output` as `.npy`.
    pub fn predict_npy(&self, model: &Model, weights: &Path, input: &Path, output: &Path) -> Result<Predicted, Error> {
        // Refused now, not after the work: an output that is a device, a pipe, a link or a
        // directory, or one of this run's inputs (by path or through a link).
        nnlang_runtime::io::check_replaceable(output).map_err(Error::Usage)?;
        let (pre, vocab) = (weights.with_file_name("preprocess.json"), weights.with_file_name("vocab.json"));
        let inputs = [
            ("source", self.path.as_path()),
            ("weights", weights),
            ("input", input),
            ("preprocessing", &pre),
            ("vocabulary", &vocab),
        ];
        nnlang_runtime::io::check_not_input(output, &inputs).map_err(Error::Usage)?;
        let x = if super::images::is_image(input) {
            self.image_input(model, input)?
        } else {
            nnlang_runtime::data::npy::read(input).map_err(|e| Error::Input(e.to_string()))?
        };
        let raw = self.predict_array(model, weights, &x, input)?;
        let written = self.finish_prediction(model, raw);
        nnlang_runtime::data::npy::write(output, &written.predicted.shape, &written.y)
            .map_err(|e| Error::Usage(e.to_string()))?;
        Ok(written.predicted)
    }

    /// A PNG or JPEG file as a batch of one for a model that reads `[height, width,
    /// channels]` images: converted to its channels and resized to its size, the pixels as
    /// an image folder gives them (the weights' preprocessing, such as `scale`, follows).
    fn image_input(&self, model: &Model, input: &Path) -> Result<nnlang_runtime::data::npy::Array, Error> {
        let dims = model.graph.inputs.first().map(|&i| fixed_dims(model, i)).unwrap_or_default();
        let &[h, w, c] = dims.as_slice() else {
            return Err(Error::Input(format!(
                "{}: an image, but model `{}` reads {dims:?}, not [height, width, channels]",
                input.display(),
                model.graph.name
            )));
        };
        if c != 1 && c != 3 {
            return Err(Error::Input(format!(
                "{}: an image, but model `{}` reads {c} channels (an image has 1 or 3)",
                input.display(),
                model.graph.name
            )));
        }
        let (bytes, _) = super::images::decode(input, Some((h, w)), c).map_err(|e| Error::Input(e.to_string()))?;
        Ok(nnlang_runtime::data::npy::Array {
            shape: vec![1, h, w, c],
            data: bytes.into_iter().map(f32::from).collect(),
        })
    }

    /// What a prediction writes: a binned regression's values (the centre of each row's
    /// likeliest bin), a regression's outputs as values, a classifier's probabilities.
    pub fn finish_prediction(&self, model: &Model, raw: RawPrediction) -> Finished {
        let RawPrediction { y, shape, preprocess } = raw;
        let rows = shape.first().copied().unwrap_or(0);
        let per_row = y.len() / rows.max(1);
        let classes = argmax_rows(shape.last().copied().unwrap_or(per_row).max(1), &y);
        let (out, shape, values) = match preprocess.bins {
            Some(b) => {
                let v: Vec<f32> = classes.iter().map(|&c| b.centre(c)).collect();
                (v.clone(), vec![rows, 1], Some(v))
            }
            None => {
                let loss = self.compiled.recipe_or_implied(model).loss;
                let values = (loss == Loss::MeanSquaredError).then(|| y.clone());
                (y, shape, values)
            }
        };
        Finished { y: out, predicted: Predicted { rows, shape, classes, values } }
    }

    /// The outputs of `model` with the weights in `weights` on the raw array `x` (read from
    /// `input`, named in errors): what `train` did to the data (`preprocess.json` beside the
    /// weights) done first; sequences shorter than the plan's padded, per-step outputs cut
    /// back to the array's steps.
    pub fn predict_array(
        &self,
        model: &Model,
        weights: &Path,
        x: &nnlang_runtime::data::npy::Array,
        input: &Path,
    ) -> Result<RawPrediction, Error> {
        const BATCH: usize = 256;
        let plan = self.plan(model, Mode::Inference, BATCH)?;
        let mut exec = load_weights(&plan, weights)?;
        let in_id = model.graph.inputs[0];
        let dims = fixed_dims(model, in_id);
        // A sequence model reads `[batch, steps, features]`: every sequence of the array's
        // steps, padded to the plan's when it accepts shorter ones.
        let sequence = plan.sequence;
        let steps_ok =
            |l: usize| sequence.is_some_and(|s| if s.variable { (1..=s.steps).contains(&l) } else { l == s.steps });
        let fits = x.shape.len() == dims.len() + 1
            && match sequence {
                Some(_) => steps_ok(x.shape[1]) && x.shape[2..] == dims[1..],
                None => x.shape[1..] == dims[..],
            };
        if !fits {
            let shape = |lead: &[&str], rest: &[usize]| {
                let parts: Vec<String> =
                    lead.iter().map(|s| s.to_string()).chain(rest.iter().map(|d| d.to_string())).collect();
                format!("[{}]", parts.join(", "))
            };
            let mut want = match sequence {
                Some(s) if s.variable => {
                    format!("{} with 1 to {} steps", shape(&["batch", "steps"], &dims[1..]), s.steps)
                }
                _ => shape(&["batch"], &dims),
            };
            if let Some(n) = plan.input_ids.first().copied().flatten() {
                want.push_str(&format!(" of token ids below {n}"));
            }
            return Err(Error::Input(format!(
                "{}: array of shape {:?}; the model's input `{}` needs {want}",
                input.display(),
                x.shape,
                model.graph.node(in_id).name,
            )));
        }
        let cols = plan.inputs[0].cols;
        let rows = x.shape[0];
        let given = x.data.len() / rows.max(1);
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "{}: row {}, element {} is NaN or infinite",
                input.display(),
                i / given.max(1),
                i % given.max(1)
            )));
        }
        if let Some(n) = plan.input_ids.first().copied().flatten() {
            // What the embedding kernel accepts as an id: one rule for the data, `run` and the kernel.
            let bad = |v: f32| nnlang_runtime::kernels::embedding::id(v, n).is_none();
            if let Some(i) = x.data.iter().position(|&v| bad(v)) {
                return Err(Error::Input(format!(
                    "{}: row {}, element {}: {} is not a token id below {n}, as the model's input `{}` holds",
                    input.display(),
                    i / given.max(1),
                    i % given.max(1),
                    x.data[i],
                    model.graph.node(in_id).name,
                )));
            }
        }
        let length = sequence.map(|_| x.shape[1]);
        // What `train` did to the data, done to the raw array (saved beside the weights).
        let pre_path = weights.with_file_name("preprocess.json");
        self.require_preprocessing(model, weights, &pre_path)?;
        let pre = if pre_path.exists() {
            data::Preprocess::read(&pre_path).map_err(|e| Error::Input(e.to_string()))?
        } else {
            data::Preprocess::default()
        };
        if let Some((m, _)) = &pre.standardize {
            let per = given / length.unwrap_or(1).max(1);
            if m.is_empty() || (m.len() != given && m.len() != per) {
                return Err(Error::Input(format!(
                    "{}: statistics of {} features, but the model reads {given} values per example",
                    pre_path.display(),
                    m.len()
                )));
            }
        }
        let mut raw = x.data.clone();
        pre.apply(&mut raw);
        let padded: Vec<f32> = if given == cols {
            raw
        } else {
            let mut p = vec![0f32; rows * cols];
            for (dst, src) in p.chunks_exact_mut(cols).zip(raw.chunks_exact(given.max(1))) {
                dst[..given].copy_from_slice(src);
            }
            p
        };
        if let Some(l) = length {
            exec.set_lengths(&vec![l; plan.max_batch]);
        }
        let y = infer(&plan, &mut exec, &padded, cols, rows).map_err(|e| Error::Input(e.to_string()))?;
        let out_id = model.graph.output.unwrap_or(in_id);
        let mut shape = vec![rows];
        shape.extend(fixed_dims(model, out_id));
        // An output at every step: the array's steps, not the padding.
        let y = match (sequence, length) {
            (Some(s), Some(l)) if s.per_step_output && l < s.steps => {
                let per = plan.output.cols / s.steps;
                shape[1] = l;
                y.chunks_exact(plan.output.cols).flat_map(|r| r[..l * per].iter().copied()).collect()
            }
            (Some(s), Some(_)) if s.per_step_output => {
                shape[1] = s.steps;
                y
            }
            _ => y,
        };
        Ok(RawPrediction { y, shape, preprocess: pre })
    }
}

/// A model's outputs on an array, before [`Session::finish_prediction`].
pub struct RawPrediction {
    /// The outputs, row-major.
    pub y: Vec<f32>,
    /// Their shape, batch first.
    pub shape: Vec<usize>,
    /// What was done to the inputs (and says what to do to a binned regression's outputs).
    pub preprocess: data::Preprocess,
}

/// What a prediction writes, and what to report about it.
pub struct Finished {
    /// The array written.
    pub y: Vec<f32>,
    /// The report (with the array's shape).
    pub predicted: Predicted,
}

/// The model's parameter tensors laid end to end in declaration order, without a plan: names
/// and shapes as checkpoints hold them, and each tensor's role ([`crate::shape::param_table`],
/// the table every plan of the model holds too).
pub fn param_table(model: &Model) -> Vec<nnlang_runtime::plan::Param> {
    crate::shape::param_table(&model.shapes).0
}

/// The weights in the safetensors file `path`, by parameter name, checked against the
/// model's parameters (every one present with its shape, finite, no other tensor).
pub fn read_params(model: &Model, path: &Path) -> Result<std::collections::HashMap<String, Vec<f32>>, Error> {
    let table = param_table(model);
    let mut flat = vec![0f32; table.iter().map(|p| p.buf.len).sum()];
    nnlang_runtime::io::load(path, &table, &mut flat).map_err(|e| Error::Input(e.to_string()))?;
    Ok(table.into_iter().map(|p| (p.name, flat[p.buf.range()].to_vec())).collect())
}

/// What [`Session::predict_npy`] wrote.
pub struct Predicted {
    /// Rows predicted.
    pub rows: usize,
    /// The output array's shape, batch first.
    pub shape: Vec<usize>,
    /// The index of each row's largest output.
    pub classes: Vec<usize>,
    /// For a regression (a binned one included), the values written.
    pub values: Option<Vec<f32>>,
}

/// The dimensions of a node's shape; a sequence's steps count at their longest (0 when
/// unbounded).
pub(super) fn fixed_dims(model: &Model, id: crate::ir::NodeId) -> Vec<usize> {
    model.shapes.shapes[id.index()]
        .as_ref()
        .map(|s| {
            s.0.iter()
                .map(|d| match d {
                    Dim::Fixed(n) | Dim::Steps { len: n, .. } | Dim::Seq { max: Some(n), .. } => *n,
                    Dim::Seq { max: None, .. } => 0,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An executor of `plan` with the weights read from `path` (checked against the plan's
/// parameter table).
pub fn load_weights(plan: &Plan, path: &Path) -> Result<Exec<f32>, Error> {
    let mut exec = Exec::<f32>::new(plan, 0);
    nnlang_runtime::io::load(path, &plan.params, &mut exec.params).map_err(|e| Error::Input(e.to_string()))?;
    Ok(exec)
}

/// The outputs of an inference plan for `rows` rows of `cols` inputs, in batches.
pub fn infer(
    plan: &Plan,
    exec: &mut Exec<f32>,
    x: &[f32],
    cols: usize,
    rows: usize,
) -> Result<Vec<f32>, nnlang_runtime::interp::ExecError> {
    let batch = plan.max_batch;
    let mut y = Vec::with_capacity(rows * plan.output.cols);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        exec.run_on(plan, n, &[&x[start * cols..(start + n) * cols]], &[], None)?;
        y.extend_from_slice(exec.output(plan, n));
    }
    Ok(y)
}
