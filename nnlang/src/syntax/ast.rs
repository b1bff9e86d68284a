//! The spanned abstract syntax tree. Every node records the byte range of the source it
//! came from, so that any later stage can point at the user's text. The AST is a faithful
//! image of what was written: no evaluation, no name resolution.

use std::fmt;

pub use crate::diag::Span;

/// A name as written, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A whole source file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    /// The `model` blocks, in order.
    pub models: Vec<Model>,
    /// The `block` definitions (reusable sub-networks, used like layers), in order.
    pub defs: Vec<Model>,
    /// The `train`, `data`, `search` and `ensemble` blocks, in order.
    pub blocks: Vec<Block>,
}

/// `model Name(params…) { statements }`, or a reusable `block Name(params…) { statements }`
/// (one `input` without dimensions: it takes the shape of the value flowing in).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// A `block` rather than a `model`.
    pub is_block: bool,
    /// The model's name.
    pub name: Ident,
    /// Its parameters (`model M(N = 3)`).
    pub params: Vec<Param>,
    /// Its inputs.
    pub inputs: Vec<InputDecl>,
    /// Its `let` bindings, in order.
    pub lets: Vec<Let>,
    /// The bare pipeline statements; a well-formed model has exactly one.
    pub outputs: Vec<Expr>,
    /// The whole block.
    pub span: Span,
}

/// `name = default` in a model's (or block's) parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// Its default value, if any (a block's parameter without one must be given at each use).
    pub default: Option<Expr>,
    /// The declaration.
    pub span: Span,
}

/// `input name: [dims]`
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    /// The input's name.
    pub name: Ident,
    /// The dimensions; with [`InputDecl::steps`], the first is the sequence's length.
    pub dims: Vec<Expr>,
    /// `seq = n` or `seq <= n` as the first dimension: a sequence of `n` steps, or of 1 to `n`.
    pub steps: Option<StepsDecl>,
    /// Whether `: [dims]` is written (a model's input needs it, a block's has none).
    pub has_dims: bool,
    /// `ids < n` after the dimensions: every value is a token id in `0..n`.
    pub ids: Option<Expr>,
    /// The declaration.
    pub span: Span,
}

/// The step dimension of a sequence input, written with its length.
#[derive(Clone, Debug, PartialEq)]
pub struct StepsDecl {
    /// The dimension's name (`seq`).
    pub name: Ident,
    /// `seq <= n` (any length up to n) rather than `seq = n`.
    pub at_most: bool,
    /// The dimension as written.
    pub span: Span,
}

/// `let name = pipeline`
#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    /// The bound name.
    pub name: Ident,
    /// The pipeline it names.
    pub value: Expr,
    /// The whole binding.
    pub span: Span,
}

/// An expression: a pipeline, a layer call, a pattern, a number, a name.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is written.
    pub span: Span,
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `a -> b -> c` (two or more stages).
    Pipeline(Vec<Expr>),
    /// `layer as name`
    Named(Box<Expr>, Ident),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `-a`.
    Neg(Box<Expr>),
    /// `element?param`; the parameter may be missing, which lowering reports.
    Optional(Box<Expr>, Option<Ident>),
    /// An integer literal.
    Int(i64),
    /// A real literal.
    Float(f64),
    /// `10%`, stored as written (10.0).
    Percent(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string literal.
    Str(String),
    /// A name: a binding, a parameter, an input, or a bare word.
    Ident(String),
    /// `name(args)`: a layer or a setting's call.
    Call {
        /// The called name.
        name: Ident,
        /// Its arguments, in order.
        args: Vec<Arg>,
    },
    /// `[ pipeline ]`
    Group(Box<Expr>),
}

/// One argument of a call: positional or `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The argument's name, when given as `name = value`.
    pub name: Option<Ident>,
    /// Its value.
    pub value: Expr,
}

/// Which recipe block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `train Model on data { … }`
    Train,
    /// `data name { … }`
    Data,
    /// `search Model { … }`
    Search,
    /// `ensemble Model { … }`
    Ensemble,
}

impl BlockKind {
    /// The block's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            BlockKind::Train => "train",
            BlockKind::Data => "data",
            BlockKind::Search => "search",
            BlockKind::Ensemble => "ensemble",
        }
    }
}

/// `train Model on data { … }`, `data name { … }`, `search Model { … }`,
/// `ensemble Model { … }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Which block.
    pub kind: BlockKind,
    /// The model (or data set) it is about.
    pub target: Ident,
    /// The data set of a `train … on …` block.
    pub on: Option<Ident>,
    /// Its entries, in order.
    pub entries: Vec<Entry>,
    /// The whole block.
    pub span: Span,
}

/// One line of a recipe block.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// What it says.
    pub kind: EntryKind,
    /// Where it is written.
    pub span: Span,
}

/// The kinds of recipe entry.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    /// `key.path = value`
    Assign(Vec<Ident>, Expr),
    /// `key.path ~ distribution`
    Sample(Vec<Ident>, Expr),
    /// `key { … }` or `key name { … }`
    Block {
        /// The block's key.
        key: Ident,
        /// Its name, if any (`stage coarse { … }`).
        name: Option<Ident>,
        /// Its entries.
        entries: Vec<Entry>,
    },
}
