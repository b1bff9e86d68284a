//! The spanned abstract syntax tree. Every node records the byte range of the source it
//! came from, so that any later stage can point at the user's text. The AST is a faithful
//! image of what was written: no evaluation, no name resolution.

use std::fmt;

/// A byte range in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span that covers both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A name as written, with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
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
    pub models: Vec<Model>,
    pub blocks: Vec<Block>,
}

/// `model Name(params…) { statements }`
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub params: Vec<Param>,
    pub inputs: Vec<InputDecl>,
    pub lets: Vec<Let>,
    /// The bare pipeline statements; a well-formed model has exactly one.
    pub outputs: Vec<Expr>,
    pub span: Span,
}

/// `name = default` in a model's parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
    pub span: Span,
}

/// `input name: [dims]`
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub name: Ident,
    /// The dimensions; with [`InputDecl::steps`], the first is the sequence's length.
    pub dims: Vec<Expr>,
    /// `seq = n` or `seq <= n` as the first dimension: a sequence of `n` steps, or of 1 to `n`.
    pub steps: Option<StepsDecl>,
    pub span: Span,
}

/// The step dimension of a sequence input, written with its length.
#[derive(Clone, Debug, PartialEq)]
pub struct StepsDecl {
    pub name: Ident,
    /// `seq <= n` (any length up to n) rather than `seq = n`.
    pub at_most: bool,
    pub span: Span,
}

/// `let name = pipeline`
#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `a -> b -> c` (two or more stages).
    Pipeline(Vec<Expr>),
    /// `layer as name`
    Named(Box<Expr>, Ident),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// `element?param`; the parameter may be missing, which lowering reports.
    Optional(Box<Expr>, Option<Ident>),
    Int(i64),
    Float(f64),
    /// `10%`, stored as written (10.0).
    Percent(f64),
    Bool(bool),
    Str(String),
    Ident(String),
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
    /// `[ pipeline ]`
    Group(Box<Expr>),
}

/// One argument of a call: positional or `name = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Train,
    Data,
    Search,
    Ensemble,
}

impl BlockKind {
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
    pub kind: BlockKind,
    pub target: Ident,
    /// The data set of a `train … on …` block.
    pub on: Option<Ident>,
    pub entries: Vec<Entry>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: EntryKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntryKind {
    /// `key.path = value`
    Assign(Vec<Ident>, Expr),
    /// `key.path ~ distribution`
    Sample(Vec<Ident>, Expr),
    /// `key { … }` or `key name { … }`
    Block { key: Ident, name: Option<Ident>, entries: Vec<Entry> },
}
