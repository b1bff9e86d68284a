//! IR graph → execution plan: forward steps, the fused loss, the backward pass (from
//! [`crate::grad`]) and the update, then liveness analysis and arena offsets, so that buffers
//! whose lifetimes do not overlap share memory.

use crate::diag::Diagnostic;
use crate::grad::{self, Ctx};
use crate::ir::{Activation, NodeId, Op};
use crate::Model;
use nnlang_runtime::plan::{ABuf, PBuf, Param, Plan, Step, TargetKind, Write};
use std::collections::HashMap;

pub use nnlang_runtime::plan::Loss;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward only, dropout off, softmax computed.
    Inference,
    /// Forward with dropout, the loss, the backward pass and the update.
    Training(Loss),
}

struct Builder {
    /// Columns of each virtual buffer; steps refer to buffers by index until offsets are
    /// assigned.
    cols: Vec<usize>,
    steps: Vec<Step>,
}

impl Builder {
    fn buf(&mut self, cols: usize) -> ABuf {
        self.cols.push(cols);
        ABuf { offset: self.cols.len() - 1, cols }
    }
}

/// Builds the plan of `model` for batches of up to `max_batch` rows.
pub fn build(model: &Model, mode: Mode, max_batch: usize) -> Result<Plan, Vec<Diagnostic>> {
    let g = &model.graph;
    let mut errors = Vec::new();
    for id in g.ids() {
        let node = g.node(id);
        if !grad::supported(&node.op) {
            errors.push(Diagnostic::error(
                format!("`{}` layers cannot run yet", node.op.kind()),
                node.span,
                "no kernel for this layer",
            )
            .with_note("`nnlangc check` accepts this model; training and running it need the layer's kernels, which are not written yet"));
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
    let Some(out) = g.output else {
        return Err(vec![Diagnostic::error("the model has no output", Default::default(), "")]);
    };
    let out_node = g.node(out);
    let loss_input = match mode {
        Mode::Training(Loss::CrossEntropy) if out_node.op != Op::Softmax => {
            errors.push(
                Diagnostic::error(
                    "`loss = cross_entropy` needs the model to end in `softmax`",
                    out_node.span,
                    "the model ends here",
                )
                .with_help("add `-> softmax` at the end of the output pipeline (it is fused with the loss)"),
            );
            None
        }
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
            );
            None
        }
        Mode::Training(Loss::CrossEntropy | Loss::BinaryCrossEntropy) => out_node.inputs.first().copied(),
        _ => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let training = matches!(mode, Mode::Training(_));

    // Parameters, in node order.
    let mut params = Vec::new();
    let mut node_params: Vec<Vec<PBuf>> = vec![Vec::new(); g.nodes.len()];
    let mut params_len = 0;
    for id in g.ids() {
        for spec in &model.shapes.params[id.index()] {
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

    // Which buffer each node's value lives in: aliases share their input's.
    let cols_of = |id: NodeId| model.shapes.shapes[id.index()].as_ref().map_or(0, |s| s.elements().fixed as usize);
    let mut b = Builder { cols: Vec::new(), steps: Vec::new() };
    let mut canonical: Vec<NodeId> = g.ids().collect();
    let mut value: Vec<Option<ABuf>> = vec![None; g.nodes.len()];
    let mut masks: Vec<Option<ABuf>> = vec![None; g.nodes.len()];
    let mut inputs = Vec::new();
    for id in g.ids() {
        let node = g.node(id);
        let alias = match node.op {
            Op::Flatten => true,
            Op::Dropout { .. } => !training,
            _ => false,
        };
        if alias {
            canonical[id.index()] = canonical[node.inputs[0].index()];
            value[id.index()] = value[node.inputs[0].index()];
            continue;
        }
        if training && id == out && loss_input.is_some() {
            continue; // the final softmax or sigmoid is fused into the loss
        }
        let v = b.buf(cols_of(id));
        value[id.index()] = Some(v);
        if matches!(node.op, Op::Input { .. }) {
            inputs.push(v);
            continue;
        }
        if training && matches!(node.op, Op::Dropout { .. }) {
            masks[id.index()] = Some(b.buf(cols_of(id)));
        }
        let ctx = context(model, id, &value, &node_params, &masks);
        if let Some(step) = grad::forward(&ctx) {
            b.steps.push(step);
        }
    }

    let mut target = None;
    let mut output;
    match mode {
        Mode::Inference => {
            output = value[out.index()].unwrap_or(ABuf { offset: 0, cols: 0 });
        }
        Mode::Training(loss) => {
            let mut grads: HashMap<NodeId, ABuf> = HashMap::new();
            let head = loss_input.map(|i| canonical[i.index()]).unwrap_or(out);
            let head_value = value[head.index()].unwrap_or(ABuf { offset: 0, cols: 0 });
            let dhead = b.buf(head_value.cols);
            grads.insert(head, dhead);
            let (t, kind) = match loss {
                Loss::CrossEntropy => (b.buf(1), TargetKind::Class),
                _ => (b.buf(head_value.cols), TargetKind::Values),
            };
            target = Some((t, kind));
            b.steps.push(match loss {
                Loss::CrossEntropy => Step::SoftmaxCrossEntropy { logits: head_value, target: t, dlogits: dhead },
                Loss::BinaryCrossEntropy => {
                    Step::SigmoidBinaryCrossEntropy { logits: head_value, target: t, dlogits: dhead }
                }
                Loss::MeanSquaredError => Step::MeanSquaredError { y: head_value, target: t, dy: dhead },
            });
            output = head_value;
            for id in g.ids().rev() {
                if canonical[id.index()] != id {
                    continue;
                }
                let Some(&dy) = grads.get(&id) else { continue };
                let node = g.node(id);
                let ctx = context(model, id, &value, &node_params, &masks);
                let mut dx = |i: usize| -> Option<(ABuf, Write)> {
                    let input = canonical[node.inputs[i].index()];
                    if matches!(g.node(input).op, Op::Input { .. }) {
                        return None;
                    }
                    match grads.get(&input) {
                        Some(&d) => Some((d, Write::Accumulate)),
                        None => {
                            let d = b.buf(value[input.index()].map_or(0, |v| v.cols));
                            grads.insert(input, d);
                            Some((d, Write::Assign))
                        }
                    }
                };
                let steps = grad::backward(&ctx, dy, &node_params[id.index()], &mut dx);
                b.steps.extend(steps);
            }
            b.steps.push(Step::Update);
        }
    }

    // Liveness: each buffer lives from the first step that touches it to the last; inputs
    // and the target for the whole run (they keep what the caller wrote, so a plan can be
    // rerun on the same batch); the output until after the last step.
    let n = b.cols.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (i, step) in b.steps.iter_mut().enumerate() {
        for buf in step.bufs_mut() {
            first[buf.offset] = first[buf.offset].min(i + 1);
            last[buf.offset] = last[buf.offset].max(i + 1);
        }
    }
    let end = b.steps.len() + 1;
    for buf in inputs.iter().chain(target.iter().map(|(t, _)| t)) {
        first[buf.offset] = 0;
        last[buf.offset] = end;
    }
    if mode == Mode::Inference {
        last[output.offset] = end;
        first[output.offset] = first[output.offset].min(end);
    }
    let sizes: Vec<usize> = b.cols.iter().map(|c| c * max_batch).collect();
    let (offsets, arena_len) = assign_offsets(&sizes, &first, &last);
    let relocate = |buf: &mut ABuf| buf.offset = offsets[buf.offset];
    for step in &mut b.steps {
        for buf in step.bufs_mut() {
            relocate(buf);
        }
    }
    inputs.iter_mut().for_each(relocate);
    if let Some((t, _)) = &mut target {
        relocate(t);
    }
    relocate(&mut output);
    Ok(Plan {
        max_batch,
        arena_len,
        naive_len: sizes.iter().sum(),
        steps: b.steps,
        inputs,
        target,
        output,
        params,
        params_len,
    })
}

fn context<'a>(
    model: &'a Model,
    id: NodeId,
    value: &[Option<ABuf>],
    params: &[Vec<PBuf>],
    masks: &[Option<ABuf>],
) -> Ctx<'a> {
    let node = model.graph.node(id);
    let none = ABuf { offset: 0, cols: 0 };
    Ctx {
        node,
        inputs: node.inputs.iter().map(|i| value[i.index()].unwrap_or(none)).collect(),
        value: value[id.index()].unwrap_or(none),
        params: params[id.index()].clone(),
        mask: masks[id.index()],
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
