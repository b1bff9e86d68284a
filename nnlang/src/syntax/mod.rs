//! Source text to spanned AST: the pest grammar (`nnlang.pest`) and the conversion of its
//! parse tree into [`ast`] types. Nothing here evaluates or resolves names.

pub mod ast;
mod parse;

pub use parse::{parse, parse_setting};
