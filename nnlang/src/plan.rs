//! IR graph → execution plan. The passes run first ([`crate::passes`]); then forward steps,
//! the loss, the backward pass (from [`crate::grad`]) and the update are laid out, and
//! liveness analysis gives every arena buffer its offset, so that buffers whose lifetimes do
//! not overlap share memory. Model inputs and the target are read where the caller holds
//! them and take no arena space.

use crate::diag::Diagnostic;
use crate::grad::{self, Ctx, Dx};
use crate::ir::{Activation, Graph, LossKind, NodeId, Op};
use crate::passes::{self, Target};
use crate::shape::Shapes;
use crate::Model;
use nnlang_runtime::plan::{ABuf, Geometry, PBuf, Param, Plan, Space, Step, TargetKind, Write};
use std::collections::HashMap;

pub use crate::passes::Level;
pub use nnlang_runtime::plan::Loss;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward only, dropout off, softmax computed.
    Inference,
    /// Forward with dropout, the loss, the backward pass and the update.
    Training(Loss),
}

fn loss_kind(loss: Loss) -> LossKind {
    match loss {
        Loss::CrossEntropy => LossKind::CrossEntropy,
        Loss::BinaryCrossEntropy => LossKind::BinaryCrossEntropy,
        Loss::MeanSquaredError => LossKind::MeanSquaredError,
    }
}

/// The graph the plan of `mode` is built from: the model's graph after the passes.
pub fn graph_for(model: &Model, mode: Mode, level: Level) -> Graph {
    let target = match mode {
        Mode::Inference => Target::Inference,
        Mode::Training(l) => Target::Training(loss_kind(l)),
    };
    passes::optimize(&model.graph, target, level)
}

/// Builds the optimized plan of `model` for batches of up to `max_batch` rows.
pub fn build(model: &Model, mode: Mode, max_batch: usize) -> Result<Plan, Vec<Diagnostic>> {
    build_at(model, mode, max_batch, Level::Full)
}

/// Checks that every op can run and that the loss fits the model's last layer.
fn check(model: &Model, mode: Mode) -> Result<(), Vec<Diagnostic>> {
    let g = &model.graph;
    let mut errors = Vec::new();
    for id in g.ids() {
        let node = g.node(id);
        if !grad::supported(&node.op) {
            errors.push(
                Diagnostic::error(format!("`{}` layers cannot run yet", node.op.kind()), node.span, "no kernel for this layer")
                    .with_note("`nnlangc check` accepts this model; training and running it need the layer's kernels, which are not written yet"),
            );
        }
    }
    for &i in &g.inputs {
        if model.shapes.shapes[i.index()].as_ref().is_some_and(|s| s.seq().is_some()) {
            let n = g.node(i);
            errors.push(Diagnostic::error("sequence inputs cannot run yet", n.span, "variable length").with_note(
                "`nnlangc check` accepts this model; running sequences needs the rnn kernels, which are not written yet",
            ));
        }
    }
    if g.inputs.len() > nnlang_runtime::interp::MAX_INPUTS {
        let at = g.node(g.inputs[nnlang_runtime::interp::MAX_INPUTS]).span;
        errors.push(Diagnostic::error(
            format!(
                "a model that runs has at most {} inputs, this one has {}",
                nnlang_runtime::interp::MAX_INPUTS,
                g.inputs.len()
            ),
            at,
            "one input too many",
        ));
    }
    let Some(out) = g.output else {
        return Err(vec![Diagnostic::error("the model has no output", Default::default(), "")]);
    };
    let out_node = g.node(out);
    match mode {
        Mode::Training(Loss::CrossEntropy) if out_node.op != Op::Softmax => errors.push(
            Diagnostic::error(
                "`loss = cross_entropy` needs the model to end in `softmax`",
                out_node.span,
                "the model ends here",
            )
            .with_help("add `-> softmax` at the end of the output pipeline (it is fused with the loss)"),
        ),
        Mode::Training(Loss::BinaryCrossEntropy)
            if out_node.op != (Op::Activation { function: Activation::Sigmoid }) =>
        {
            errors.push(
                Diagnostic::error(
                    "`loss = binary_cross_entropy` needs the model to end in `sigmoid`",
                    out_node.span,
                    "the model ends here",
                )
                .with_help("add `-> sigmoid` at the end of the output pipeline (it is fused with the loss)"),
            )
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Builder {
    /// Columns of each arena buffer; steps refer to arena buffers by index until offsets
    /// are assigned.
    cols: Vec<usize>,
    /// Whether a buffer has a fixed length (a workspace) instead of `cols` per row.
    fixed: Vec<bool>,
    steps: Vec<Step>,
}

impl Builder {
    fn buf(&mut self, cols: usize) -> ABuf {
        self.cols.push(cols);
        self.fixed.push(false);
        ABuf::arena(self.cols.len() - 1, cols)
    }

    /// A workspace of `len` elements whatever the batch.
    fn workspace(&mut self, len: usize) -> ABuf {
        self.cols.push(len);
        self.fixed.push(true);
        ABuf::arena(self.cols.len() - 1, len)
    }
}

/// The window geometry of a convolution, locally-connected layer or pooling node.
fn geometry(g: &Graph, shapes: &Shapes, id: NodeId) -> Option<Geometry> {
    let node = g.node(id);
    let (f, s, p, k) = match node.op {
        Op::Conv { filters, size, stride, pad }
        | Op::FusedConv { filters, size, stride, pad, .. }
        | Op::Local { filters, size, stride, pad } => (size, stride, pad, Some(filters)),
        Op::Pool { size, stride, .. } => (size, stride, 0, None),
        _ => return None,
    };
    let dims = |i: NodeId| -> Option<Vec<usize>> {
        shapes.shapes[i.index()]
            .as_ref()?
            .0
            .iter()
            .map(|d| if let crate::ir::Dim::Fixed(n) = d { Some(*n) } else { None })
            .collect()
    };
    let (input, output) = (dims(*node.inputs.first()?)?, dims(id)?);
    let ([h, w, d], [oh, ow, _]) = (<[usize; 3]>::try_from(input).ok()?, <[usize; 3]>::try_from(output).ok()?);
    Some(Geometry { h, w, d, k: k.unwrap_or(d), f, s, p, oh, ow })
}

/// Builds the plan with the passes of `level`.
pub fn build_at(model: &Model, mode: Mode, max_batch: usize, level: Level) -> Result<Plan, Vec<Diagnostic>> {
    check(model, mode)?;
    let g = graph_for(model, mode, level);
    let (shapes, errors) = crate::shape::infer(&g);
    if let Some(e) = errors.first() {
        return Err(vec![e.to_diagnostic(&g)]);
    }
    Ok(lay_out(&g, &shapes, mode, max_batch, level))
}

fn lay_out(g: &Graph, shapes: &Shapes, mode: Mode, max_batch: usize, level: Level) -> Plan {
    let training = matches!(mode, Mode::Training(_));
    let optimize = level == Level::Full;

    // Parameters, in node order.
    let mut params = Vec::new();
    let mut node_params: Vec<Vec<PBuf>> = vec![Vec::new(); g.nodes.len()];
    let mut params_len = 0;
    for id in g.ids() {
        for spec in &shapes.params[id.index()] {
            let len = spec.count() as usize;
            let buf = PBuf { offset: params_len, len };
            params_len += len;
            node_params[id.index()].push(buf);
            params.push(Param {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                buf,
                fan_in: spec.shape.get(1..).map_or(1, |d| d.iter().product::<usize>().max(1)),
                is_bias: spec.name.ends_with(".bias"),
            });
        }
    }

    // Values: a node is the same tensor as its input (`canonical`) for flatten and for
    // dropout at inference; an in-place node is a new tensor in its input's buffer.
    let cols_of = |id: NodeId| shapes.shapes[id.index()].as_ref().map_or(0, |s| s.elements().fixed as usize);
    let mut b = Builder { cols: Vec::new(), fixed: Vec::new(), steps: Vec::new() };
    let geometries: Vec<Option<Geometry>> = g.ids().map(|id| geometry(g, shapes, id)).collect();
    let mut scratch: Vec<Vec<ABuf>> = vec![Vec::new(); g.nodes.len()];
    let mut canonical: Vec<NodeId> = g.ids().collect();
    let mut value: Vec<ABuf> = vec![ABuf::NONE; g.nodes.len()];
    let mut masks: Vec<Option<ABuf>> = vec![None; g.nodes.len()];
    let mut inputs = Vec::new();
    let mut grads: HashMap<NodeId, ABuf> = HashMap::new();
    let mut target = None;
    let mut output = ABuf::NONE;
    for id in g.ids() {
        let node = g.node(id);
        match node.op {
            Op::Input { .. } => {
                let v = ABuf { offset: 0, cols: cols_of(id), space: Space::Input(inputs.len()) };
                inputs.push(v);
                value[id.index()] = v;
                continue;
            }
            Op::Flatten => {
                canonical[id.index()] = canonical[node.inputs[0].index()];
                value[id.index()] = value[node.inputs[0].index()];
                continue;
            }
            Op::Dropout { .. } if !training => {
                canonical[id.index()] = canonical[node.inputs[0].index()];
                value[id.index()] = value[node.inputs[0].index()];
                continue;
            }
            Op::Loss { loss } => {
                let p = canonical[node.inputs[0].index()];
                let pv = value[p.index()];
                let dp = b.buf(pv.cols);
                grads.insert(p, dp);
                let classes = matches!(loss, LossKind::CrossEntropy | LossKind::SoftmaxCrossEntropy);
                let t = ABuf { offset: 0, cols: if classes { 1 } else { pv.cols }, space: Space::Target };
                target = Some((t, if classes { TargetKind::Class } else { TargetKind::Values }));
                b.steps.push(match loss {
                    LossKind::SoftmaxCrossEntropy => Step::SoftmaxCrossEntropy { logits: pv, target: t, dlogits: dp },
                    LossKind::CrossEntropy => Step::CrossEntropy { probs: pv, target: t, dprobs: dp },
                    LossKind::SigmoidBinaryCrossEntropy => {
                        Step::SigmoidBinaryCrossEntropy { logits: pv, target: t, dlogits: dp }
                    }
                    LossKind::BinaryCrossEntropy => Step::BinaryCrossEntropy { probs: pv, target: t, dprobs: dp },
                    LossKind::MeanSquaredError => Step::MeanSquaredError { y: pv, target: t, dy: dp },
                });
                output = pv;
                continue;
            }
            _ => {}
        }
        value[id.index()] = if node.in_place { value[node.inputs[0].index()] } else { b.buf(cols_of(id)) };
        if training && matches!(node.op, Op::Dropout { .. }) {
            masks[id.index()] = Some(b.buf(cols_of(id)));
        }
        scratch[id.index()] = grad::scratch(&node.op, geometries[id.index()].as_ref(), training, max_batch)
            .into_iter()
            .map(|s| match s {
                grad::Scratch::PerRow(c) => b.buf(c),
                grad::Scratch::Fixed(len) => b.workspace(len),
            })
            .collect();
        let ctx = context(g, id, &value, &node_params, &masks, &geometries, &scratch);
        b.steps.extend(grad::forward(&ctx));
    }

    if training {
        for id in g.ids().rev() {
            if canonical[id.index()] != id {
                continue;
            }
            let Some(&dy) = grads.get(&id) else { continue };
            let node = g.node(id);
            let ctx = context(g, id, &value, &node_params, &masks, &geometries, &scratch);
            let mut dx = |i: usize, may_reuse: bool| -> Dx {
                let input = canonical[node.inputs[i].index()];
                if matches!(g.node(input).op, Op::Input { .. }) {
                    return Dx::None;
                }
                match grads.get(&input) {
                    Some(&d) => Dx::Into(d, Write::Accumulate),
                    None if may_reuse && optimize => {
                        grads.insert(input, dy);
                        Dx::New
                    }
                    None => {
                        let d = b.buf(value[input.index()].cols);
                        grads.insert(input, d);
                        Dx::Into(d, Write::Assign)
                    }
                }
            };
            let steps = grad::backward(&ctx, dy, &node_params[id.index()], &mut dx);
            b.steps.extend(steps);
        }
        b.steps.push(Step::Update);
    } else if let Some(o) = g.output {
        output = value[o.index()];
    }

    // Liveness of arena buffers: from the first step that touches one to the last; the
    // inference output until after the last step.
    let n = b.cols.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, step) in b.steps.iter_mut().enumerate() {
        for buf in step.bufs_mut() {
            if buf.space == Space::Arena {
                first[buf.offset] = first[buf.offset].min(i + 1);
                last[buf.offset] = last[buf.offset].max(i + 1);
            }
        }
    }
    if !training && output.space == Space::Arena && output.offset < n {
        last[output.offset] = b.steps.len() + 1;
        first[output.offset] = first[output.offset].min(b.steps.len() + 1);
    }
    let sizes: Vec<usize> =
        b.cols.iter().zip(&b.fixed).map(|(c, &fixed)| if fixed { *c } else { c * max_batch }).collect();
    let (offsets, arena_len) = assign_offsets(&sizes, &first, &last);
    let relocate = |buf: &mut ABuf| {
        if buf.space == Space::Arena {
            buf.offset = offsets.get(buf.offset).copied().unwrap_or(0);
        }
    };
    for step in &mut b.steps {
        for buf in step.bufs_mut() {
            relocate(buf);
        }
    }
    relocate(&mut output);
    Plan {
        max_batch,
        arena_len,
        naive_len: sizes.iter().sum(),
        steps: b.steps,
        inputs,
        target,
        output,
        params,
        params_len,
    }
}

#[allow(clippy::too_many_arguments)]
fn context<'a>(
    g: &'a Graph,
    id: NodeId,
    value: &[ABuf],
    params: &[Vec<PBuf>],
    masks: &[Option<ABuf>],
    geometries: &[Option<Geometry>],
    scratch: &[Vec<ABuf>],
) -> Ctx<'a> {
    let node = g.node(id);
    Ctx {
        node,
        inputs: node.inputs.iter().map(|i| value[i.index()]).collect(),
        value: value[id.index()],
        params: params[id.index()].clone(),
        mask: masks[id.index()],
        geometry: geometries[id.index()],
        scratch: scratch[id.index()].clone(),
    }
}

/// Greedy interval packing: largest buffers first, each at the lowest offset where it does
/// not overlap (in address) any placed buffer that is alive at the same time.
fn assign_offsets(sizes: &[usize], first: &[usize], last: &[usize]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..sizes.len()).filter(|&i| first[i] != usize::MAX).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), first[i], i));
    let mut offsets = vec![0usize; sizes.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0;
    for &i in &order {
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| first[j] <= last[i] && first[i] <= last[j])
            .map(|&j| (offsets[j], offsets[j] + sizes[j]))
            .collect();
        conflicts.sort_unstable();
        let mut at = 0;
        for (s, e) in conflicts {
            if at + sizes[i] <= s {
                break;
            }
            at = at.max(e);
        }
        offsets[i] = at;
        total = total.max(at + sizes[i]);
        placed.push(i);
    }
    (offsets, total)
}
