//! How every step kind is declared once: the `steps!` macro and the field types it knows.
//!
//! The step table (in `kernels/mod.rs`, beside the kernel modules) names each step, its
//! fields and the function that runs it. From it follow the `Step` enum, the list of arena
//! buffers a step touches (`Step::bufs_mut`, for liveness and relocation), the interpreter's
//! dispatch (`Step::run`) and the description the code generator turns into a call with
//! constants (`Step::call`). Every step function has the same form,
//! `fn(&mut Cx<T>, field, field, …) -> Result<(), ExecError>`, with the fields in table order.
//!
//! Adding a step kind is one line of the table and one function.

use crate::plan::{ABuf, Act, Geometry, PBuf, PoolOp, Write};

/// A field of a step, as the step's function takes it, and as the code generator writes it.
pub trait Field {
    /// How the ops function takes the field (by value, or a slice for a list of buffers).
    type Arg<'a>
    where
        Self: 'a;
    /// The field as the ops function takes it.
    fn arg(&self) -> Self::Arg<'_>;
    /// Adds the arena buffers among this field to `out`.
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>);
    /// The field as a constant, for the code generator.
    fn lit(&self) -> Lit;
}

/// A step's field as a constant, for the code generator.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    /// An arena buffer.
    ABuf(ABuf),
    /// A parameter buffer.
    PBuf(PBuf),
    /// An activation.
    Act(Act),
    /// A window geometry.
    Geometry(Geometry),
    /// A pooling reduction.
    PoolOp(PoolOp),
    /// How a result is written.
    Write(Write),
    /// A count.
    Usize(usize),
    /// A real number.
    F64(f64),
    /// A flag.
    Bool(bool),
    /// An optional input gradient and how to write it.
    Dx(Option<(ABuf, Write)>),
    /// A list of buffers (passed as a slice).
    ABufs(Vec<ABuf>),
    /// An optional buffer (a recurrent layer's carried state).
    MaybeABuf(Option<ABuf>),
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

plain_field!(PBuf => PBuf, Act => Act, Geometry => Geometry, PoolOp => PoolOp, Write => Write, usize => Usize, f64 => F64, bool => Bool);

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

impl Field for Option<ABuf> {
    type Arg<'a> = Option<ABuf>;
    fn arg(&self) -> Self {
        *self
    }
    fn bufs<'a>(&'a mut self, out: &mut Vec<&'a mut ABuf>) {
        if let Some(b) = self {
            out.push(b);
        }
    }
    fn lit(&self) -> Lit {
        Lit::MaybeABuf(*self)
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
    ($( $(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } => $($func:ident)::+; )*) => {
        /// One step of a plan. Every step but [`Step::Update`] is run by the function named in
        /// the step table (`kernels/mod.rs`).
        #[derive(Clone, Debug, PartialEq)]
        pub enum Step {
            $( $(#[$doc])* $name { $(#[doc = concat!("The `", stringify!($field), "` argument of the step's function (see the step table).")] $field: $ty),* }, )*
            /// The optimizer's update of every parameter from its gradient (with
            /// regularization, max-norm and the weight average), done by the trainer.
            Update,
        }

        impl Step {
            /// Every arena, input or target buffer the step reads or writes.
            pub fn bufs_mut(&mut self) -> Vec<&mut $crate::plan::ABuf> {
                let mut out: Vec<&mut $crate::plan::ABuf> = Vec::new();
                match self {
                    $( Step::$name { $($field),* } => { $( $crate::step::Field::bufs($field, &mut out); )* } )*
                    Step::Update => {}
                }
                out
            }

            /// Runs the step (the update is the trainer's: it does nothing here).
            pub fn run<T: $crate::Float>(&self, cx: &mut $crate::mem::Cx<'_, T>) -> Result<(), $crate::mem::ExecError> {
                match self {
                    $( Step::$name { $($field),* } => $crate::$($func)::+(cx, $( $crate::step::Field::arg($field) ),*), )*
                    Step::Update => Ok(()),
                }
            }

            /// The names of the step's fields, in the order of [`Step::call`]'s arguments
            /// (empty for the update).
            pub fn field_names(&self) -> &'static [&'static str] {
                match self {
                    $( Step::$name { .. } => &[$(stringify!($field)),*], )*
                    Step::Update => &[],
                }
            }

            /// The step kind's name, as the step table spells it (`ConvBackward`).
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Step::$name { .. } => stringify!($name), )*
                    Step::Update => "Update",
                }
            }

            /// The path (in the runtime crate) of the function that runs the step, and its
            /// arguments after the context, as constants; `None` for the update.
            pub fn call(&self) -> Option<(&'static [&'static str], Vec<$crate::step::Lit>)> {
                match self {
                    $( Step::$name { $($field),* } => Some((&[$(stringify!($func)),+], vec![$( $crate::step::Field::lit($field) ),*])), )*
                    Step::Update => None,
                }
            }
        }
    };
}

pub(crate) use steps;
