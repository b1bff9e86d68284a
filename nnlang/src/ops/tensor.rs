//! The values ops compute, as the compiler sees them: shapes (a sequence's steps included),
//! element counts, and the index of a node in a graph (which shape errors name).

use serde::Serialize;
use std::fmt;

/// The index of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The node's position in its graph's list of nodes.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One dimension of a shape: a number, or a sequence's step dimension (always the first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A dimension of this size.
    Fixed(usize),
    /// The steps of a sequence whose length varies from example to example (`seq`), with
    /// the longest a plan accepts when declared (`seq <= 29`).
    Seq {
        /// The dimension's name as declared (`seq`).
        name: String,
        /// The longest sequence a plan accepts, when declared.
        max: Option<usize>,
    },
    /// The steps of a sequence of known length: declared (`seq = 28`), an `rnn`'s steps
    /// over `[28, f]`, or a variable length planned at its longest.
    Steps {
        /// The dimension's name as declared (`seq`), or the rnn's for rows of an array.
        name: String,
        /// The number of steps.
        len: usize,
    },
}

impl Dim {
    /// A sequence's variable length without a declared longest.
    pub fn seq(name: impl Into<String>) -> Dim {
        Dim::Seq { name: name.into(), max: None }
    }
    /// Whether this is a step dimension (of a fixed or a variable length).
    pub fn is_steps(&self) -> bool {
        !matches!(self, Dim::Fixed(_))
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Seq { name, max: None } => f.write_str(name),
            Dim::Seq { name, max: Some(m) } => write!(f, "{name} <= {m}"),
            Dim::Steps { name, len } => write!(f, "{name} = {len}"),
        }
    }
}

/// A number as a number, a step dimension as it is written (`"seq"`, `"seq <= 29"`).
impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_u64(*n as u64),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// A shape without the batch dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of fixed dimensions.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }
    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// The name of the sequence dimension, if the first dimension is one of variable length.
    pub fn seq(&self) -> Option<&str> {
        match self.0.first() {
            Some(Dim::Seq { name, .. }) => Some(name),
            _ => None,
        }
    }
    /// Whether the first dimension is a sequence's steps (of a fixed or a variable length):
    /// layers then work at every step.
    pub fn is_sequence(&self) -> bool {
        self.0.first().is_some_and(Dim::is_steps)
    }
    /// The number of steps of a sequence of known length.
    pub fn steps(&self) -> Option<usize> {
        match self.0.first() {
            Some(Dim::Steps { len, .. }) => Some(*len),
            _ => None,
        }
    }
    /// The number of elements, as `fixed` for a fixed shape (a sequence of known length
    /// included) or `per_step · seq` for a sequence of variable length.
    pub fn elements(&self) -> Elems {
        let mut n: u64 = 1;
        let mut seq = false;
        for d in &self.0 {
            match d {
                Dim::Fixed(k) | Dim::Steps { len: k, .. } => n = n.saturating_mul(*k as u64),
                Dim::Seq { .. } => seq = true,
            }
        }
        if seq {
            Elems { fixed: 0, per_step: n, per_step_sq: 0 }
        } else {
            Elems { fixed: n, per_step: 0, per_step_sq: 0 }
        }
    }
    /// The dimensions after the first, when all of them are fixed.
    pub fn last(&self) -> Option<usize> {
        match self.0.last() {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A count of elements (or bytes) that may grow with the sequence length:
/// `fixed + per_step · seq + per_step_sq · seq²`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Elems {
    /// Elements that do not depend on the sequence length.
    pub fixed: u64,
    /// Elements per step of the sequence.
    pub per_step: u64,
    /// Elements per square of the number of steps (attention's scores: every step against
    /// every step).
    #[serde(skip_serializing_if = "is_zero")]
    pub per_step_sq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Elems {
    /// Both counts times `k` (saturating).
    pub fn scale(self, k: u64) -> Elems {
        Elems {
            fixed: self.fixed.saturating_mul(k),
            per_step: self.per_step.saturating_mul(k),
            per_step_sq: self.per_step_sq.saturating_mul(k),
        }
    }
}

impl std::ops::Add for Elems {
    type Output = Elems;
    fn add(self, o: Elems) -> Elems {
        Elems {
            fixed: self.fixed.saturating_add(o.fixed),
            per_step: self.per_step.saturating_add(o.per_step),
            per_step_sq: self.per_step_sq.saturating_add(o.per_step_sq),
        }
    }
}
