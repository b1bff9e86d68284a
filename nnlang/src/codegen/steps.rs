//! One plan step → one call of its function in `nnlang_runtime::ops`, with constants.

use nnlang_runtime::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Space, Step, Write};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

fn n(v: usize) -> Literal {
    Literal::usize_unsuffixed(v)
}

fn abuf(b: &ABuf) -> TokenStream {
    let (o, c) = (n(b.offset), n(b.cols));
    let space = match b.space {
        Space::Arena => quote! { ::nnlang_runtime::plan::Space::Arena },
        Space::Input(i) => {
            let i = n(i);
            quote! { ::nnlang_runtime::plan::Space::Input(#i) }
        }
        Space::Target => quote! { ::nnlang_runtime::plan::Space::Target },
    };
    quote! { ::nnlang_runtime::plan::ABuf { offset: #o, cols: #c, space: #space } }
}

fn pbuf(b: &PBuf) -> TokenStream {
    let (o, l) = (n(b.offset), n(b.len));
    quote! { ::nnlang_runtime::plan::PBuf { offset: #o, len: #l } }
}

fn act(f: &Act) -> TokenStream {
    match f {
        Act::Sigmoid => quote! { ::nnlang_runtime::plan::Act::Sigmoid },
        Act::Tanh => quote! { ::nnlang_runtime::plan::Act::Tanh },
        Act::Relu => quote! { ::nnlang_runtime::plan::Act::Relu },
        Act::LeakyRelu(a) => {
            let a = Literal::f64_suffixed(*a);
            quote! { ::nnlang_runtime::plan::Act::LeakyRelu(#a) }
        }
        Act::Identity => quote! { ::nnlang_runtime::plan::Act::Identity },
    }
}

fn write(w: &Write) -> TokenStream {
    match w {
        Write::Assign => quote! { ::nnlang_runtime::plan::Write::Assign },
        Write::Accumulate => quote! { ::nnlang_runtime::plan::Write::Accumulate },
    }
}

fn geometry(g: &Geometry) -> TokenStream {
    let (h, w, d, k, f, s, p, oh, ow) = (n(g.h), n(g.w), n(g.d), n(g.k), n(g.f), n(g.s), n(g.p), n(g.oh), n(g.ow));
    quote! { ::nnlang_runtime::plan::Geometry { h: #h, w: #w, d: #d, k: #k, f: #f, s: #s, p: #p, oh: #oh, ow: #ow } }
}

fn pool_op(op: &PoolOp) -> TokenStream {
    match op {
        PoolOp::Max => quote! { ::nnlang_runtime::plan::PoolOp::Max },
        PoolOp::Avg => quote! { ::nnlang_runtime::plan::PoolOp::Avg },
        PoolOp::L2 => quote! { ::nnlang_runtime::plan::PoolOp::L2 },
    }
}

fn dx(d: &Option<(ABuf, Write)>) -> TokenStream {
    match d {
        Some((b, w)) => {
            let (b, w) = (abuf(b), write(w));
            quote! { ::std::option::Option::Some((#b, #w)) }
        }
        None => quote! { ::std::option::Option::None },
    }
}

/// The statements of a method body that runs `steps` (the update is left to the caller).
pub fn body(steps: &[Step]) -> TokenStream {
    let mem = quote! { ::nnlang_runtime::interp::Mem { arena: &mut *arena, inputs: &inputs, target } };
    let ops = quote! { ::nnlang_runtime::ops };
    let calls = steps.iter().map(|s| match s {
        Step::Dense { x, w, b, y } => {
            let (x, w, b, y) = (abuf(x), pbuf(w), pbuf(b), abuf(y));
            quote! { #ops::dense(rows, #mem, params, #x, #w, #b, #y); }
        }
        Step::DenseAct { f, x, w, b, y } => {
            let (f, x, w, b, y) = (act(f), abuf(x), pbuf(w), pbuf(b), abuf(y));
            quote! { #ops::dense_act(rows, #mem, params, #f, #x, #w, #b, #y); }
        }
        Step::Activation { f, x, y } => {
            let (f, x, y) = (act(f), abuf(x), abuf(y));
            quote! { #ops::activation(rows, #mem, #f, #x, #y); }
        }
        Step::ActivationInPlace { f, y } => {
            let (f, y) = (act(f), abuf(y));
            quote! { #ops::activation_in_place(rows, #mem, #f, #y); }
        }
        Step::Dropout { keep, x, mask, y } => {
            let (k, x, m, y) = (Literal::f64_suffixed(*keep), abuf(x), abuf(mask), abuf(y));
            quote! { #ops::dropout(rows, #mem, &mut *rng, #k, #x, #m, #y); }
        }
        Step::DropoutInPlace { keep, mask, y } => {
            let (k, m, y) = (Literal::f64_suffixed(*keep), abuf(mask), abuf(y));
            quote! { #ops::dropout_in_place(rows, #mem, &mut *rng, #k, #m, #y); }
        }
        Step::Softmax { x, y } => {
            let (x, y) = (abuf(x), abuf(y));
            quote! { #ops::softmax(rows, #mem, #x, #y); }
        }
        Step::Add { xs, y } => {
            let (xs, y) = (xs.iter().map(abuf), abuf(y));
            quote! { #ops::add(rows, #mem, &[#(#xs),*], #y); }
        }
        Step::Concat { xs, y } => {
            let (xs, y) = (xs.iter().map(abuf), abuf(y));
            quote! { #ops::concat(rows, #mem, &[#(#xs),*], #y); }
        }
        Step::SoftmaxCrossEntropy { logits, target, dlogits } => {
            let (l, t, d) = (abuf(logits), abuf(target), abuf(dlogits));
            quote! { loss = #ops::softmax_cross_entropy(rows, #mem, #l, #t, #d)?; }
        }
        Step::CrossEntropy { probs, target, dprobs } => {
            let (l, t, d) = (abuf(probs), abuf(target), abuf(dprobs));
            quote! { loss = #ops::cross_entropy(rows, #mem, #l, #t, #d)?; }
        }
        Step::SigmoidBinaryCrossEntropy { logits, target, dlogits } => {
            let (l, t, d) = (abuf(logits), abuf(target), abuf(dlogits));
            quote! { loss = #ops::sigmoid_binary_cross_entropy(rows, #mem, #l, #t, #d); }
        }
        Step::BinaryCrossEntropy { probs, target, dprobs } => {
            let (l, t, d) = (abuf(probs), abuf(target), abuf(dprobs));
            quote! { loss = #ops::binary_cross_entropy(rows, #mem, #l, #t, #d); }
        }
        Step::MeanSquaredError { y, target, dy } => {
            let (l, t, d) = (abuf(y), abuf(target), abuf(dy));
            quote! { loss = #ops::mean_squared_error(rows, #mem, #l, #t, #d); }
        }
        Step::DenseBackward { x, w, dy, dw, db, dx: d } => {
            let (x, w, dy, dw, db, d) = (abuf(x), pbuf(w), abuf(dy), pbuf(dw), pbuf(db), dx(d));
            quote! { #ops::dense_backward(rows, #mem, params, &mut *grads, #x, #w, #dy, #dw, #db, #d); }
        }
        Step::DenseActBackward { f, x, y, w, dy, dw, db, dx: d } => {
            let (f, x, y, w, dy, dw, db, d) = (act(f), abuf(x), abuf(y), pbuf(w), abuf(dy), pbuf(dw), pbuf(db), dx(d));
            quote! { #ops::dense_act_backward(rows, #mem, params, &mut *grads, #f, #x, #y, #w, #dy, #dw, #db, #d); }
        }
        Step::ActivationBackward { f, x, y, dy, dx: d, write: w } => {
            let (f, x, y, dy, d, w) = (act(f), abuf(x), abuf(y), abuf(dy), abuf(d), write(w));
            quote! { #ops::activation_backward(rows, #mem, #f, #x, #y, #dy, #d, #w); }
        }
        Step::ActivationBackwardInPlace { f, y, d } => {
            let (f, y, d) = (act(f), abuf(y), abuf(d));
            quote! { #ops::activation_backward_in_place(rows, #mem, #f, #y, #d); }
        }
        Step::DropoutBackward { mask, dy, dx: d, write: w } => {
            let (m, dy, d, w) = (abuf(mask), abuf(dy), abuf(d), write(w));
            quote! { #ops::dropout_backward(rows, #mem, #m, #dy, #d, #w); }
        }
        Step::DropoutBackwardInPlace { mask, d } => {
            let (m, d) = (abuf(mask), abuf(d));
            quote! { #ops::dropout_backward_in_place(rows, #mem, #m, #d); }
        }
        Step::SoftmaxBackward { y, dy, dx: d, write: w } => {
            let (y, dy, d, w) = (abuf(y), abuf(dy), abuf(d), write(w));
            quote! { #ops::softmax_backward(rows, #mem, #y, #dy, #d, #w); }
        }
        Step::Copy { x, x_col, y, write: w } => {
            let (x, c, y, w) = (abuf(x), n(*x_col), abuf(y), write(w));
            quote! { #ops::copy(rows, #mem, #x, #c, #y, #w); }
        }
        Step::Conv { g, f, x, w, b, y, ws } => {
            let (g, f, x, w, b, y, ws) = (geometry(g), act(f), abuf(x), pbuf(w), pbuf(b), abuf(y), abuf(ws));
            quote! { #ops::conv(rows, #mem, params, #g, #f, #x, #w, #b, #y, #ws); }
        }
        Step::Local { g, f, x, w, b, y, ws } => {
            let (g, f, x, w, b, y, ws) = (geometry(g), act(f), abuf(x), pbuf(w), pbuf(b), abuf(y), abuf(ws));
            quote! { #ops::local(rows, #mem, params, #g, #f, #x, #w, #b, #y, #ws); }
        }
        Step::Pool { op, g, x, y } => {
            let (op, g, x, y) = (pool_op(op), geometry(g), abuf(x), abuf(y));
            quote! { #ops::pool(rows, #mem, #op, #g, #x, #y); }
        }
        Step::Maxout { pieces, z, y } => {
            let (p, z, y) = (n(*pieces), abuf(z), abuf(y));
            quote! { #ops::maxout(rows, #mem, #p, #z, #y); }
        }
        Step::ConvBackward { g, f, x, y, w, dy, dw, db, dx: d, ws } => {
            let (g, f, x, y, w, dy, dw, db, d, ws) = (geometry(g), act(f), abuf(x), abuf(y), pbuf(w), abuf(dy), pbuf(dw), pbuf(db), dx(d), abuf(ws));
            quote! { #ops::conv_backward(rows, #mem, params, &mut *grads, #g, #f, #x, #y, #w, #dy, #dw, #db, #d, #ws); }
        }
        Step::LocalBackward { g, f, x, y, w, dy, dw, db, dx: d, ws } => {
            let (g, f, x, y, w, dy, dw, db, d, ws) = (geometry(g), act(f), abuf(x), abuf(y), pbuf(w), abuf(dy), pbuf(dw), pbuf(db), dx(d), abuf(ws));
            quote! { #ops::local_backward(rows, #mem, params, &mut *grads, #g, #f, #x, #y, #w, #dy, #dw, #db, #d, #ws); }
        }
        Step::PoolBackward { op, g, x, y, dy, dx: d, write: w } => {
            let (op, g, x, y, dy, d, w) = (pool_op(op), geometry(g), abuf(x), abuf(y), abuf(dy), abuf(d), write(w));
            quote! { #ops::pool_backward(rows, #mem, #op, #g, #x, #y, #dy, #d, #w); }
        }
        Step::MaxoutBackward { pieces, z, y, dy, dz, write: w } => {
            let (p, z, y, dy, dz, w) = (n(*pieces), abuf(z), abuf(y), abuf(dy), abuf(dz), write(w));
            quote! { #ops::maxout_backward(rows, #mem, #p, #z, #y, #dy, #dz, #w); }
        }
        Step::Update => quote! {},
    });
    quote! { #(#calls)* }
}
