//! IR graph → execution plan. The passes run first ([`crate::passes`]); then forward steps,
//! the loss, the backward pass and the update are laid out from each op's rules
//! ([`crate::ops::Rules`]), and liveness analysis gives every arena buffer its offset, so that
//! buffers whose lifetimes do not overlap share memory. Model inputs and the target are read
//! where the caller holds them and take no arena space.

use crate::diag::Diagnostic;
use crate::ir::{Activation, Dim, Graph, Op};
use crate::passes;
use crate::shape::Model;
use nnlang_runtime::plan::Plan;

mod layout;
mod liveness;

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

/// Whether `loss` fits the model's last layer: cross-entropy needs a final softmax, binary
/// cross-entropy a final sigmoid (each is fused with the loss). Checked by `check` and before
/// training alike.
pub fn loss_fits(model: &Model, loss: Loss) -> Option<Diagnostic> {
    let out_node = model.graph.node(model.graph.output?);
    let ends_in_sigmoid = matches!(&out_node.op, Op::Activation(a) if a.function == Activation::Sigmoid);
    match loss {
        Loss::CrossEntropy(_) if !matches!(out_node.op, Op::Softmax(_)) => Some(
            Diagnostic::error(
                "`loss = cross_entropy` needs the model to end in `softmax`",
                out_node.span,
                "the model ends here",
            )
            .with_help("add `-> softmax` at the end of the output pipeline (it is fused with the loss)"),
        ),
        Loss::BinaryCrossEntropy if !ends_in_sigmoid => Some(
            Diagnostic::error(
                "`loss = binary_cross_entropy` needs the model to end in `sigmoid`",
                out_node.span,
                "the model ends here",
            )
            .with_help("add `-> sigmoid` at the end of the output pipeline (it is fused with the loss)"),
        ),
        Loss::CrossEntropy(_) | Loss::BinaryCrossEntropy | Loss::MeanSquaredError => None,
    }
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
        let Some(shape) = model.shapes.shapes[i.index()].as_ref() else { continue };
        if let (Some(Dim::Seq { name, max: None }), Some(features)) = (shape.0.first(), shape.0.get(1..)) {
            let n = g.node(i);
            let rest: Vec<String> = features.iter().map(|d| d.to_string()).collect();
            errors.push(
                Diagnostic::error(
                    format!("`{}` is a sequence of variable length with no longest length", n.name),
                    n.span,
                    "how long may a sequence be?",
                )
                .with_note("a plan holds every step of the longest sequence it accepts; `nnlangc check` needs no bound, running does")
                .with_help(format!("give the longest: `input {}: [{name} <= 100, {}]`", n.name, rest.join(", "))),
            );
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
    let Some(_) = g.output else {
        return Err(vec![Diagnostic::error("the model has no output", Default::default(), "")]);
    };
    if let Mode::Training(loss) = mode {
        errors.extend(loss_fits(model, loss));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Builds the plan with the passes of `level`.
pub fn build_at(model: &Model, mode: Mode, max_batch: usize, level: Level) -> Result<Plan, Vec<Diagnostic>> {
    build_with(model, mode, max_batch, level, layout::Extras::default())
}

/// The unoptimised training plan that also computes the loss's gradient with respect to each
/// model input (`Plan::input_grads`), with dropout off, for a gradient check.
pub fn build_checking_inputs(model: &Model, loss: Loss, max_batch: usize) -> Result<Plan, Vec<Diagnostic>> {
    // Dropout off: every unit kept, so that the checked loss is the model's, not a mask's.
    let mut checked = model.clone();
    for n in &mut checked.graph.nodes {
        if let Op::Dropout(d) = &mut n.op {
            d.keep = 1.0;
        }
    }
    build_with(
        &checked,
        Mode::Training(loss),
        max_batch,
        Level::None,
        layout::Extras { input_grads: true, ..Default::default() },
    )
}

/// Builds the plan of a model trained (or run) on a stream in windows: each `rnn` starts a
/// window from the state it ended the previous one with (truncated backpropagation through
/// time, `bptt = n`); the plan's `carried` buffers hold those states between runs.
pub fn build_carrying(model: &Model, mode: Mode, max_batch: usize) -> Result<Plan, Vec<Diagnostic>> {
    build_with(model, mode, max_batch, Level::Full, layout::Extras { carry: true, ..Default::default() })
}

fn build_with(
    model: &Model,
    mode: Mode,
    max_batch: usize,
    level: Level,
    extras: layout::Extras,
) -> Result<Plan, Vec<Diagnostic>> {
    check(model, mode)?;
    if extras.carry {
        let g = &model.graph;
        if let Some(n) = g.nodes.iter().find(|n| matches!(n.op, Op::Bidirectional(_))) {
            return Err(vec![Diagnostic::error(
                "a bidirectional layer cannot carry its state from one window of a stream to the next",
                n.span,
                "reads each window backwards too",
            )
            .with_note("`bptt` carries each recurrent layer's last state into the next window; the reverse direction would need the future")]);
        }
    }
    let mut g = graph_for(model, mode, level);
    let variable = at_longest(&mut g);
    let (shapes, errors) = crate::shape::infer(&g);
    if let Some(e) = errors.first() {
        return Err(vec![e.to_diagnostic(&g)]);
    }
    Ok(layout::lay_out(&g, &shapes, mode, max_batch, level, layout::Extras { variable, ..extras }))
}

/// Gives every sequence input of variable length its longest length (`seq <= 29` is planned
/// as 29 steps, shorter sequences padded); returns whether there was one.
fn at_longest(g: &mut Graph) -> bool {
    let mut variable = false;
    for i in g.inputs.clone() {
        if let Op::Input(input) = &mut g.nodes[i.index()].op {
            if let Some(Dim::Seq { name, max: Some(len) }) = input.dims.first().cloned() {
                input.dims[0] = Dim::Steps { name, len };
                variable = true;
            }
        }
    }
    variable
}
