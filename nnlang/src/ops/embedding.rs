//! `embedding(vocab, dim)`: each token id of an input declared `ids < n` replaced by its
//! row of a table `weight [vocab, dim]` (PyTorch's `nn.Embedding`, which it exports to;
//! ONNX `Gather`). `[seq] → [seq, dim]`, `[n] → [n, dim]`, `[seq, n] → [seq, n, dim]`. The
//! ids are checked where the data is read (a located error in the file) and again by the
//! kernel (an error naming the batch's row, for arrays handed to generated code).

use super::args::Args;
use super::rule::{ParamSpec, RuleResult, ShapeError};
use super::tensor::{Dim, Elems, Shape};
use super::{FlopsCx, Layer, Op, Reads, Rules, Scratch, ShapeCx, StepCx, Value};
use nnlang_runtime::plan::{ABuf, PBuf, Role, Step};
use serde::Serialize;

/// `embedding(vocab, dim)`: a learned vector for each token id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Embedding {
    /// Rows of the table: ids `0..vocab`.
    pub vocab: usize,
    /// Values per token.
    pub dim: usize,
}

impl Embedding {
    /// `embedding`.
    pub const LAYERS: &'static [Layer] = &[Layer {
        name: "embedding",
        args: &[("vocab", true), ("dim", true)],
        example: "`embedding(65, 64)`",
        merge: false,
        positional_error: None,
        build,
    }];
}

fn build(a: &Args) -> Result<Op, crate::diag::Diagnostic> {
    Ok(Op::Embedding(Embedding { vocab: a.required_int("vocab")?, dim: a.required_int("dim")? }))
}

impl Rules for Embedding {
    /// Smooth (in the table; ids have no gradient), cheap either way.
    fn step_facts(&self, _: &Step) -> nnlang_runtime::plan::StepFacts {
        nnlang_runtime::plan::StepFacts::SMOOTH
    }
    /// `Gather` of the table's rows by the ids (cast to int64: the graph's inputs are floats,
    /// as `run` reads them).
    fn onnx(&self, g: &mut dyn super::onnx::OnnxGraph, cx: &super::onnx::OnnxCx) -> Result<(), String> {
        let src = cx.input()?;
        let x = g.value(src, super::onnx::Layout::ChannelsLast)?;
        let to = super::onnx::Attr::Int("to", 7); // INT64
        let ids = g.node("Cast", &[&x], vec![to], &format!("{}/ids", cx.name));
        let table = super::onnx::param_tensor(g, cx.id, "weight", &[self.vocab, self.dim])?;
        let y = g.node("Gather", &[&table, &ids], vec![super::onnx::Attr::Int("axis", 0)], cx.name);
        g.set(cx.id, y, super::onnx::Layout::ChannelsLast);
        Ok(())
    }
    /// `nn.Embedding(vocab, dim)` over the ids as integers.
    fn pytorch(&self, c: &super::PyCx) -> Option<super::PyLayer> {
        let init = c.init(format!("nn.Embedding({}, {})", self.vocab, self.dim));
        Some(super::PyLayer::with(init, format!("{}({}.long())", c.module, c.x)))
    }
    fn kind(&self) -> &'static str {
        "embedding"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("vocab", self.vocab.to_string()), ("dim", self.dim.to_string())]
    }
    /// The input's dimensions and `dim` after them; whether the input holds ids below
    /// `vocab` is checked with the graph ([`check_ids`]).
    fn shape(&self, cx: &ShapeCx) -> RuleResult {
        let input = cx.one();
        if input.rank() > 2 {
            return Err(vec![ShapeError::new(
                cx.id,
                format!("`embedding` reads ids of 1 or 2 dimensions, got {input}"),
                "too many dimensions",
            )]);
        }
        let mut dims = input.0.clone();
        dims.push(Dim::Fixed(self.dim));
        let table = ParamSpec {
            name: format!("{}.weight", cx.name),
            shape: vec![self.vocab, self.dim],
            role: Role::Embedding { dim: self.dim },
        };
        Ok((Shape(dims), vec![table]))
    }
    /// A copy, no arithmetic.
    fn flops(&self, _: &FlopsCx) -> Elems {
        Elems::default()
    }
    fn runnable(&self) -> bool {
        true
    }
    fn value(&self, _training: bool) -> Value {
        Value::Computed
    }
    fn scratch(&self, _: &StepCx, _max_batch: usize) -> Vec<Scratch> {
        Vec::new()
    }
    fn forward(&self, c: &StepCx) -> Vec<Step> {
        vec![Step::Embedding { ids: c.inputs[0], w: c.params[0], y: c.value, vocab: self.vocab }]
    }
    /// Forward looked rows up: `dW` gets each used row's `dy`; the ids have no gradient.
    fn backward(&self, c: &StepCx, dy: ABuf, grads: &[PBuf], _dx: &mut super::DxFn) -> Vec<Step> {
        vec![Step::EmbeddingBackward { ids: c.inputs[0], dy, dw: grads[0], vocab: self.vocab }]
    }
    fn backward_reads(&self) -> Reads {
        Reads { input: true, output: false }
    }
    fn elementwise(&self) -> bool {
        false
    }
    fn carries(&self) -> Vec<usize> {
        Vec::new()
    }
    fn save_carried(&self, _: &StepCx) -> Vec<Step> {
        Vec::new()
    }
    fn per_step(&self) -> bool {
        true
    }
}

/// Token ids go into an embedding and nowhere else, and an embedding reads token ids below
/// its vocabulary: the errors for a graph whose node `id` (reading `inputs`, whose `ids < n`
/// bounds are `bounds`) breaks either rule.
pub fn check_ids(
    id: super::tensor::NodeId,
    op: &Op,
    inputs: &[super::tensor::NodeId],
    bounds: &[Option<usize>],
    names: &[&str],
) -> Vec<ShapeError> {
    let mut errors = Vec::new();
    match op {
        Op::Embedding(e) => match bounds.first() {
            Some(Some(n)) if *n > e.vocab => errors.push(
                ShapeError::new(
                    id,
                    format!(
                        "`embedding({}, {})` has {} rows, but `{}` holds ids up to {}",
                        e.vocab,
                        e.dim,
                        e.vocab,
                        names[0],
                        n - 1
                    ),
                    format!("ids {}..{} have no row", e.vocab, n - 1),
                )
                .related(inputs[0], format!("declared `ids < {n}` here"))
                .help(format!("give the table a row per id: `embedding({n}, {})`", e.dim)),
            ),
            Some(Some(_)) => {}
            _ => errors.push(
                ShapeError::new(
                    id,
                    format!(
                        "`embedding` looks up token ids, but `{}` holds values, not ids",
                        names.first().unwrap_or(&"?")
                    ),
                    "reads values",
                )
                .note("an embedding's input is a model input declared with `ids < n`")
                .help(format!("declare the input as ids, e.g. `input tokens: [seq <= 100] ids < {}`", e.vocab)),
            ),
        },
        _ => {
            for ((&i, b), name) in inputs.iter().zip(bounds).zip(names) {
                if let Some(n) = b {
                    errors.push(
                        ShapeError::new(
                            id,
                            format!("`{}` reads `{name}`, which holds token ids, not values", op.kind()),
                            "reads ids",
                        )
                        .related(i, format!("declared `ids < {n}` here"))
                        .note("an id is a name for a token, not a quantity: only `embedding` reads ids")
                        .help(format!("look the ids up first: `{name} -> embedding({n}, 64) -> …`")),
                    );
                }
            }
        }
    }
    errors
}
