//! The `ndarray` face of a model: the error an array of the wrong shape gets. (`ndarray`
//! itself is re-exported as `nnlang_runtime::ndarray`, for generated code and its users.)

/// An array that does not fit the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArrayError {
    /// Each row must hold `expected` values (the model's input), it holds `found`.
    Width {
        /// Values per row the model reads.
        expected: usize,
        /// Values per row given.
        found: usize,
    },
    /// The arrays of a model's inputs must have the same rows: the first has `expected`, one
    /// has `found`.
    Rows {
        /// Rows of the first input.
        expected: usize,
        /// Rows of another.
        found: usize,
    },
    /// The model reads `expected` inputs; `found` arrays were given.
    Inputs {
        /// The model's inputs.
        expected: usize,
        /// Arrays given.
        found: usize,
    },
}

impl std::fmt::Display for ArrayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArrayError::Width { expected, found } => {
                write!(f, "rows of {found} values, but the model's input has {expected} per example")
            }
            ArrayError::Rows { expected, found } => {
                write!(f, "the inputs have {expected} and {found} rows; every input needs a row per example")
            }
            ArrayError::Inputs { expected, found } => {
                write!(f, "{found} arrays of inputs, but the model reads {expected}")
            }
        }
    }
}

impl std::error::Error for ArrayError {}
