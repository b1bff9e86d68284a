//! Plan steps → calls of their functions in the runtime, with constants. Which function
//! and which arguments come from the step table of the runtime ([`Step::call`]); this file only writes each kind of constant as Rust.

use nnlang_runtime::plan::{ABuf, Act, Geometry, Lit, PBuf, PoolOp, Space, Step, Write};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

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
    // The table writes each function's constructor (`LeakyRelu(0.01)`, `Gelu { tanh: true }`).
    let text = format!("::nnlang_runtime::plan::Act::{}", f.rust());
    text.parse().unwrap_or_else(|_| {
        let msg = format!("nnlang: no Rust form for the activation {f:?}");
        quote! { compile_error!(#msg) }
    })
}

fn write(w: &Write) -> TokenStream {
    match w {
        Write::Assign => quote! { ::nnlang_runtime::plan::Write::Assign },
        Write::Accumulate => quote! { ::nnlang_runtime::plan::Write::Accumulate },
    }
}

fn geometry(g: &Geometry) -> TokenStream {
    let (h, w, d, k, f, s, p, oh, ow) = (n(g.h), n(g.w), n(g.d), n(g.k), n(g.f), n(g.s), n(g.p), n(g.oh), n(g.ow));
    let (dil, groups) = (n(g.dil), n(g.groups));
    quote! {
        ::nnlang_runtime::plan::Geometry {
            h: #h, w: #w, d: #d, k: #k, f: #f, s: #s, p: #p, oh: #oh, ow: #ow, dil: #dil, groups: #groups
        }
    }
}

fn pool_op(op: &PoolOp) -> TokenStream {
    match op {
        PoolOp::Max => quote! { ::nnlang_runtime::plan::PoolOp::Max },
        PoolOp::Avg => quote! { ::nnlang_runtime::plan::PoolOp::Avg },
        PoolOp::L2 => quote! { ::nnlang_runtime::plan::PoolOp::L2 },
    }
}

fn lit(l: &Lit) -> TokenStream {
    match l {
        Lit::ABuf(b) => abuf(b),
        Lit::PBuf(b) => pbuf(b),
        Lit::Act(f) => act(f),
        Lit::Geometry(g) => geometry(g),
        Lit::PoolOp(op) => pool_op(op),
        Lit::Write(w) => write(w),
        Lit::Usize(v) => n(*v).into_token_stream(),
        Lit::F64(v) => Literal::f64_suffixed(*v).into_token_stream(),
        Lit::Bool(true) => quote! { true },
        Lit::Bool(false) => quote! { false },
        Lit::Dx(Some((b, w))) => {
            let (b, w) = (abuf(b), write(w));
            quote! { ::std::option::Option::Some((#b, #w)) }
        }
        Lit::Dx(None) => quote! { ::std::option::Option::None },
        Lit::MaybeABuf(Some(b)) => {
            let b = abuf(b);
            quote! { ::std::option::Option::Some(#b) }
        }
        Lit::MaybeABuf(None) => quote! { ::std::option::Option::None },
        Lit::ABufs(bs) => {
            let bs = bs.iter().map(abuf);
            quote! { &[#(#bs),*] }
        }
    }
}

use quote::ToTokens;

/// The statements that run `steps` on the context `cx` (the update is left to the caller),
/// each ending in `?`.
pub fn body(steps: &[Step]) -> TokenStream {
    let calls = steps.iter().filter_map(Step::call).map(|(path, args)| {
        let path = path.iter().map(|seg| format_ident!("{}", seg));
        let args = args.iter().map(lit);
        quote! { ::nnlang_runtime #(::#path)*(cx, #(#args),*)?; }
    });
    quote! { #(#calls)* }
}
