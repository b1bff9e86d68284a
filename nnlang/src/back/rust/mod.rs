//! Plans → Rust. The generated model is a struct with constant shapes and one arena per
//! plan, whose methods are straight-line calls of the runtime's step functions
//! (`nnlang_runtime::ops`) with every shape and offset a constant — the same calls, in the
//! same order, as the interpreter makes, so that the two agree bit for bit. Generated code
//! depends on `nnlang-runtime` only.

mod expand;
mod steps;

pub use expand::expand;

use crate::diag::Diagnostic;
use crate::plan::{build, build_carrying, Loss, Mode};
use crate::{Compiled, Model};
use nnlang_runtime::plan::{Param, Plan, Role};
use nnlang_runtime::train::{Init, OptimizerKind, Options};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, ToTokens};

use crate::plan::MEMORY_LIMIT;

/// Generates the Rust code of `model`.
pub fn generate(compiled: &Compiled, model: &Model) -> Result<TokenStream, Vec<Diagnostic>> {
    let recipe = compiled.recipe_or_implied(model);
    let (loss, mut options) = (recipe.loss, recipe.options(1));
    // A model trained on a stream in windows carries its recurrent states between calls.
    let plan = |mode| {
        if recipe.bptt.is_some() {
            build_carrying(model, mode, options.batch)
        } else {
            build(model, mode, options.batch)
        }
    };
    let train = plan(Mode::Training(loss))?;
    let infer = plan(Mode::Inference)?;
    let bytes = (train.arena_len as u64)
        .saturating_add(infer.arena_len as u64)
        .saturating_add(2 * train.params_len as u64)
        .saturating_mul(4);
    if bytes > MEMORY_LIMIT {
        let span = model.graph.nodes.first().map(|n| n.span).unwrap_or_default();
        return Err(vec![Diagnostic::error(
            format!(
                "model `{}` at batch {} needs {} of buffers and parameters, more than {}",
                model.graph.name,
                options.batch,
                crate::summary::bytes(bytes),
                crate::summary::bytes(MEMORY_LIMIT)
            ),
            span,
            "this model",
        )
        .with_help("lower the recipe's `batch` or the layer sizes")]);
    }
    // What the recipe's data block and loss do to the data, for `fit` and `predict`.
    let data = recipe.data.as_deref().and_then(|d| compiled.data_spec(d));
    let per_example = infer.inputs.first().map_or(0, |b| b.cols);
    let stat_width = match infer.sequence {
        Some(s) if s.variable && s.steps > 0 => per_example / s.steps,
        _ => per_example,
    };
    let pre = nnlang_runtime::data::preprocess::PreprocessRecipe {
        scale: data.as_ref().and_then(|d| d.scale).map(|s| s as f32),
        standardize: data.as_ref().is_some_and(|d| d.standardize).then_some(stat_width),
        bins: recipe.bins,
    };
    // The data block's augmentation of `[h, w, c]` images, which `fit` draws as `train` does.
    options.augment = data.as_ref().and_then(|d| d.augment).and_then(|a| a.for_model(model));
    Ok(emit(&model.graph.name, &train, &infer, loss, &options, &pre))
}

/// The loss a model without a `train` block is trained with: what its last layer suggests.
pub fn default_loss(model: &Model) -> Loss {
    crate::ops::loss::default_for(model.graph.output_op())
}

/// Formats generated code for people (`nnlangc emit --rust`, snapshots).
pub fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

fn lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

fn f64_lit(v: f64) -> Literal {
    Literal::f64_suffixed(v)
}

fn param_table(table: &[Param]) -> TokenStream {
    let entries = table.iter().map(|p| {
        let name = &p.name;
        let shape = p.shape.iter().map(|&d| lit(d));
        let (offset, len) = (lit(p.buf.offset), lit(p.buf.len));
        let role = match p.role {
            Role::Weight { fan_in, fan_out } => {
                let (fan_in, fan_out) = (lit(fan_in), lit(fan_out));
                quote! { Weight { fan_in: #fan_in, fan_out: #fan_out } }
            }
            Role::Embedding { dim } => {
                let dim = lit(dim);
                quote! { Embedding { dim: #dim } }
            }
            Role::Bias => quote! { Bias },
            Role::GateBias { from, len, init } => {
                let (from, len, init) = (lit(from), lit(len), f64_lit(init));
                quote! { GateBias { from: #from, len: #len, init: #init } }
            }
            Role::Gain => quote! { Gain },
            Role::State { init, momentum } => {
                let (init, momentum) = (f64_lit(init), f64_lit(momentum));
                quote! { State { init: #init, momentum: #momentum } }
            }
            Role::Count => quote! { Count },
        };
        quote! {
            ::nnlang_runtime::plan::Param {
                name: ::std::string::String::from(#name),
                shape: ::std::vec::Vec::from([#(#shape),*]),
                buf: ::nnlang_runtime::plan::PBuf { offset: #offset, len: #len },
                role: ::nnlang_runtime::plan::Role::#role,
            }
        }
    });
    quote! { ::std::vec::Vec::from([#(#entries),*]) }
}

fn loss_tokens(loss: Loss) -> TokenStream {
    match loss {
        Loss::CrossEntropy(s) if s.value() == 0.0 => quote! { ::nnlang_runtime::plan::Loss::CROSS_ENTROPY },
        Loss::CrossEntropy(s) => {
            let e = s.value();
            quote! { ::nnlang_runtime::plan::Loss::CrossEntropy(::nnlang_runtime::plan::Smoothing::new(#e)) }
        }
        Loss::BinaryCrossEntropy => quote! { ::nnlang_runtime::plan::Loss::BinaryCrossEntropy },
        Loss::MeanSquaredError => quote! { ::nnlang_runtime::plan::Loss::MeanSquaredError },
    }
}

fn init_tokens(init: Init) -> TokenStream {
    match init {
        Init::Xavier => quote! { ::nnlang_runtime::train::Init::Xavier },
        Init::He => quote! { ::nnlang_runtime::train::Init::He },
        Init::Normal { std } => {
            let s = f64_lit(std);
            quote! { ::nnlang_runtime::train::Init::Normal { std: #s } }
        }
        Init::Uniform { a } => {
            let a = f64_lit(a);
            quote! { ::nnlang_runtime::train::Init::Uniform { a: #a } }
        }
    }
}

fn schedule_tokens(s: nnlang_runtime::train::Schedule) -> TokenStream {
    use nnlang_runtime::train::Schedule;
    match s {
        Schedule::Constant => quote! { ::nnlang_runtime::train::Schedule::Constant },
        Schedule::Step { every, factor } => {
            let (e, f) = (lit(every), f64_lit(factor));
            quote! { ::nnlang_runtime::train::Schedule::Step { every: #e, factor: #f } }
        }
        Schedule::Exponential { decay } => {
            let d = f64_lit(decay);
            quote! { ::nnlang_runtime::train::Schedule::Exponential { decay: #d } }
        }
        Schedule::Cosine { min } => {
            let m = f64_lit(min);
            quote! { ::nnlang_runtime::train::Schedule::Cosine { min: #m } }
        }
        Schedule::Plateau { factor, patience } => {
            let (f, p) = (f64_lit(factor), lit(patience));
            quote! { ::nnlang_runtime::train::Schedule::Plateau { factor: #f, patience: #p } }
        }
    }
}

fn optimizer_tokens(o: &Options) -> TokenStream {
    let kind = match o.optimizer {
        OptimizerKind::Sgd { lr, momentum, nesterov } => {
            let (lr, m) = (f64_lit(lr), f64_lit(momentum));
            quote! { ::nnlang_runtime::train::OptimizerKind::Sgd { lr: #lr, momentum: #m, nesterov: #nesterov } }
        }
        OptimizerKind::Adam { lr, beta1, beta2, eps, weight_decay } => {
            let (lr, b1, b2, e) = (f64_lit(lr), f64_lit(beta1), f64_lit(beta2), f64_lit(eps));
            let wd = f64_lit(weight_decay);
            quote! { ::nnlang_runtime::train::OptimizerKind::Adam { lr: #lr, beta1: #b1, beta2: #b2, eps: #e, weight_decay: #wd } }
        }
    };
    let (l1, l2) = (f64_lit(o.l1), f64_lit(o.l2));
    let opt = |v: Option<f64>| match v {
        Some(x) => {
            let x = f64_lit(x);
            quote! { ::std::option::Option::Some(#x) }
        }
        None => quote! { ::std::option::Option::None },
    };
    let (max_norm, ema) = (opt(o.max_norm), opt(o.ema));
    let new = quote! { ::nnlang_runtime::train::Optimizer::new(&self.core.table, #kind, #l1, #l2, #max_norm, #ema) };
    let clip = o.clip.is_some().then(|| {
        let clip = opt(o.clip);
        quote! { optimizer.clip = #clip; }
    });
    let accumulate = (o.accumulate > 1).then(|| {
        let k = o.accumulate;
        quote! { optimizer.accumulate = #k; }
    });
    if clip.is_none() && accumulate.is_none() {
        return new;
    }
    quote! { { let mut optimizer = #new; #clip #accumulate optimizer } }
}

/// Rust's keywords (strict, reserved and of later editions): a model named one of them
/// is a raw identifier (`r#fn`).
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
    "box", "do", "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Names a raw identifier cannot take, and the types and prelude names generated code (or the
/// module it lands in) would see shadowed by a struct of that name: a suffix `_` instead.
const RUST_TAKEN: &[&str] = &[
    "self", "Self", "super", "crate", "_", "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8",
    "i16", "i32", "i64", "i128", "isize", "f32", "f64", "Option", "Some", "None", "Result", "Ok", "Err", "String",
    "Vec", "Box",
];

/// The Rust type of the model named `name`, and why it differs from the name, if it does: a
/// keyword becomes a raw identifier (`r#fn`); a name Rust cannot take or that would shadow a
/// primitive or prelude type gets a suffix (`Self_`, `f32_`).
pub fn type_name(name: &str) -> (Ident, Option<String>) {
    if RUST_TAKEN.contains(&name) {
        let renamed = format!("{name}_");
        let why = format!("`{name}` is taken in Rust, so the type is `{renamed}`");
        (Ident::new(&renamed, Span::call_site()), Some(why))
    } else if RUST_KEYWORDS.contains(&name) {
        (
            Ident::new_raw(name, Span::call_site()),
            Some(format!("`{name}` is a Rust keyword, so the type is `r#{name}`")),
        )
    } else {
        (Ident::new(name, Span::call_site()), None)
    }
}

fn emit(
    name: &str,
    train: &Plan,
    infer: &Plan,
    loss: Loss,
    o: &Options,
    pre: &nnlang_runtime::data::preprocess::PreprocessRecipe,
) -> TokenStream {
    let (ty, renamed) = type_name(name);
    let n_inputs = infer.inputs.len();
    let n_inputs_lit = lit(n_inputs);
    let input_cols: Vec<Literal> = infer.inputs.iter().map(|b| lit(b.cols)).collect();
    let (max_batch, params_len) = (lit(infer.max_batch), lit(train.params_len));
    let splits_products = nnlang_runtime::train::Split::Auto.products(train, 2);
    let out_cols = lit(infer.output.cols);
    let target_cols = lit(train.target.map_or(0, |(t, _)| t.cols));
    let steps = lit(infer.sequence.map_or(0, |s| s.steps));
    let (epochs_lit, validate_lit, seed_lit) = (lit(o.epochs), f64_lit(o.validate), Literal::u64_unsuffixed(o.seed));
    let option = |v: Option<TokenStream>| match v {
        Some(t) => quote! { ::std::option::Option::Some(#t) },
        None => quote! { ::std::option::Option::None },
    };
    let scale_t = option(pre.scale.map(|v| Literal::f32_suffixed(v).into_token_stream()));
    let standardize_t = option(pre.standardize.map(|n| lit(n).into_token_stream()));
    let bins_t = option(pre.bins.map(|n| lit(n).into_token_stream()));
    let per_step_output = infer.sequence.is_some_and(|s| s.per_step_output);
    let table = param_table(&train.params);
    let loss_t = loss_tokens(loss);
    let optimizer = optimizer_tokens(o);
    let base_lr = f64_lit(o.optimizer.lr());
    // The rates: the schedule from the base rate, with its warm-up where the recipe has one.
    let schedule = schedule_tokens(o.schedule);
    let rates = if o.warmup > 0 {
        let w = lit(o.warmup);
        quote! { ::nnlang_runtime::train::Rates::new(#base_lr, #schedule).with_warmup(#w) }
    } else {
        quote! { ::nnlang_runtime::train::Rates::new(#base_lr, #schedule) }
    };
    let forward_steps = steps::body(&infer.steps);
    let train_steps = steps::body(&train.steps);
    let name_of = crate::ops::loss::user_name(loss);
    let smoothing = loss.smoothing();
    let loss_text = if smoothing == 0.0 {
        name_of.to_string()
    } else {
        format!("{name_of}(smoothing = {})", crate::diag::fmt_num(smoothing))
    };
    let doc = format!(
        " The nnlang model `{name}`: {} parameters in {} tensors; batches of up to {} rows; trained with `{loss_text}`.",
        train.params_len,
        train.params.len(),
        infer.max_batch,
    );
    let doc_arena = match renamed {
        Some(why) => format!(
            " Arenas: {} floats for a training step, {} for inference. In Rust it is `{ty}`: {why}.",
            train.arena_len, infer.arena_len
        ),
        None => format!(" Arenas: {} floats for a training step, {} for inference.", train.arena_len, infer.arena_len),
    };
    // The model-specific signatures: one input as a slice, several as an array of slices.
    let (sig, sig_f64, pass) = if n_inputs == 1 {
        (quote! { x: &[f32] }, quote! { x: &[f64] }, quote! { &[x] })
    } else {
        (quote! { inputs: [&[f32]; #n_inputs_lit] }, quote! { inputs: [&[f64]; #n_inputs_lit] }, quote! { &inputs })
    };
    let model = quote! { ::nnlang_runtime::model::Model };
    let constants = constants(train, infer, o);
    let implementation = model_impl(&ty, &constants, &forward_steps, &train_steps, &optimizer, &rates);
    quote! {
        #[doc = #doc]
        #[doc = #doc_arena]
        /// Its methods are [`::nnlang_runtime::model::Model`]'s (`fit`, `predict`, `save`, …):
        /// bring the trait into scope to call them.
        pub struct #ty {
            core: ::nnlang_runtime::model::Core,
        }

        #implementation

        #[allow(clippy::all, clippy::pedantic)]
        impl #ty {
            /// The most rows one call takes.
            pub const MAX_BATCH: usize = #max_batch;
            /// Values per row of each input.
            pub const INPUTS: [usize; #n_inputs_lit] = [#(#input_cols),*];
            /// Values per row of the output.
            pub const OUTPUT: usize = #out_cols;
            /// Values per row of the training target (1: a class index).
            pub const TARGET_COLS: usize = #target_cols;
            /// Parameters, all tensors together.
            pub const PARAMS: usize = #params_len;
            /// The recipe's epochs (what `fit` runs).
            pub const EPOCHS: usize = #epochs_lit;
            /// The fraction of the rows `fit` holds out for validation.
            pub const VALIDATE: f64 = #validate_lit;
            /// The recipe's seed.
            pub const SEED: u64 = #seed_lit;
            /// Steps of the longest sequence the model reads (0: it reads no sequence).
            pub const STEPS: usize = #steps;
            /// Whether the output (and the target) has a row per step of the sequence.
            pub const PER_STEP_OUTPUT: bool = #per_step_output;
            /// The recipe's loss.
            pub const LOSS: ::nnlang_runtime::plan::Loss = #loss_t;
            /// The data block's `scale`: `fit` and `predict` multiply raw inputs by it.
            pub const SCALE: ::std::option::Option<f32> = #scale_t;
            /// The data block's `standardize = true`: `fit` learns the mean and deviation of
            /// each of this many values (an example's, or a step's) and `predict` applies them.
            pub const STANDARDIZE: ::std::option::Option<usize> = #standardize_t;
            /// `cross_entropy(bins = n)`: `fit` bins the targets, `predict` returns each row's
            /// value (its likeliest bin's centre).
            pub const BINS: ::std::option::Option<usize> = #bins_t;
            /// Whether threads train this model faster by splitting each dense product
            /// (`split_products`) than by splitting the batch (`parallel`): what `nnlangc train
            /// --split auto` chooses.
            pub const SPLITS_PRODUCTS: bool = #splits_products;

            /// A model with weights initialized as its recipe says; the same seed gives the
            /// weights `nnlangc train` starts from.
            pub fn new(seed: u64) -> Self {
                Self { core: ::nnlang_runtime::model::Core::new(&<Self as #model>::CONSTANTS, #table, seed) }
            }

            /// The model's output for `rows` rows (row-major, `rows × INPUTS[i]` values per
            /// input, preprocessed); dropout is off.
            pub fn forward(&mut self, #sig, rows: usize) -> &[f32] {
                <Self as #model>::forward_inputs(self, #pass, rows)
            }

            /// Forward, loss and backward for one batch: the mean loss, the gradients left in
            /// `gradients()`.
            pub fn loss_and_gradients(&mut self, #sig, y: &[f32], rows: usize) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                <Self as #model>::loss_and_gradients_inputs(self, #pass, y, rows)
            }

            /// [`Self::loss_and_gradients`] with weights held elsewhere.
            pub fn loss_and_gradients_with(&mut self, params: &[f32], #sig, y: &[f32], rows: usize) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                <Self as #model>::loss_and_gradients_with_inputs(self, params, #pass, y, rows)
            }

            /// The loss and every gradient in double precision with the weights `params`.
            pub fn loss_and_gradients_f64(&self, params: &[f64], #sig_f64, y: &[f64], rows: usize, seed: u64) -> ::std::result::Result<(f64, ::std::vec::Vec<f64>), ::nnlang_runtime::mem::ExecError> {
                <Self as #model>::loss_and_gradients_f64_inputs(self, params, #pass, y, rows, seed)
            }

            /// One training step: forward, loss, backward, then the optimizer's update.
            pub fn train_step(&mut self, #sig, y: &[f32], rows: usize, optimizer: &mut impl ::nnlang_runtime::interp::Updater<f32>) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                <Self as #model>::train_step_inputs(self, #pass, y, rows, optimizer)
            }
        }
    }
}

/// The generated `impl Model`: the constants, the buffers, the steps, the recipe's optimizer
/// and schedule.
fn model_impl(
    ty: &Ident,
    constants: &TokenStream,
    forward_steps: &TokenStream,
    train_steps: &TokenStream,
    optimizer: &TokenStream,
    rates: &TokenStream,
) -> TokenStream {
    quote! {
        #[allow(clippy::all, clippy::pedantic, unused_variables, unused_mut, unused_assignments)]
        impl ::nnlang_runtime::model::Model for #ty {
            const CONSTANTS: ::nnlang_runtime::model::Constants = #constants;
            fn core(&self) -> &::nnlang_runtime::model::Core {
                &self.core
            }
            fn core_mut(&mut self) -> &mut ::nnlang_runtime::model::Core {
                &mut self.core
            }
            fn forward_steps(cx: &mut ::nnlang_runtime::mem::Cx<'_, f32>) -> ::nnlang_runtime::ops::Done {
                #forward_steps
                ::std::result::Result::Ok(())
            }
            fn train_steps<T: ::nnlang_runtime::Float>(cx: &mut ::nnlang_runtime::mem::Cx<'_, T>) -> ::nnlang_runtime::ops::Done {
                #train_steps
                ::std::result::Result::Ok(())
            }
            fn optimizer(&self) -> ::nnlang_runtime::train::Optimizer<f32> {
                #optimizer
            }
            fn rates() -> ::nnlang_runtime::train::Rates {
                #rates
            }
            fn with_seed(seed: u64) -> Self {
                Self::new(seed)
            }
        }

    }
}

/// The model's `Constants`: its inherent constants, and where its plans keep their output,
/// arenas and carried states.
fn constants(train: &Plan, infer: &Plan, o: &Options) -> TokenStream {
    let (train_arena, infer_arena) = (lit(train.arena_len.max(1)), lit(infer.arena_len.max(1)));
    let out_offset = lit(infer.output.offset);
    let carried = |p: &Plan| -> Vec<TokenStream> {
        p.carried
            .iter()
            .map(|b| {
                let (at, len) = (lit(b.offset), lit(b.cols * p.max_batch));
                quote! { (#at, #len) }
            })
            .collect()
    };
    let (train_carried, infer_carried) = (carried(train), carried(infer));
    let init = init_tokens(o.init);
    let augment = match o.augment {
        Some(a) => {
            let (h, w, c, crop, shift, flip) = (a.height, a.width, a.channels, a.crop, a.shift, a.flip);
            quote! {
                ::std::option::Option::Some(::nnlang_runtime::data::augment::Augment {
                    height: #h, width: #w, channels: #c, crop: #crop, shift: #shift, flip: #flip
                })
            }
        }
        None => quote! { ::std::option::Option::None },
    };
    let patience = match o.patience {
        Some(k) => quote! { ::std::option::Option::Some(#k) },
        None => quote! { ::std::option::Option::None },
    };
    quote! {
            ::nnlang_runtime::model::Constants {
                max_batch: Self::MAX_BATCH,
                inputs: &Self::INPUTS,
                output: Self::OUTPUT,
                target_cols: Self::TARGET_COLS,
                params: Self::PARAMS,
                steps: Self::STEPS,
                per_step_output: Self::PER_STEP_OUTPUT,
                loss: Self::LOSS,
                output_offset: #out_offset,
                train_arena: #train_arena,
                infer_arena: #infer_arena,
                train_carried: &[#(#train_carried),*],
                infer_carried: &[#(#infer_carried),*],
                epochs: Self::EPOCHS,
                validate: Self::VALIDATE,
                patience: #patience,
                augment: #augment,
                seed: Self::SEED,
                init: #init,
                preprocess: ::nnlang_runtime::data::preprocess::PreprocessRecipe { scale: Self::SCALE, standardize: Self::STANDARDIZE, bins: Self::BINS },
            }
    }
}
