//! Every step kind, declared once.
//!
//! The table at the end of this file names each step, its fields and the function of
//! [`crate::ops`] that runs it. From it follow the [`Step`] enum, the list of arena buffers a
//! step touches ([`Step::bufs_mut`], for liveness and relocation), the interpreter's dispatch
//! ([`Step::run`]) and the description the code generator turns into a call with constants
//! ([`Step::call`]). Every ops function has the same form,
//! `fn(&mut Cx<T>, field, field, …) -> Result<(), ExecError>`, with the fields in table order.
//!
//! Adding a step kind is one line of the table and one function in `ops`.

use crate::mem::{Cx, ExecError};
use crate::ops;
use crate::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Write};
use crate::Float;

/// A field of a step, as the step's function takes it, and as the code generator writes it.
pub trait Field {
    /// How the ops function takes the field (by value, or a slice for a list of buffers).
    type Arg<'a>
    where
        Self: 'a;
    fn arg(&self) -> Self::Arg<'_>;
    /// Adds the arena buffers among this field to `out`.
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>);
    fn lit(&self) -> Lit;
}

/// A step's field as a constant, for the code generator.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    ABuf(ABuf),
    PBuf(PBuf),
    Act(Act),
    Geometry(Geometry),
    PoolOp(PoolOp),
    Write(Write),
    Usize(usize),
    F64(f64),
    /// An optional input gradient and how to write it.
    Dx(Option<(ABuf, Write)>),
    /// A list of buffers (passed as a slice).
    ABufs(Vec<ABuf>),
}

macro_rules! plain_field {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl Field for $t {
            type Arg<'a> = $t;
            fn arg(&self) -> $t {
                *self
            }
            fn bufs<'a>(&'a mut self, _: &mut Vec<&'a mut ABuf>) {}
            fn lit(&self) -> Lit {
                Lit::$v(*self)
            }
        }
    )*};
}

plain_field!(PBuf => PBuf, Act => Act, Geometry => Geometry, PoolOp => PoolOp, Write => Write, usize => Usize, f64 => F64);

impl Field for ABuf {
    type Arg<'a> = ABuf;
    fn arg(&self) -> ABuf {
        *self
    }
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>) {
        out.push(self);
    }
    fn lit(&self) -> Lit {
        Lit::ABuf(*self)
    }
}

impl Field for Option<(ABuf, Write)> {
    type Arg<'a> = Option<(ABuf, Write)>;
    fn arg(&self) -> Self {
        *self
    }
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>) {
        if let Some((b, _)) = self {
            out.push(b);
        }
    }
    fn lit(&self) -> Lit {
        Lit::Dx(*self)
    }
}

impl Field for Vec<ABuf> {
    type Arg<'a> = &'a [ABuf];
    fn arg(&self) -> &[ABuf] {
        self
    }
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>) {
        out.extend(self.iter_mut());
    }
    fn lit(&self) -> Lit {
        Lit::ABufs(self.clone())
    }
}

macro_rules! steps {
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } => $func:ident; )*) => {
        /// One step of a plan. Every step but [`Step::Update`] is run by the function of
        /// [`crate::ops`] named in the table of `step.rs`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Step {
            $( $(#[$doc])* $name { $($field: $ty),* }, )*
            /// The optimizer's update of every parameter from its gradient (with
            /// regularization, max-norm and the weight average), done by the trainer.
            Update,
        }

        impl Step {
            /// Every arena, input or target buffer the step reads or writes.
            pub fn bufs_mut(&mut self) -> Vec<&mut ABuf> {
                let mut out = Vec::new();
                match self {
                    $( Step::$name { $($field),* } => { $( Field::bufs($field, &mut out); )* } )*
                    Step::Update => {}
                }
                out
            }

            /// Runs the step (the update is the trainer's: it does nothing here).
            pub fn run<T: Float>(&self, cx: &mut Cx<'_, T>) -> Result<(), ExecError> {
                match self {
                    $( Step::$name { $($field),* } => ops::$func(cx, $( Field::arg($field) ),*), )*
                    Step::Update => Ok(()),
                }
            }

            /// The ops function that runs the step and its arguments after the context, as
            /// constants; `None` for the update.
            pub fn call(&self) -> Option<(&'static str, Vec<Lit>)> {
                match self {
                    $( Step::$name { $($field),* } => Some((stringify!($func), vec![$( Field::lit($field) ),*])), )*
                    Step::Update => None,
                }
            }
        }
    };
}

steps! {
    /// `y = x · Wᵀ + b`, W `[out, in]` as PyTorch lays it out.
    Dense { x: ABuf, w: PBuf, b: PBuf, y: ABuf } => dense;
    /// `y = f(x · Wᵀ + b)`: a dense layer fused with its activation.
    DenseAct { f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf } => dense_act;
    Activation { f: Act, x: ABuf, y: ABuf } => activation;
    /// `y = f(y)`, overwriting its input.
    ActivationInPlace { f: Act, y: ABuf } => activation_in_place;
    /// Inverted dropout: draws `mask` (1/keep or 0) and writes `y = x · mask`.
    Dropout { keep: f64, x: ABuf, mask: ABuf, y: ABuf } => dropout;
    /// Dropout overwriting its input: `y = y · mask`.
    DropoutInPlace { keep: f64, mask: ABuf, y: ABuf } => dropout_in_place;
    /// Softmax over each row.
    Softmax { x: ABuf, y: ABuf } => softmax;
    /// `y = f(conv(x) + b)` (`f` identity when not fused), by im2col into `ws`.
    Conv { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf } => conv;
    /// Locally-connected `y = f(local(x) + b)`, by im2col into `ws`.
    Local { g: Geometry, f: Act, x: ABuf, w: PBuf, b: PBuf, y: ABuf, ws: ABuf } => local;
    Pool { op: PoolOp, g: Geometry, x: ABuf, y: ABuf } => pool;
    /// `y = max over groups of `pieces` consecutive values of z`.
    Maxout { pieces: usize, z: ABuf, y: ABuf } => maxout;
    /// `y = Σ xs`.
    Add { xs: Vec<ABuf>, y: ABuf } => add;
    /// Rows of `y` are the rows of `xs` side by side.
    Concat { xs: Vec<ABuf>, y: ABuf } => concat;

    /// Mean softmax cross-entropy of `logits` against class indices in `target` (one per
    /// row), and its gradient `(softmax − onehot)/rows` in `dlogits`.
    SoftmaxCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf } => softmax_cross_entropy;
    /// Mean binary cross-entropy of `sigmoid(logits)` against targets in [0, 1], from the
    /// logits (stable), with its gradient `(sigmoid − t)/(rows·cols)`.
    SigmoidBinaryCrossEntropy { logits: ABuf, target: ABuf, dlogits: ABuf } => sigmoid_binary_cross_entropy;
    /// Mean over rows of `½‖y − t‖²`, with gradient `(y − t)/rows`.
    MeanSquaredError { y: ABuf, target: ABuf, dy: ABuf } => mean_squared_error;
    /// Unfused: mean `−log p[label]` of probabilities, with gradient `−1/(rows·p[label])` at
    /// the label and 0 elsewhere.
    CrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf } => cross_entropy;
    /// Unfused: mean binary cross-entropy of probabilities in (0, 1).
    BinaryCrossEntropy { probs: ABuf, target: ABuf, dprobs: ABuf } => binary_cross_entropy;

    /// Forward was `y = x·Wᵀ + b`, so now `dW = dyᵀ·x`, `db = Σ_rows dy`, `dx (+)= dy·W`.
    DenseBackward { x: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> } => dense_backward;
    /// Forward was `y = f(z)`, `z = x·Wᵀ + b`: `dy` is overwritten with `dz = dy · f'(z)`, then
    /// `dW = dzᵀ·x`, `db = Σ dz`, `dx (+)= dz·W`.
    DenseActBackward { f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)> } => dense_act_backward;
    /// Forward was `y = f(x)`, so now `dx (+)= dy · f'(x)`; `f'` is computed from `y` where
    /// that is cheaper (sigmoid, tanh).
    ActivationBackward { f: Act, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write } => activation_backward;
    /// Forward was `y = f(x)`; `d` holds dy and is overwritten with `dx = dy · f'(x)`, with
    /// `f'` computed from `y` (the input may have been overwritten in place).
    ActivationBackwardInPlace { f: Act, y: ABuf, d: ABuf } => activation_backward_in_place;
    /// Forward was `y = x · mask`, so now `dx (+)= dy · mask`.
    DropoutBackward { mask: ABuf, dy: ABuf, dx: ABuf, write: Write } => dropout_backward;
    /// Dropout's backward overwriting `d` (dy) with `dx = dy · mask`.
    DropoutBackwardInPlace { mask: ABuf, d: ABuf } => dropout_backward_in_place;
    /// Forward was `y = softmax(x)` row-wise, so now `dx (+)= y · (dy − Σ dy·y)`.
    SoftmaxBackward { y: ABuf, dy: ABuf, dx: ABuf, write: Write } => softmax_backward;
    /// Forward was `y = f(conv(x) + b)`: `dy` becomes `dz = dy·f'(y)` in place, then `dW`,
    /// `db`, and `dx (+)= col2im(dz·W)`.
    ConvBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf } => conv_backward;
    /// Forward was `y = f(local(x) + b)`: as [`Step::ConvBackward`] with a filter per position.
    LocalBackward { g: Geometry, f: Act, x: ABuf, y: ABuf, w: PBuf, dy: ABuf, dw: PBuf, db: PBuf, dx: Option<(ABuf, Write)>, ws: ABuf } => local_backward;
    /// Forward was `y = pool(x)`, so now each window's `x` gets its share of `dy`.
    PoolBackward { op: PoolOp, g: Geometry, x: ABuf, y: ABuf, dy: ABuf, dx: ABuf, write: Write } => pool_backward;
    /// Forward was the maxout reduction, so now `dz = dy` at each group's maximum.
    MaxoutBackward { pieces: usize, z: ABuf, y: ABuf, dy: ABuf, dz: ABuf, write: Write } => maxout_backward;
    /// Forward was `y = x` (a sum, or one part of a concatenation), so now
    /// `dx (+)= dy[:, x_col .. x_col + x.cols]`.
    Copy { x: ABuf, x_col: usize, y: ABuf, write: Write } => copy;
}
