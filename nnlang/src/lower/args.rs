//! A layer call's arguments handed to the op catalogue (`crate::ops::args`) as values:
//! each constant expression evaluated (an error kept for when the op reads it, so errors come
//! in the order the op reads its arguments), each call kept as a call with its own arguments.

use super::eval::{eval, Env};
use crate::diag::{Diagnostic, Span};
use crate::ops::args::{Call, Given, GivenArg};
use crate::ops::Op;
use crate::syntax::ast::{Arg, Expr, ExprKind};

pub use crate::ops::args::{example, is_layer, is_merge, suggest_layer};

/// The value of an argument as the ops read it.
fn given(e: &Expr, env: &Env) -> Given {
    match &e.kind {
        ExprKind::Call { name, args } => {
            Given::Call(Call { name: name.name.clone(), name_span: name.span, args: given_args(args, env) })
        }
        _ => Given::Value(eval(e, env)),
    }
}

/// Arguments as the ops read them.
pub fn given_args(args: &[Arg], env: &Env) -> Vec<GivenArg> {
    args.iter()
        .map(|a| GivenArg {
            name: a.name.as_ref().map(|n| (n.name.clone(), n.span)),
            value: given(&a.value, env),
            span: a.value.span,
        })
        .collect()
}

/// Builds the op of the layer call `kind(args)`.
pub fn build(kind: &str, call: Span, args: &[Arg], env: &Env) -> Result<Op, Diagnostic> {
    let mut params: Vec<String> = env.keys().cloned().collect();
    params.sort();
    crate::ops::args::build(kind, call, &given_args(args, env), &params)
}
