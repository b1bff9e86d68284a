//! Source text to spanned AST: the pest grammar (`nnlang.pest`) and the conversion of its
//! parse tree into [`ast`] types. Nothing here evaluates or resolves names.

pub mod ast;
pub mod fmt;
mod parse;

pub use fmt::format;
pub use parse::{parse, parse_setting};
