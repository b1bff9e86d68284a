//! Constant expressions: numbers, booleans, strings, bare names, and arithmetic on model
//! parameters. Used for layer arguments, input dimensions and recipe settings.

pub use crate::diag::fmt_num;
use crate::diag::Diagnostic;
use crate::ir::ParamValue;
pub use crate::ops::args::Value;
use crate::syntax::ast::{BinOp, Expr, ExprKind, Span};
use std::collections::HashMap;

/// The names a constant expression may read: a model's parameters.
pub type Env = HashMap<String, ParamValue>;

/// Evaluates a constant expression. Layers, pipelines and calls are not values.
pub fn eval(e: &Expr, env: &Env) -> Result<Value, Diagnostic> {
    match &e.kind {
        ExprKind::Int(v) => Ok(Value::Int(*v)),
        ExprKind::Float(v) => Ok(Value::Float(*v)),
        ExprKind::Percent(v) => Ok(Value::Percent(*v)),
        ExprKind::Bool(b) => Ok(Value::Bool(*b)),
        ExprKind::Str(s) => Ok(Value::Str(s.clone())),
        ExprKind::Ident(name) => Ok(match env.get(name) {
            Some(ParamValue::Int(v)) => Value::Int(*v),
            Some(ParamValue::Float(v)) => Value::Float(*v),
            Some(ParamValue::Bool(v)) => Value::Bool(*v),
            None => Value::Sym(name.clone()),
        }),
        ExprKind::Neg(inner) => match eval(inner, env)? {
            Value::Int(v) => v.checked_neg().map(Value::Int).ok_or_else(|| overflow(e.span)),
            Value::Float(v) => Ok(Value::Float(-v)),
            Value::Percent(v) => Ok(Value::Percent(-v)),
            other => Err(Diagnostic::error(format!("cannot negate {}", other.describe()), inner.span, "not a number")),
        },
        ExprKind::Binary(op, a, b) => {
            let (x, y) = (eval(a, env)?, eval(b, env)?);
            arith(*op, &x, &y, a.span, b.span, e.span)
        }
        ExprKind::Pipeline(_)
        | ExprKind::Group(_)
        | ExprKind::Call { .. }
        | ExprKind::Named(..)
        | ExprKind::Optional(..) => {
            Err(Diagnostic::error("expected a value, found a layer expression", e.span, "a value is expected here"))
        }
    }
}

fn overflow(span: Span) -> Diagnostic {
    Diagnostic::error("integer overflow in constant expression", span, "this overflows a 64-bit integer")
}

fn arith(op: BinOp, x: &Value, y: &Value, xs: Span, ys: Span, span: Span) -> Result<Value, Diagnostic> {
    let num_err = |v: &Value, s: Span| {
        Diagnostic::error(format!("arithmetic needs numbers, found {}", v.describe()), s, "not a number")
    };
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => {
            let r = match op {
                BinOp::Add => a.checked_add(*b),
                BinOp::Sub => a.checked_sub(*b),
                BinOp::Mul => a.checked_mul(*b),
                BinOp::Div => {
                    if *b == 0 {
                        return Err(Diagnostic::error("division by zero", ys, "this is 0"));
                    }
                    // `i64::MIN / -1` overflows (and so does its remainder): checked, both.
                    match a.checked_rem(*b) {
                        Some(0) => a.checked_div(*b),
                        Some(_) => return Ok(Value::Float(*a as f64 / *b as f64)),
                        None => None,
                    }
                }
            };
            r.map(Value::Int).ok_or_else(|| overflow(span))
        }
        _ => {
            let a = x.as_f64().ok_or_else(|| num_err(x, xs))?;
            let b = y.as_f64().ok_or_else(|| num_err(y, ys))?;
            if op == BinOp::Div && b == 0.0 {
                return Err(Diagnostic::error("division by zero", ys, "this is 0"));
            }
            Ok(Value::Float(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::ast::Span;

    fn e(kind: ExprKind) -> Expr {
        Expr { kind, span: Span::default() }
    }
    fn bin(op: BinOp, a: ExprKind, b: ExprKind) -> Expr {
        e(ExprKind::Binary(op, Box::new(e(a)), Box::new(e(b))))
    }

    #[test]
    fn integer_arithmetic_stays_integer_until_it_cannot() {
        let mut env = Env::new();
        env.insert("width".into(), ParamValue::Int(32));
        let w = || ExprKind::Ident("width".into());
        assert_eq!(eval(&bin(BinOp::Mul, ExprKind::Int(2), w()), &env).ok(), Some(Value::Int(64)));
        assert_eq!(eval(&bin(BinOp::Div, w(), ExprKind::Int(2)), &env).ok(), Some(Value::Int(16)));
        assert_eq!(eval(&bin(BinOp::Div, w(), ExprKind::Int(3)), &env).ok(), Some(Value::Float(32.0 / 3.0)));
        assert_eq!(eval(&bin(BinOp::Sub, w(), ExprKind::Float(0.5)), &env).ok(), Some(Value::Float(31.5)));
        assert_eq!(eval(&e(ExprKind::Ident("same".into())), &env).ok(), Some(Value::Sym("same".into())));
    }

    #[test]
    fn errors_instead_of_overflow_or_division_by_zero() {
        let env = Env::new();
        assert!(eval(&bin(BinOp::Mul, ExprKind::Int(i64::MAX), ExprKind::Int(2)), &env).is_err());
        assert!(eval(&bin(BinOp::Div, ExprKind::Int(1), ExprKind::Int(0)), &env).is_err());
        assert!(eval(&e(ExprKind::Neg(Box::new(e(ExprKind::Int(i64::MIN))))), &env).is_err());
        assert!(eval(&bin(BinOp::Add, ExprKind::Bool(true), ExprKind::Int(1)), &env).is_err());
        let min_by_minus_one = eval(&bin(BinOp::Div, ExprKind::Int(i64::MIN), ExprKind::Int(-1)), &env);
        assert_eq!(min_by_minus_one.map_err(|d| d.message), Err("integer overflow in constant expression".to_string()));
    }

    #[test]
    fn numbers_print_as_written() {
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(24.0), "24");
        assert_eq!(fmt_num(-1.0), "-1");
    }
}
