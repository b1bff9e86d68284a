//! IR graph → execution plan. The passes run first ([`crate::passes`]); then forward steps,
//! the loss, the backward pass and the update are laid out from each op's rules
//! ([`crate::ops::Rules`]), and liveness analysis gives every arena buffer its offset, so that
//! buffers whose lifetimes do not overlap share memory. Model inputs and the target are read
//! where the caller holds them and take no arena space.

use crate::diag::Diagnostic;
use crate::ir::{Activation, Dim, Graph, NodeId, Op};
use crate::ops::{Dx, Scratch, StepCx, Value};
use crate::passes;
use crate::shape::Shapes;
use crate::Model;
use nnlang_runtime::plan::{ABuf, PBuf, Param, Plan, Space, Step, Write};
use std::collections::HashMap;

pub use crate::passes::{Level, Mode};
pub use nnlang_runtime::plan::Loss;

/// The most memory a plan may ask for (16 GiB): more is a mistake (an absurd batch), and
/// refusing it beats an allocation failure.
pub const MEMORY_LIMIT: u64 = 16 << 30;

/// The graph the plan of `mode` is built from: the model's graph after the passes.
pub fn graph_for(model: &Model, mode: Mode, level: Level) -> Graph {
    passes::optimize(&model.graph, mode, level)
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
        if !node.op.rules().runnable() {
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
    let ends_in_sigmoid = matches!(&out_node.op, Op::Activation(a) if a.function == Activation::Sigmoid);
    match mode {
        Mode::Training(Loss::CrossEntropy) if !matches!(out_node.op, Op::Softmax(_)) => errors.push(
            Diagnostic::error(
                "`loss = cross_entropy` needs the model to end in `softmax`",
                out_node.span,
                "the model ends here",
            )
            .with_help("add `-> softmax` at the end of the output pipeline (it is fused with the loss)"),
        ),
        Mode::Training(Loss::BinaryCrossEntropy) if !ends_in_sigmoid => errors.push(
            Diagnostic::error(
                "`loss = binary_cross_entropy` needs the model to end in `sigmoid`",
                out_node.span,
                "the model ends here",
            )
            .with_help("add `-> sigmoid` at the end of the output pipeline (it is fused with the loss)"),
        ),
        Mode::Training(_) | Mode::Inference => {}
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

/// The fixed dimensions of a node's shape, when all are fixed.
fn fixed_dims(shapes: &Shapes, id: NodeId) -> Option<Vec<usize>> {
    shapes.shapes[id.index()].as_ref()?.0.iter().map(|d| if let Dim::Fixed(n) = d { Some(*n) } else { None }).collect()
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

    // Values: a node is the same tensor as its input (`canonical`) for an alias; an in-place
    // node is a new tensor in its input's buffer.
    let cols_of = |id: NodeId| shapes.shapes[id.index()].as_ref().map_or(0, |s| s.elements().fixed as usize);
    let dims: Vec<Option<Vec<usize>>> = g.ids().map(|id| fixed_dims(shapes, id)).collect();
    let mut b = Builder { cols: Vec::new(), fixed: Vec::new(), steps: Vec::new() };
    let mut scratch: Vec<Vec<ABuf>> = vec![Vec::new(); g.nodes.len()];
    let mut canonical: Vec<NodeId> = g.ids().collect();
    let mut value: Vec<ABuf> = vec![ABuf::NONE; g.nodes.len()];
    let mut inputs = Vec::new();
    let mut grads: HashMap<NodeId, ABuf> = HashMap::new();
    let mut target = None;
    let mut output = ABuf::NONE;
    let step_cx = |id: NodeId, value: &[ABuf], scratch: Vec<ABuf>| -> StepCx<'_> {
        let node = g.node(id);
        StepCx {
            inputs: node.inputs.iter().map(|i| value[i.index()]).collect(),
            value: value[id.index()],
            params: node_params[id.index()].clone(),
            scratch,
            in_dims: node.inputs.first().and_then(|i| dims[i.index()].as_deref()),
            out_dims: dims[id.index()].as_deref(),
            in_place: node.in_place,
            training,
        }
    };
    for id in g.ids() {
        let node = g.node(id);
        let rules = node.op.rules();
        match rules.value(training) {
            Value::Caller => {
                let v = ABuf { offset: 0, cols: cols_of(id), space: Space::Input(inputs.len()) };
                inputs.push(v);
                value[id.index()] = v;
            }
            Value::Alias => {
                canonical[id.index()] = canonical[node.inputs[0].index()];
                value[id.index()] = value[node.inputs[0].index()];
            }
            Value::Loss => {
                let Op::Loss(loss) = &node.op else { continue };
                let p = canonical[node.inputs[0].index()];
                let pv = value[p.index()];
                let dp = b.buf(pv.cols);
                grads.insert(p, dp);
                let (cols, kind) = loss.target(pv.cols);
                let t = ABuf { offset: 0, cols, space: Space::Target };
                target = Some((t, kind));
                b.steps.push(loss.step(pv, t, dp));
                output = pv;
            }
            Value::Computed => {
                value[id.index()] = if node.in_place { value[node.inputs[0].index()] } else { b.buf(cols_of(id)) };
                let asked = rules.scratch(&step_cx(id, &value, Vec::new()), max_batch);
                scratch[id.index()] = asked
                    .into_iter()
                    .map(|s| match s {
                        Scratch::PerRow(c) => b.buf(c),
                        Scratch::Fixed(len) => b.workspace(len),
                    })
                    .collect();
                let cx = step_cx(id, &value, scratch[id.index()].clone());
                b.steps.extend(rules.forward(&cx));
            }
        }
    }

    if training {
        for id in g.ids().rev() {
            if canonical[id.index()] != id {
                continue;
            }
            let Some(&dy) = grads.get(&id) else { continue };
            let node = g.node(id);
            let cx = step_cx(id, &value, scratch[id.index()].clone());
            let mut dx = |i: usize, may_reuse: bool| -> Dx {
                let input = canonical[node.inputs[i].index()];
                if g.node(input).op.rules().value(training) == Value::Caller {
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
            let steps = node.op.rules().backward(&cx, dy, &node_params[id.index()], &mut dx);
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
