//! The forward and backward steps of a graph, from each op's rules ([`crate::ops::Rules`]):
//! values get arena buffers (or alias their input, or stay where the caller holds them), the
//! loss and the backward pass in reverse topological order with gradient accumulation, then
//! the update. Buffers are numbered here; [`super::liveness`] gives them offsets.

use super::liveness;
use super::{Level, Mode};
use crate::ir::{Dim, Graph, NodeId, Op};
use crate::ops::{Dx, Scratch, StepCx, Value};
use crate::shape::Shapes;
use nnlang_runtime::plan::{ABuf, PBuf, Plan, Sequence, Space, Step, StepFacts, Write};
use std::collections::HashMap;

/// Steps over numbered arena buffers, before offsets are assigned.
pub(super) struct Builder {
    /// Columns of each arena buffer; steps refer to arena buffers by index until offsets
    /// are assigned.
    pub(super) cols: Vec<usize>,
    /// Whether a buffer has a fixed length (a workspace) instead of `cols` per row.
    pub(super) fixed: Vec<bool>,
    /// Whether a buffer lives through every run and between runs (a carried state).
    pub(super) pinned: Vec<bool>,
    pub(super) steps: Vec<Step>,
    /// The node each step comes from, by name (parallel to `steps` once labelled).
    pub(super) origins: Vec<String>,
    /// What the op that made a step says about it, by step index (steps the planner adds
    /// itself are smooth and cheap either way).
    pub(super) facts: HashMap<usize, StepFacts>,
}

impl Builder {
    /// Appends an op's steps, each with what the op says about it, run at every step of a
    /// sequence of `per_step` steps if given.
    fn op_steps(&mut self, steps: Vec<Step>, rules: &dyn crate::ops::Rules, per_step: Option<usize>) {
        let first = self.steps.len() + usize::from(per_step.is_some() && !steps.is_empty());
        for (i, s) in steps.iter().enumerate() {
            self.facts.insert(first + i, rules.step_facts(s));
        }
        match per_step {
            Some(t) => self.steps.extend(at_every_step(steps, t)),
            None => self.steps.extend(steps),
        }
    }

    /// Labels the steps added since the last call as coming from `name`.
    fn label(&mut self, name: &str) {
        let n = self.steps.len();
        self.origins.resize(n, name.to_string());
    }
}

impl Builder {
    /// Takes step `i` out of the plan (with its origin and facts; the later steps' facts move
    /// down with them).
    fn remove_step(&mut self, i: usize) {
        self.steps.remove(i);
        if i < self.origins.len() {
            self.origins.remove(i);
        }
        self.facts = std::mem::take(&mut self.facts)
            .into_iter()
            .filter(|&(j, _)| j != i)
            .map(|(j, f)| (if j > i { j - 1 } else { j }, f))
            .collect();
    }

    fn buf(&mut self, cols: usize) -> ABuf {
        self.cols.push(cols);
        self.fixed.push(false);
        self.pinned.push(false);
        ABuf::arena(self.cols.len() - 1, cols)
    }

    /// A workspace of `len` elements whatever the batch.
    fn workspace(&mut self, len: usize) -> ABuf {
        let b = self.buf(len);
        self.fixed[b.offset] = true;
        b
    }

    /// `cols` per row that keep their values from one run to the next.
    fn pinned(&mut self, cols: usize) -> ABuf {
        let b = self.buf(cols);
        self.pinned[b.offset] = true;
        b
    }
}

/// The dimensions of a node's shape, when all are known (a sequence's steps included).
fn fixed_dims(shapes: &Shapes, id: NodeId) -> Option<Vec<usize>> {
    shapes.shapes[id.index()]
        .as_ref()?
        .0
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) | Dim::Steps { len: n, .. } => Some(*n),
            Dim::Seq { .. } => None,
        })
        .collect()
}

/// One step's view of a buffer with `steps` steps per example: a row per step.
fn one_step(b: ABuf, steps: usize) -> ABuf {
    ABuf { cols: b.cols / steps.max(1), ..b }
}

/// `steps` wrapped so that they work at every step of a sequence of `steps` steps.
fn at_every_step(inner: Vec<Step>, steps: usize) -> Vec<Step> {
    if inner.is_empty() {
        return inner;
    }
    let mut v = Vec::with_capacity(inner.len() + 2);
    v.push(Step::PerStep { steps });
    v.extend(inner);
    v.push(Step::PerStep { steps: 1 });
    v
}

/// What laying out one graph accumulates.
struct Layout<'g> {
    g: &'g Graph,
    shapes: &'g Shapes,
    training: bool,
    max_batch: usize,
    node_params: Vec<Vec<PBuf>>,
    dims: &'g [Option<Vec<usize>>],
    b: Builder,
    /// Each node's value; an alias shares its input's, an in-place node its input's buffer.
    value: Vec<ABuf>,
    /// The node whose tensor a node is (itself, or what an alias stands for).
    canonical: Vec<NodeId>,
    scratch: Vec<Vec<ABuf>>,
    /// Gradient buffers, by the node whose value they are the gradient of.
    grads: HashMap<NodeId, ABuf>,
    inputs: Vec<ABuf>,
    target: Option<(ABuf, nnlang_runtime::plan::TargetKind)>,
    output: ABuf,
    /// Carry recurrent states from one run to the next (truncated BPTT).
    carry: bool,
    /// Compute the gradient of the loss with respect to the model's inputs too.
    input_grads: bool,
    /// Each node's carried states.
    carried: Vec<Vec<ABuf>>,
    /// The steps that save the carried states, run last.
    carry_steps: Vec<Step>,
}

impl<'g> Layout<'g> {
    /// The steps of the sequence a node works at every step of: its (first) input is a
    /// sequence and its op works step by step (`rnn` walks the steps itself).
    fn per_step(&self, id: NodeId) -> Option<usize> {
        let node = self.g.node(id);
        let input = node.inputs.first()?;
        let steps = self.shapes.shapes[input.index()].as_ref()?.steps()?;
        node.op.rules().per_step().then_some(steps)
    }

    /// What a node's rules see; for a node that works at every step, one step's view: its
    /// buffers have a row per step, its dimensions are one step's.
    fn step_cx(&self, id: NodeId) -> StepCx<'g> {
        let dims = self.dims;
        let node = self.g.node(id);
        let per = self.per_step(id);
        let view = |b: ABuf| match per {
            Some(t) => one_step(b, t),
            None => b,
        };
        let strip = |d: Option<&'g [usize]>| if per.is_some() { d.and_then(|d| d.get(1..)) } else { d };
        StepCx {
            inputs: node.inputs.iter().map(|i| view(self.value[i.index()])).collect(),
            value: view(self.value[id.index()]),
            params: self.node_params[id.index()].clone(),
            scratch: self.scratch[id.index()]
                .iter()
                .map(|&b| if self.b.fixed.get(b.offset).copied().unwrap_or(true) { b } else { view(b) })
                .collect(),
            in_dims: strip(node.inputs.first().and_then(|i| dims[i.index()].as_deref())),
            out_dims: strip(dims[id.index()].as_deref()),
            in_place: node.in_place,
            training: self.training,
            carry: self.carried[id.index()].clone(),
        }
    }

    fn cols_of(&self, id: NodeId) -> usize {
        self.shapes.shapes[id.index()].as_ref().map_or(0, |s| s.elements().fixed as usize)
    }

    /// Forward steps in node order, and the loss.
    fn forward(&mut self) {
        let g = self.g;
        for id in g.ids() {
            let node = g.node(id);
            self.b.label("");
            let rules = node.op.rules();
            let before = self.b.steps.len();
            self.forward_node(id, rules);
            if self.b.steps.len() > before {
                self.b.label(&node.name);
            }
        }
    }

    /// The forward steps of one node (and, for the loss, the loss step).
    fn forward_node(&mut self, id: NodeId, rules: &dyn crate::ops::Rules) {
        let g = self.g;
        let node = g.node(id);
        {
            match rules.value(self.training) {
                Value::Caller => {
                    let v = ABuf { offset: 0, cols: self.cols_of(id), space: Space::Input(self.inputs.len()) };
                    self.inputs.push(v);
                    self.value[id.index()] = v;
                }
                Value::Alias => {
                    self.canonical[id.index()] = self.canonical[node.inputs[0].index()];
                    self.value[id.index()] = self.value[node.inputs[0].index()];
                }
                Value::Loss => {
                    let Op::Loss(loss) = &node.op else { return };
                    let p = self.canonical[node.inputs[0].index()];
                    let pv = self.value[p.index()];
                    let dp = self.b.buf(pv.cols);
                    self.grads.insert(p, dp);
                    // On a sequence, a loss at every step: a target per step, and the mean
                    // over the steps inside the sequences.
                    let steps = self.per_step(id).unwrap_or(1);
                    let (cols, kind) = loss.target(pv.cols / steps);
                    let t = ABuf { offset: 0, cols: cols * steps, space: Space::Target };
                    self.target = Some((t, kind));
                    let step = loss.step(one_step(pv, steps), one_step(t, steps), one_step(dp, steps));
                    if steps > 1 {
                        self.b.steps.extend(at_every_step(vec![step], steps));
                    } else {
                        self.b.steps.push(step);
                    }
                    self.output = pv;
                }
                Value::Computed => {
                    if self.carry {
                        self.carried[id.index()] = rules.carries().into_iter().map(|w| self.b.pinned(w)).collect();
                    }
                    self.value[id.index()] = if node.in_place {
                        self.value[node.inputs[0].index()]
                    } else {
                        let cols = self.cols_of(id);
                        self.b.buf(cols)
                    };
                    let asked = rules.scratch(&self.step_cx(id), self.max_batch);
                    let per = self.per_step(id).unwrap_or(1);
                    self.scratch[id.index()] = asked
                        .into_iter()
                        .map(|s| match s {
                            Scratch::PerRow(c) => self.b.buf(c.saturating_mul(per)),
                            Scratch::Fixed(len) => self.b.workspace(len),
                        })
                        .collect();
                    let cx = self.step_cx(id);
                    if !cx.carry.is_empty() {
                        self.carry_steps.extend(rules.save_carried(&cx));
                    }
                    let steps = rules.forward(&cx);
                    let per_step = self.per_step(id);
                    self.b.op_steps(steps, rules, per_step);
                }
            }
        }
    }

    /// Backward steps in reverse node order from the loss's gradient, accumulating where a
    /// value has several readers; `dy` buffers are handed on in place when `optimize`.
    fn backward(&mut self, optimize: bool) {
        let g = self.g;
        for id in g.ids().rev() {
            if self.canonical[id.index()] != id {
                continue;
            }
            let Some(&dy) = self.grads.get(&id) else { continue };
            let node = g.node(id);
            let cx = self.step_cx(id);
            let per = self.per_step(id);
            let (canonical, grads, value, b) = (&self.canonical, &mut self.grads, &self.value, &mut self.b);
            let training = self.training;
            let input_grads = self.input_grads;
            let mut dx = |i: usize, may_reuse: bool| -> Dx {
                let input = canonical[node.inputs[i].index()];
                if g.node(input).op.rules().value(training) == Value::Caller {
                    if !input_grads {
                        return Dx::None;
                    }
                    // The model input's gradient, kept to the end of the run.
                    return match grads.get(&input) {
                        Some(&d) => Dx::Into(d, Write::Accumulate),
                        None => {
                            let d = b.pinned(value[input.index()].cols);
                            grads.insert(input, d);
                            Dx::Into(d, Write::Assign)
                        }
                    };
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
            let steps = match per {
                Some(t) => {
                    let mut dx_step = |i: usize, may_reuse: bool| match dx(i, may_reuse) {
                        Dx::Into(d, w) => Dx::Into(one_step(d, t), w),
                        other => other,
                    };
                    node.op.rules().backward(&cx, one_step(dy, t), &self.node_params[id.index()], &mut dx_step)
                }
                None => node.op.rules().backward(&cx, dy, &self.node_params[id.index()], &mut dx),
            };
            self.b.label("");
            self.b.op_steps(steps, node.op.rules(), per);
            self.b.label(&node.name);
        }
        // The next window's states, once the backward pass has read this one's.
        self.b.label("");
        self.b.steps.append(&mut self.carry_steps);
        self.b.steps.push(Step::Update);
        self.b.label("");
    }
}

/// The plan of graph `g` (after the passes, with its shapes).
/// `variable`: the sequences the plan reads may be shorter than its steps.
/// How a plan is laid out beyond its mode: `variable`, the sequences it reads may be shorter
/// than its steps; `carry`, recurrent layers carry their last states into the next run;
/// `input_grads`, the loss's gradient with respect to each model input is computed too.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Extras {
    pub variable: bool,
    pub carry: bool,
    pub input_grads: bool,
}

pub(super) fn lay_out(g: &Graph, shapes: &Shapes, mode: Mode, max_batch: usize, level: Level, x: Extras) -> Plan {
    let Extras { variable, carry, input_grads } = x;
    let training = matches!(mode, Mode::Training(_));
    let (params, node_params, params_len) = crate::shape::param_table(shapes);
    let n = g.nodes.len();
    let dims: Vec<Option<Vec<usize>>> = g.ids().map(|id| fixed_dims(shapes, id)).collect();
    let mut l = Layout {
        g,
        shapes,
        training,
        max_batch,
        node_params,
        dims: &dims,
        b: Builder {
            cols: Vec::new(),
            fixed: Vec::new(),
            pinned: Vec::new(),
            steps: Vec::new(),
            origins: Vec::new(),
            facts: HashMap::new(),
        },
        value: vec![ABuf::NONE; n],
        canonical: g.ids().collect(),
        scratch: vec![Vec::new(); n],
        grads: HashMap::new(),
        inputs: Vec::new(),
        target: None,
        output: ABuf::NONE,
        carry,
        input_grads,
        carried: vec![Vec::new(); n],
        carry_steps: Vec::new(),
    };
    l.forward();
    if training {
        l.backward(level == Level::Full);
        if level == Level::Full {
            conv_makes_batch_norm_grads(&mut l.b);
            convs_recomputed_for_batch_norms(&mut l.b);
        }
    } else {
        if let Some(o) = g.output {
            l.output = l.value[o.index()];
        }
        l.b.label("");
        l.b.steps.append(&mut l.carry_steps);
        l.b.label("");
    }
    let mut input_grad_bufs: Vec<ABuf> = g.inputs.iter().filter_map(|i| l.grads.get(i).copied()).collect();
    // The carried states in node order, relocated with the rest (after the input gradients).
    let n_grads = input_grad_bufs.len();
    input_grad_bufs.extend(l.carried.iter().flatten().copied());
    let (arena_len, naive_len) = liveness::pack(&mut l.b, &mut l.output, &mut input_grad_bufs, training, max_batch);
    let carried = input_grad_bufs.split_off(n_grads);
    let sequence = sequence_of(g, shapes, variable);
    let origins = std::mem::take(&mut l.b.origins);
    let facts = (0..l.b.steps.len()).map(|i| l.b.facts.remove(&i).unwrap_or(StepFacts::SMOOTH)).collect();
    Plan {
        max_batch,
        arena_len,
        naive_len,
        steps: l.b.steps,
        inputs: l.inputs,
        input_ids: g.inputs.iter().map(|&i| crate::shape::ids_bound(g, i)).collect(),
        target: l.target,
        output: l.output,
        params,
        params_len,
        sequence,
        carried,
        origins,
        facts,
        input_grads: input_grad_bufs,
    }
}

/// Where a batch norm's backward step writes its input gradient `dz` (overwriting: nothing
/// else adds to it) for the backward step of the convolution that feeds it alone and reads
/// nothing else (no activation of its own), the two become [`Step::BatchNormBackward`] with
/// `means` — its sums, the two means kept — and [`Step::ConvBackward`]'s
/// [`Step::ConvBnBackward`], which makes `dz` one example at a time as its passes read it:
/// the whole batch's `dz` is never written, and its buffer leaves the arena. Only for the
/// geometries the convolution's register tiles take whole (one group, no dilation; where `dx`
/// is asked for, one the tiles compute: stride 1); elsewhere `dz` would have to be made whole
/// anyway.
fn conv_makes_batch_norm_grads(b: &mut Builder) {
    use nnlang_runtime::plan::Act;
    for i in 1..b.steps.len() {
        let (bn, rest) = b.steps.split_at_mut(i);
        let (bn, conv) = (&mut bn[i - 1], &mut rest[0]);
        let (bx, bdy, gamma, beta, stats, d, relu, pool) = match bn {
            Step::BatchNormBackward { x, dy, gamma, beta, stats, dx: Some((d, Write::Assign)), relu, .. } => {
                (*x, *dy, *gamma, *beta, *stats, *d, *relu, 0)
            }
            Step::BatchNormPoolBackward {
                x, dy, g, gamma, beta, stats, dx: Some((d, Write::Assign)), relu, ..
            } => (*x, *dy, *gamma, *beta, *stats, *d, *relu, g.f),
            _ => continue,
        };
        let &mut Step::ConvBackward { g, f: Act::Identity, x, y, w, dy, dw, db, dx, ws } = conv else { continue };
        let tiles = g.plain() && (dx.is_none() || nnlang_runtime::kernels::implicit::input_grads(&g));
        if dy != d || y != bx || !tiles || d.space != Space::Arena || b.pinned[d.offset] {
            continue;
        }
        let (i_bn, i_conv) = (i - 1, i);
        let elsewhere = b.steps.iter_mut().enumerate().filter(|(j, _)| *j != i_bn && *j != i_conv);
        if elsewhere.flat_map(|(_, s)| s.bufs_mut()).any(|buf| *buf == d) {
            continue;
        }
        match &mut b.steps[i_bn] {
            Step::BatchNormBackward { dx, means, .. } | Step::BatchNormPoolBackward { dx, means, .. } => {
                (*dx, *means) = (None, true);
            }
            _ => continue,
        }
        b.steps[i_conv] = Step::ConvBnBackward { g, x, y, w, dy: bdy, dw, db, dx, ws, gamma, beta, stats, relu, pool };
    }
}

/// Where a convolution cheap enough to compute again ([`nnlang_runtime::kernels::norm::recomputed`]:
/// short patches, one or two input channels) feeds a batch norm alone — its forward step
/// ([`Step::BatchNorm`] or [`Step::BatchNormPool`]) and, after [`conv_makes_batch_norm_grads`],
/// the batch norm's backward step keeping its means and the convolution's
/// [`Step::ConvBnBackward`] the only other readers of its output — the forward pair becomes
/// [`Step::ConvBatchNorm`] and the backward pair [`Step::ConvBatchNormBackward`]: the
/// convolution's output (a first layer's is the largest map of the network) is computed
/// again, a few examples at a time, where the batch norm's passes need it, and its buffer leaves
/// the arena (with a fused max pooling, a buffer of the pooled size keeps each window's peak
/// for the backward pass's sums). The fused steps are the convolution's (its layer's name in
/// reports).
fn convs_recomputed_for_batch_norms(b: &mut Builder) {
    use nnlang_runtime::plan::{Act, Share};
    let names = |s: &mut Step, buf: ABuf| s.bufs_mut().into_iter().any(|x| *x == buf);
    let mut i = 0;
    while i < b.steps.len() {
        let Step::Conv { g, f: Act::Identity, x, w, b: bias, y, .. } = b.steps[i] else {
            i += 1;
            continue;
        };
        let readers: Vec<usize> = (0..b.steps.len()).filter(|&j| j != i && names(&mut b.steps[j], y)).collect();
        let usable = nnlang_runtime::kernels::norm::recomputed(&g) && y.space == Space::Arena && !b.pinned[y.offset];
        let &[j, k, k1] = readers.as_slice() else {
            i += 1;
            continue;
        };
        let forward = match b.steps[j] {
            Step::BatchNorm { x: bx, y: out, gamma, beta, mean, var, stats, eps, relu } if bx == y => {
                Some((out, gamma, beta, mean, var, stats, eps, relu, 0))
            }
            Step::BatchNormPool { x: bx, y: out, g: pg, gamma, beta, mean, var, stats, eps, relu } if bx == y => {
                Some((out, gamma, beta, mean, var, stats, eps, relu, pg.f))
            }
            _ => None,
        };
        let grads = match b.steps[k] {
            Step::BatchNormBackward { x: bx, dgamma, dbeta, dx: None, means: true, .. }
            | Step::BatchNormPoolBackward { x: bx, dgamma, dbeta, dx: None, means: true, .. }
                if bx == y =>
            {
                Some((dgamma, dbeta))
            }
            _ => None,
        };
        let conv_grads = match b.steps[k1] {
            Step::ConvBnBackward { g: cg, x: cx, y: cy, w: cw, dy, dw, db, dx, ws, gamma, beta, stats, relu, pool }
                if (cg, cx, cy, cw) == (g, x, y, w) =>
            {
                Some((dy, dw, db, dx, ws, gamma, beta, stats, relu, pool))
            }
            _ => None,
        };
        let (Some(fwd), Some((dgamma, dbeta)), Some(bwd), true, true) =
            (forward, grads, conv_grads, usable, k1 == k + 1)
        else {
            i += 1;
            continue;
        };
        let (out, gamma, beta, mean, var, stats, eps, relu, pool) = fwd;
        let (dy, dw, db, dx, ws, _, _, _, _, _) = bwd;
        let c = gamma.len;
        // With the max pooling, each window's value at the tap that takes its gradient (the
        // size of the pooled output): the backward pass's sums read them instead of computing
        // the convolution again over the whole map.
        let peaks = (pool > 0).then(|| b.buf(out.cols));
        b.steps[j] =
            Step::ConvBatchNorm { g, x, w, b: bias, y: out, gamma, beta, mean, var, stats, eps, relu, pool, peaks };
        b.steps[k1] = Step::ConvBatchNormBackward {
            g,
            x,
            w,
            b: bias,
            dy,
            dw,
            db,
            dx,
            ws,
            gamma,
            beta,
            dgamma,
            dbeta,
            stats,
            relu,
            pool,
            peaks,
        };
        // The batch norm's forward facts (its meeting, a fused ReLU's kink) but split by the
        // batch, as the convolution is; its backward step's meeting.
        let kink = b.facts.get(&j).and_then(|f| f.kink.clone());
        b.facts.insert(j, StepFacts { share: Share::Batch, kink, meeting: 2 * c + 1 });
        b.facts.insert(k1, StepFacts { share: Share::Batch, kink: None, meeting: 2 * c });
        if let Some(name) = b.origins.get(i).cloned() {
            b.origins[j] = name;
        }
        b.remove_step(k);
        b.remove_step(i);
    }
}

/// How the plan reads sequences: the steps of its (first) sequence input, and whether the
/// output has a row per step.
fn sequence_of(g: &Graph, shapes: &Shapes, variable: bool) -> Option<Sequence> {
    let shape = |id: NodeId| shapes.shapes[id.index()].as_ref();
    let steps = g.inputs.iter().find_map(|&i| shape(i)?.steps())?;
    // The model's output, before the loss the training graph ends in.
    let out = g.output.map(|o| match &g.node(o).op {
        Op::Loss(_) => g.node(o).inputs[0],
        _ => o,
    });
    let per_step_output = out.and_then(shape).is_some_and(|s| s.is_sequence());
    Some(Sequence { steps, variable, per_step_output })
}
