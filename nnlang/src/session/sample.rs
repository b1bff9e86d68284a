//! Text from a character model (`nnlangc sample`): the priming text is read through the
//! model, then one character at a time is drawn from its prediction, sharpened or flattened
//! by the temperature, and fed back. The recurrent state is carried from each step to the
//! next, as in training.

use super::{load_weights, Error, Session};
use crate::ops::Op;
use crate::plan::Mode;
use crate::Model;
use nnlang_runtime::data::text::Vocabulary;
use rand::{RngExt, SeedableRng};
use std::path::Path;

/// What to generate.
pub struct SampleSpec<'a> {
    /// The trained weights.
    pub weights: &'a Path,
    /// The vocabulary saved beside the weights (`vocab.json`).
    pub vocab: &'a Path,
    /// The text the sample continues (a newline when empty).
    pub prime: &'a str,
    /// Characters to generate after it.
    pub length: usize,
    /// Above 1 flattens the distribution, below 1 sharpens it; must be positive.
    pub temperature: f64,
    /// Seeds the draws.
    pub seed: u64,
}

/// Reads a vocabulary saved by `nnlangc train` (`{"chars": "…"}`).
pub fn read_vocabulary(path: &Path) -> Result<Vocabulary, Error> {
    let at = |m: String| Error::Input(format!("{}: {m}", path.display()));
    let bytes = nnlang_runtime::data::read_maybe_gz(path).map_err(|e| Error::Input(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| at(format!("not a vocabulary (JSON {{\"chars\": \"…\"}}): {e}")))?;
    let Some(chars) = v.get("chars").and_then(|c| c.as_str()) else {
        return Err(at("not a vocabulary: no string `chars`".into()));
    };
    let list: Vec<char> = chars.chars().collect();
    if list.is_empty() || list.windows(2).any(|w| w[0] >= w[1]) {
        return Err(at("not a vocabulary: `chars` must be distinct characters in code-point order".into()));
    }
    Ok(Vocabulary { chars: list })
}

/// The most characters one `sample` generates.
pub const MAX_LENGTH: usize = 10_000_000;

impl Session {
    /// Generates `spec.length` characters after `spec.prime` with `model` (a character
    /// model: a character in at every step, one-hot or as its id, the next character's distribution
    /// out).
    pub fn sample(&self, model: &Model, spec: &SampleSpec) -> Result<String, Error> {
        if !(spec.temperature > 0.0 && spec.temperature.is_finite()) {
            return Err(Error::Usage(format!("--temperature must be a positive number, found {}", spec.temperature)));
        }
        if spec.length > MAX_LENGTH {
            return Err(Error::Usage(format!(
                "--length {}: at most {MAX_LENGTH} characters at a time (generate longer texts in parts, each primed with the last)",
                spec.length
            )));
        }
        let vocab = read_vocabulary(spec.vocab)?;
        let plan = self.plan_with(model, Mode::Inference, 1, true)?;
        let v = vocab.len();
        let seq = plan.sequence.filter(|s| s.per_step_output && plan.output.cols == s.steps * v);
        // The characters one-hot, or as ids (`ids < v`).
        let as_ids = plan.input_ids.first().copied().flatten() == Some(v);
        let width = if as_ids { 1 } else { v };
        let Some(seq) = seq.filter(|s| plan.inputs[0].cols == s.steps * width) else {
            return Err(self.input_error(format!(
                "`{}` is not a character model of this vocabulary ({v} characters in {}): it must read `[seq <= n, {v}]` (or `[seq <= n] ids < {v}`) and end in `dense({v}) -> softmax` at every step",
                model.graph.name,
                spec.vocab.display()
            )));
        };
        let mut exec = load_weights(&plan, spec.weights)?;
        let prime = if spec.prime.is_empty() { "\n" } else { spec.prime };
        let ids = vocab.encode(prime).map_err(|e| Error::Usage(format!("--prime: {e}")))?;
        let steps = seq.steps;
        let mut x = vec![0f32; steps * width];
        let mut probs = vec![0f32; v];
        // A full window needs the prediction at its last step only: the layers after the last
        // that mixes steps (a transformer's last MLP, its norm and head) run for that step
        // alone — the same bits there as the whole plan's.
        let last_only = plan.last_step_only();
        // Reads `chunk` (at most `steps` ids) and leaves the distribution after its last.
        let mut feed = |exec: &mut nnlang_runtime::interp::Exec<f32>, chunk: &[u32], probs: &mut [f32]| {
            let plan = match &last_only {
                Some(tail) if chunk.len() == steps => tail,
                _ => &plan,
            };
            x.fill(0.0);
            for (t, &c) in chunk.iter().enumerate() {
                match as_ids {
                    true => x[t] = c as f32,
                    false => x[t * v + c as usize] = 1.0,
                }
            }
            exec.set_input(plan, 0, 1, &x);
            exec.set_lengths(&[chunk.len()]);
            exec.run(plan, 1, None).map_err(|e| Error::Input(e.to_string()))?;
            let last = chunk.len() - 1;
            probs.copy_from_slice(&exec.output(plan, 1)[last * v..(last + 1) * v]);
            Ok::<(), Error>(())
        };
        // A model whose steps meet by attention, or that adds each step's position, reads a
        // window: the last `steps` characters again for every new one (the window sliding
        // forward, from fresh states). A recurrent one carries its state from step to step.
        let window = model.graph.nodes.iter().any(|n| matches!(n.op, Op::Attention(_) | Op::Positions(_)));
        let mut history: Vec<u32> = Vec::new();
        let mut next_after = |exec: &mut nnlang_runtime::interp::Exec<f32>, new: &[u32], probs: &mut [f32]| {
            if !window {
                return new.chunks(steps).try_for_each(|chunk| feed(exec, chunk, probs));
            }
            history.extend_from_slice(new);
            let start = history.len().saturating_sub(steps);
            exec.reset_state(&plan);
            feed(exec, &history[start..], probs)
        };
        next_after(&mut exec, &ids, &mut probs)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
        let mut out = Vec::with_capacity(spec.length);
        let inv_t = 1.0 / spec.temperature;
        let mut weights = vec![0f64; v];
        for _ in 0..spec.length {
            // p_i^(1/T), normalized: the softmax of the logits divided by T.
            let top = probs.iter().fold(0f64, |m, &p| m.max(p as f64)).max(f64::MIN_POSITIVE);
            for (w, &p) in weights.iter_mut().zip(&probs) {
                *w = ((p as f64) / top).max(0.0).powf(inv_t);
            }
            let total: f64 = weights.iter().sum();
            let mut r = rng.random::<f64>() * total;
            let mut next = v - 1;
            for (i, &w) in weights.iter().enumerate() {
                if r < w {
                    next = i;
                    break;
                }
                r -= w;
            }
            out.push(next as u32);
            next_after(&mut exec, &[next as u32], &mut probs)?;
        }
        vocab.decode(&out).ok_or_else(|| Error::Input("a generated id outside the vocabulary".into()))
    }
}
