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
use quote::{format_ident, quote};

use crate::plan::MEMORY_LIMIT;

/// Generates the Rust code of `model`.
pub fn generate(compiled: &Compiled, model: &Model) -> Result<TokenStream, Vec<Diagnostic>> {
    let recipe = compiled.recipe_or_implied(model);
    let (loss, options) = (recipe.loss, recipe.options(1));
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
    Ok(emit(&model.graph.name, &train, &infer, loss, &options, &pre))
}

/// The loss a model without a `train` block is trained with: what its last layer suggests.
pub fn default_loss(model: &Model) -> Loss {
    crate::ops::loss::default_for(&model.graph)
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
            Role::Bias => quote! { Bias },
            Role::Gain => quote! { Gain },
            Role::State { init } => {
                let init = f64_lit(init);
                quote! { State { init: #init } }
            }
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
        Loss::CrossEntropy => quote! { ::nnlang_runtime::plan::Loss::CrossEntropy },
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
        OptimizerKind::Adam { lr, beta1, beta2, eps } => {
            let (lr, b1, b2, e) = (f64_lit(lr), f64_lit(beta1), f64_lit(beta2), f64_lit(eps));
            quote! { ::nnlang_runtime::train::OptimizerKind::Adam { lr: #lr, beta1: #b1, beta2: #b2, eps: #e } }
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
    let new = quote! { ::nnlang_runtime::train::Optimizer::new(&self.table, #kind, #l1, #l2, #max_norm, #ema) };
    match o.clip {
        None => new,
        Some(_) => {
            let clip = opt(o.clip);
            quote! { { let mut optimizer = #new; optimizer.clip = #clip; optimizer } }
        }
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
    let ty = Ident::new(name, Span::call_site());
    let n_inputs = infer.inputs.len();
    let n_inputs_lit = lit(n_inputs);
    let input_cols: Vec<Literal> = infer.inputs.iter().map(|b| lit(b.cols)).collect();
    let (max_batch, params_len) = (lit(infer.max_batch), lit(train.params_len));
    let (train_arena, infer_arena) = (lit(train.arena_len.max(1)), lit(infer.arena_len.max(1)));
    let splits_products = nnlang_runtime::train::Split::Auto.products(train, 2);
    let out_cols = lit(infer.output.cols);
    let out_offset = lit(infer.output.offset);
    let target_cols = lit(train.target.map_or(0, |(t, _)| t.cols));
    let steps = lit(infer.sequence.map_or(0, |s| s.steps));
    let epochs_lit = lit(o.epochs);
    let validate_lit = f64_lit(o.validate);
    let seed_lit = Literal::u64_unsuffixed(o.seed);
    let scale_t = match pre.scale {
        Some(v) => {
            let v = Literal::f32_suffixed(v);
            quote! { ::std::option::Option::Some(#v) }
        }
        None => quote! { ::std::option::Option::None },
    };
    let usize_opt = |v: Option<usize>| match v {
        Some(n) => {
            let n = lit(n);
            quote! { ::std::option::Option::Some(#n) }
        }
        None => quote! { ::std::option::Option::None },
    };
    let (standardize_t, bins_t) = (usize_opt(pre.standardize), usize_opt(pre.bins));
    let predict_call = if n_inputs == 1 {
        quote! { out.extend_from_slice(self.forward(batch[0], n)); }
    } else {
        quote! { out.extend_from_slice(self.forward(batch, n)); }
    };
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
    let per_step_output = infer.sequence.is_some_and(|s| s.per_step_output);
    let table = param_table(&train.params);
    let loss_t = loss_tokens(loss);
    let init = init_tokens(o.init);
    let optimizer = optimizer_tokens(o);
    let base_lr = f64_lit(o.optimizer.lr());
    let schedule = schedule_tokens(o.schedule);
    let forward_steps = steps::body(&infer.steps);
    let train_steps = steps::body(&train.steps);
    let input_names: Vec<Ident> = (0..n_inputs).map(|i| format_ident!("x{}", i)).collect();
    let call = if n_inputs == 1 {
        quote! { x, }
    } else {
        quote! { inputs, }
    };
    let doc = format!(
        " The nnlang model `{name}`: {} parameters in {} tensors; batches of up to {} rows; trained with {:?}.",
        train.params_len,
        train.params.len(),
        infer.max_batch,
        loss
    );
    let doc_arena =
        format!(" Arenas: {} floats for a training step, {} for inference.", train.arena_len, infer.arena_len);
    let (forward_sig, forward_inputs) = if n_inputs == 1 {
        (quote! { x: &[f32] }, quote! { let inputs: [&[f32]; 1] = [x]; })
    } else {
        (quote! { inputs: [&[f32]; #n_inputs_lit] }, quote! {})
    };
    let (sig_f64, inputs_f64) = if n_inputs == 1 {
        (quote! { x: &[f64] }, quote! { let inputs: [&[f64]; 1] = [x]; })
    } else {
        (quote! { inputs: [&[f64]; #n_inputs_lit] }, quote! {})
    };
    let check_inputs = input_names.iter().enumerate().map(|(i, _)| {
        let c = &input_cols[i];
        quote! {
            ::std::assert!(inputs[#i].len() >= rows * #c, "input {} needs {} rows of {} values", #i, rows, #c);
        }
    });
    let check_inputs: Vec<TokenStream> = check_inputs.collect();
    let evaluate = if n_inputs == 1 {
        quote! {
            /// A data-parallel trainer over `threads` workers (each a copy of this model's
            /// buffers, with its own dropout generator): use it with [`Self::train_step_parallel`].
            /// Where [`Self::SPLITS_PRODUCTS`] is true, [`Self::split_products`] is faster.
            pub fn parallel(&self, threads: usize, seed: u64) -> ::std::result::Result<::nnlang_runtime::train::DataParallel<Self>, ::std::string::String> {
                let workers = (0..threads.max(1)).map(|i| Self::new(seed.wrapping_add(1000 + i as u64))).collect();
                ::nnlang_runtime::train::DataParallel::new(workers, Self::PARAMS, Self::INPUTS[0], Self::TARGET_COLS)
            }

            /// Whether threads train this model faster by splitting each dense product
            /// ([`Self::split_products`]) than by splitting the batch ([`Self::parallel`]): what
            /// `nnlangc train --split auto` chooses (its activations at `MAX_BATCH` rows are
            /// fewer values than its weights, and it has no convolution or recurrent layer).
            pub const SPLITS_PRODUCTS: bool = #splits_products;

            /// Shares each large dense product of [`Self::train_step`] and [`Self::forward`]
            /// among `threads` threads (1: the calling thread alone again): each computes its
            /// share of the outputs of every row, and `optimizer` (this model's, from
            /// [`Self::optimizer`]) updates the rows of the weights each thread computes on
            /// that thread. The results are one thread's, bit for bit.
            pub fn split_products(&mut self, threads: usize, optimizer: &mut ::nnlang_runtime::train::Optimizer<f32>) -> ::std::result::Result<(), ::std::string::String> {
                self.team = if threads > 1 {
                    ::std::option::Option::Some(::std::sync::Arc::new(::nnlang_runtime::train::Team::new(threads)?))
                } else {
                    ::std::option::Option::None
                };
                optimizer.team = self.team.clone();
                ::std::result::Result::Ok(())
            }

            /// One training step split over the workers of `parallel`.
            pub fn train_step_parallel(&mut self, parallel: &mut ::nnlang_runtime::train::DataParallel<Self>, x: &[f32], y: &[f32], rows: usize, optimizer: &mut (impl ::nnlang_runtime::interp::Updater<f32> + Send)) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                parallel.step_sequences(&mut self.params, optimizer, x, y, &self.lengths, rows)
            }



            /// Trains the model on raw `x` (`rows × INPUTS[0]`) and `y` (`rows × TARGET_COLS`;
            /// class indices for a classifier, values for a regression) as its recipe says —
            /// the data block's scale and standardization (learned from these rows, kept for
            /// [`Self::predict`] and [`Self::save`]), binned targets, the validation split, a
            /// shuffled order every epoch, batches, the schedule, a stop on a loss that is not
            /// finite — as `nnlangc train` does on one thread. `progress` sees each epoch and
            /// returns `false` to stop.
            pub fn fit(&mut self, x: ::nnlang_runtime::ndarray::ArrayView2<'_, f32>, y: ::nnlang_runtime::ndarray::ArrayView2<'_, f32>, mut progress: impl FnMut(&::nnlang_runtime::train::arrays::EpochReport) -> bool) -> ::std::result::Result<::std::vec::Vec<::nnlang_runtime::train::arrays::EpochReport>, ::nnlang_runtime::train::arrays::FitError> {
                let o = ::nnlang_runtime::train::arrays::FitOptions { epochs: Self::EPOCHS, batch: Self::MAX_BATCH, validate: Self::VALIDATE, seed: Self::SEED };
                ::nnlang_runtime::train::arrays::fit(self, x, y, o, &mut progress)
            }

            /// The model's outputs for every row of raw `x` (`rows × INPUTS[0]`, any number
            /// of rows, run in batches of `MAX_BATCH`) after [`Self::preprocess`], as an owned
            /// array `rows × OUTPUT` — for a binned regression `rows × 1`, the values; rows of
            /// another width are an error, never a panic. Dropout is off.
            pub fn predict(&mut self, x: ::nnlang_runtime::ndarray::ArrayView2<'_, f32>) -> ::std::result::Result<::nnlang_runtime::ndarray::Array2<f32>, ::nnlang_runtime::array::ArrayError> {
                self.predict_inputs([x])
            }

            /// The loss (and accuracy, for classification) over every row of `x` against `y`,
            /// computed with the current weights in batches of `MAX_BATCH`.
            pub fn evaluate(&mut self, x: &[f32], y: &[f32]) -> ::nnlang_runtime::train::Evaluation {
                let rows = x.len() / Self::INPUTS[0];
                let mut scores = ::nnlang_runtime::train::Scores::default();
                let mut start = 0;
                while start < rows {
                    let n = ::std::cmp::min(Self::MAX_BATCH, rows - start);
                    let xs = &x[start * Self::INPUTS[0]..(start + n) * Self::INPUTS[0]];
                    let ys = &y[start * Self::TARGET_COLS..(start + n) * Self::TARGET_COLS];
                    let out = self.forward(xs, n);
                    scores.add(Self::LOSS, Self::OUTPUT, out, ys);
                    start += n;
                }
                scores.finish(Self::LOSS)
            }
        }
    } else {
        quote! {}
    };
    let worker = if n_inputs == 1 {
        quote! {
            impl ::nnlang_runtime::train::arrays::Trainable for #ty {
                fn widths(&self) -> (usize, usize) {
                    (Self::INPUTS[0], Self::TARGET_COLS)
                }
                fn max_batch(&self) -> usize {
                    Self::MAX_BATCH
                }
                fn recipe_optimizer(&self) -> ::nnlang_runtime::train::Optimizer<f32> {
                    #ty::optimizer(self)
                }
                fn rates(&self) -> ::nnlang_runtime::train::Rates {
                    Self::rates()
                }
                fn step(&mut self, x: &[f32], y: &[f32], rows: usize, opt: &mut ::nnlang_runtime::train::Optimizer<f32>) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                    self.train_step(x, y, rows, opt)
                }
                fn score(&mut self, x: &[f32], y: &[f32]) -> ::nnlang_runtime::train::Evaluation {
                    self.evaluate(x, y)
                }
                fn weights_mut(&mut self) -> &mut [f32] {
                    &mut self.params
                }
                fn preprocessing(&self) -> ::nnlang_runtime::data::preprocess::PreprocessRecipe {
                    ::nnlang_runtime::data::preprocess::PreprocessRecipe { scale: Self::SCALE, standardize: Self::STANDARDIZE, bins: Self::BINS }
                }
                fn set_preprocess(&mut self, preprocess: ::nnlang_runtime::data::preprocess::Preprocess) {
                    self.preprocess = preprocess;
                }
            }

            impl ::nnlang_runtime::train::Worker for #ty {
                fn loss_and_gradients_with(&mut self, params: &[f32], x: &[f32], y: &[f32], rows: usize) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                    #ty::loss_and_gradients_with(self, params, x, y, rows)
                }
                fn worker_gradients(&self) -> &[f32] {
                    &self.grads
                }
                fn set_lengths(&mut self, lengths: &[usize]) {
                    #ty::set_lengths(self, lengths)
                }
                fn per_step_output(&self) -> bool {
                    #ty::PER_STEP_OUTPUT
                }
            }
        }
    } else {
        quote! {}
    };
    quote! {
        #worker

        #[doc = #doc]
        #[doc = #doc_arena]
        pub struct #ty {
            params: ::std::vec::Vec<f32>,
            grads: ::std::vec::Vec<f32>,
            train_arena: ::nnlang_runtime::aligned_vec::AVec<f32, ::nnlang_runtime::aligned_vec::ConstAlign<64>>,
            infer_arena: ::nnlang_runtime::aligned_vec::AVec<f32, ::nnlang_runtime::aligned_vec::ConstAlign<64>>,
            team: ::std::option::Option<::std::sync::Arc<::nnlang_runtime::train::Team>>,
            rng: ::nnlang_runtime::rand_chacha::ChaCha8Rng,
            table: ::std::vec::Vec<::nnlang_runtime::plan::Param>,
            lengths: ::std::vec::Vec<usize>,
            preprocess: ::nnlang_runtime::data::preprocess::Preprocess,
        }

        #[allow(clippy::all, clippy::pedantic, unused_variables, unused_mut, unused_assignments)]
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
            /// The recipe's epochs, validation fraction and seed (what [`Self::fit`] uses).
            pub const EPOCHS: usize = #epochs_lit;
            /// The fraction of the rows [`Self::fit`] holds out for validation.
            pub const VALIDATE: f64 = #validate_lit;
            /// The recipe's seed.
            pub const SEED: u64 = #seed_lit;
            /// Steps of the longest sequence the model reads (0: it reads no sequence).
            pub const STEPS: usize = #steps;
            /// Whether the output (and the target) has a row per step of the sequence.
            pub const PER_STEP_OUTPUT: bool = #per_step_output;
            /// The recipe's loss.
            pub const LOSS: ::nnlang_runtime::plan::Loss = #loss_t;
            /// The data block's `scale`: [`Self::fit`] and [`Self::predict`] multiply raw
            /// inputs by it.
            pub const SCALE: ::std::option::Option<f32> = #scale_t;
            /// The data block's `standardize = true`: [`Self::fit`] learns the mean and
            /// deviation of each of this many values (an example's, or a step's) and
            /// [`Self::predict`] applies them.
            pub const STANDARDIZE: ::std::option::Option<usize> = #standardize_t;
            /// `cross_entropy(bins = n)`: [`Self::fit`] bins the targets, [`Self::predict`]
            /// returns each row's value (its likeliest bin's centre).
            pub const BINS: ::std::option::Option<usize> = #bins_t;

            /// A model with weights initialized as its recipe says (biases zero); the same
            /// seed gives the weights `nnlangc train` starts from.
            pub fn new(seed: u64) -> Self {
                let table = #table;
                let mut params = ::std::vec![0.0f32; #params_len];
                ::nnlang_runtime::train::initialize_table(&table, &mut params, #init, seed);
                Self {
                    params,
                    grads: ::std::vec![0.0f32; #params_len],
                    train_arena: ::nnlang_runtime::aligned_vec::AVec::from_iter(64, ::std::iter::repeat_n(0.0f32, #train_arena)),
                    infer_arena: ::nnlang_runtime::aligned_vec::AVec::from_iter(64, ::std::iter::repeat_n(0.0f32, #infer_arena)),
                    team: ::std::option::Option::None,
                    rng: <::nnlang_runtime::rand_chacha::ChaCha8Rng as ::nnlang_runtime::rand_chacha::rand_core::SeedableRng>::seed_from_u64(seed.wrapping_add(1)),
                    table,
                    lengths: ::std::vec::Vec::new(),
                    preprocess: ::nnlang_runtime::data::preprocess::Preprocess { scale: Self::SCALE, standardize: ::std::option::Option::None, bins: ::std::option::Option::None },
                }
            }

            /// What [`Self::predict`] does to raw inputs (and to its outputs, for a binned
            /// regression): the recipe's scale, and what [`Self::fit`] learned or
            /// [`Self::load`] read (`preprocess.json`). The slice-level calls
            /// ([`Self::forward`], [`Self::train_step`]) take data already preprocessed.
            pub fn preprocess(&self) -> &::nnlang_runtime::data::preprocess::Preprocess {
                &self.preprocess
            }

            /// Replaces what is done to raw data (statistics computed elsewhere).
            pub fn set_preprocess(&mut self, preprocess: ::nnlang_runtime::data::preprocess::Preprocess) {
                self.preprocess = preprocess;
            }

            /// The outputs for raw inputs, one array per model input (`rows × INPUTS[i]`, the
            /// same rows in each), each preprocessed, in batches of `MAX_BATCH`: an owned
            /// array `rows × OUTPUT` (`rows × 1` values for a binned regression). Arrays of
            /// another width or of different row counts are an error, never a panic.
            pub fn predict_inputs(&mut self, xs: [::nnlang_runtime::ndarray::ArrayView2<'_, f32>; #n_inputs_lit]) -> ::std::result::Result<::nnlang_runtime::ndarray::Array2<f32>, ::nnlang_runtime::array::ArrayError> {
                let rows = xs[0].nrows();
                let mut data: ::std::vec::Vec<::std::vec::Vec<f32>> = ::std::vec::Vec::with_capacity(#n_inputs_lit);
                for (i, x) in xs.iter().enumerate() {
                    if x.ncols() != Self::INPUTS[i] {
                        return ::std::result::Result::Err(::nnlang_runtime::array::ArrayError::Width { expected: Self::INPUTS[i], found: x.ncols() });
                    }
                    if x.nrows() != rows {
                        return ::std::result::Result::Err(::nnlang_runtime::array::ArrayError::Rows { expected: rows, found: x.nrows() });
                    }
                    let mut v: ::std::vec::Vec<f32> = x.iter().copied().collect();
                    self.preprocess.apply(&mut v);
                    data.push(v);
                }
                let mut out = ::std::vec::Vec::with_capacity(rows * Self::OUTPUT);
                let mut start = 0;
                while start < rows {
                    let n = ::std::cmp::min(Self::MAX_BATCH, rows - start);
                    let batch: [&[f32]; #n_inputs_lit] = ::std::array::from_fn(|i| &data[i][start * Self::INPUTS[i]..(start + n) * Self::INPUTS[i]]);
                    #predict_call
                    start += n;
                }
                if let ::std::option::Option::Some(b) = self.preprocess.bins {
                    let values: ::std::vec::Vec<f32> = out.chunks_exact(Self::OUTPUT.max(1)).map(|r| {
                        let best = r.iter().enumerate().fold(0, |k, (i, v)| if *v > r[k] { i } else { k });
                        b.centre(best)
                    }).collect();
                    return ::std::result::Result::Ok(::nnlang_runtime::ndarray::Array2::from_shape_vec((rows, 1), values).expect("a value per row, by construction"));
                }
                ::std::result::Result::Ok(::nnlang_runtime::ndarray::Array2::from_shape_vec((rows, Self::OUTPUT), out).expect("rows × OUTPUT values, by construction"))
            }

            /// Starts new streams: the recurrent states carried from one call to the next (a
            /// model trained with `bptt`) become zero.
            pub fn reset_state(&mut self) {
                let train: &[(usize, usize)] = &[#(#train_carried),*];
                let infer: &[(usize, usize)] = &[#(#infer_carried),*];
                for &(at, len) in train {
                    self.train_arena[at..at + len].fill(0.0);
                }
                for &(at, len) in infer {
                    self.infer_arena[at..at + len].fill(0.0);
                }
            }

            /// For a model that reads sequences: each example's length (1 to `STEPS`) for the
            /// following calls, which then treat the steps past it as padding; empty (the
            /// default) when every sequence has `STEPS` steps.
            pub fn set_lengths(&mut self, lengths: &[usize]) {
                ::std::assert!(lengths.iter().all(|&l| l >= 1 && l <= Self::STEPS), "a sequence has 1 to {} steps", Self::STEPS);
                self.lengths.clear();
                self.lengths.extend_from_slice(lengths);
            }

            /// The model's output for `rows` rows (row-major, `rows × INPUTS[i]` values per
            /// input); dropout is off.
            pub fn forward(&mut self, #forward_sig, rows: usize) -> &[f32] {
                #forward_inputs
                ::std::assert!(rows >= 1 && rows <= Self::MAX_BATCH, "a batch has 1 to {} rows", Self::MAX_BATCH);
                #(#check_inputs)*
                fn steps(cx: &mut ::nnlang_runtime::mem::Cx<'_, f32>) -> ::nnlang_runtime::ops::Done {
                    #forward_steps
                    ::std::result::Result::Ok(())
                }
                let mut cx = ::nnlang_runtime::mem::Cx {
                    rows,
                    batch: rows,
                    steps: 1,
                    lengths: ::nnlang_runtime::mem::batch_lengths(&self.lengths, rows, Self::STEPS),
                    mem: ::nnlang_runtime::mem::Mem { arena: &mut self.infer_arena[..], inputs: &inputs, target: &[] },
                    params: &self.params,
                    grads: &mut [],
                    rng: &mut self.rng,
                    loss: ::std::option::Option::None,
                    team: self.team.as_deref(),
                };
                if let ::std::result::Result::Err(e) = steps(&mut cx) {
                    ::std::unreachable!("an inference plan has no loss step, so no step fails: {}", e);
                }
                &self.infer_arena[#out_offset..#out_offset + rows * #out_cols]
            }

            /// Forward, loss and backward for one batch: returns the mean loss and leaves the
            /// gradients in [`Self::gradients`].
            pub fn loss_and_gradients(&mut self, #forward_sig, y: &[f32], rows: usize) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                let params = ::std::mem::take(&mut self.params);
                let result = self.loss_and_gradients_with(&params, #call y, rows);
                self.params = params;
                result
            }

            /// [`Self::loss_and_gradients`] with weights held elsewhere (a data-parallel
            /// worker reads the master's).
            pub fn loss_and_gradients_with(&mut self, params: &[f32], #forward_sig, y: &[f32], rows: usize) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                #forward_inputs
                ::std::assert!(rows >= 1 && rows <= Self::MAX_BATCH, "a batch has 1 to {} rows", Self::MAX_BATCH);
                #(#check_inputs)*
                ::std::assert!(y.len() >= rows * Self::TARGET_COLS, "the target needs {} rows of {} values", rows, Self::TARGET_COLS);
                fn steps(cx: &mut ::nnlang_runtime::mem::Cx<'_, f32>) -> ::nnlang_runtime::ops::Done {
                    #train_steps
                    ::std::result::Result::Ok(())
                }
                let mut cx = ::nnlang_runtime::mem::Cx {
                    rows,
                    batch: rows,
                    steps: 1,
                    lengths: ::nnlang_runtime::mem::batch_lengths(&self.lengths, rows, Self::STEPS),
                    mem: ::nnlang_runtime::mem::Mem { arena: &mut self.train_arena[..], inputs: &inputs, target: y },
                    params,
                    grads: &mut self.grads[..],
                    rng: &mut self.rng,
                    loss: ::std::option::Option::None,
                    team: self.team.as_deref(),
                };
                steps(&mut cx)?;
                ::std::result::Result::Ok(cx.loss.unwrap_or(0.0))
            }

            /// The loss and every parameter's gradient in double precision, with the weights
            /// `params` (laid out as [`Self::weights`]): the same straight-line steps on `f64`,
            /// for a numerical gradient check of this generated code. Dropout draws from a
            /// generator seeded with `seed` (equal seeds, equal masks); a carried state
            /// starts from zero.
            pub fn loss_and_gradients_f64(&self, params: &[f64], #sig_f64, y: &[f64], rows: usize, seed: u64) -> ::std::result::Result<(f64, ::std::vec::Vec<f64>), ::nnlang_runtime::mem::ExecError> {
                #inputs_f64
                ::std::assert!(rows >= 1 && rows <= Self::MAX_BATCH, "a batch has 1 to {} rows", Self::MAX_BATCH);
                #(#check_inputs)*
                ::std::assert!(params.len() == Self::PARAMS, "{} parameters", Self::PARAMS);
                ::std::assert!(y.len() >= rows * Self::TARGET_COLS, "the target needs {} rows of {} values", rows, Self::TARGET_COLS);
                fn steps<T: ::nnlang_runtime::Float>(cx: &mut ::nnlang_runtime::mem::Cx<'_, T>) -> ::nnlang_runtime::ops::Done {
                    #train_steps
                    ::std::result::Result::Ok(())
                }
                let mut arena = ::std::vec![0.0f64; #train_arena];
                let mut grads = ::std::vec![0.0f64; #params_len];
                let mut rng = <::nnlang_runtime::rand_chacha::ChaCha8Rng as ::nnlang_runtime::rand_chacha::rand_core::SeedableRng>::seed_from_u64(seed);
                let mut cx = ::nnlang_runtime::mem::Cx {
                    rows,
                    batch: rows,
                    steps: 1,
                    lengths: ::nnlang_runtime::mem::batch_lengths(&self.lengths, rows, Self::STEPS),
                    mem: ::nnlang_runtime::mem::Mem { arena: &mut arena[..], inputs: &inputs, target: y },
                    params,
                    grads: &mut grads[..],
                    rng: &mut rng,
                    loss: ::std::option::Option::None,
                    team: ::std::option::Option::None,
                };
                steps(&mut cx)?;
                let loss = cx.loss.unwrap_or(0.0);
                ::std::result::Result::Ok((loss, grads))
            }

            /// One training step: [`Self::loss_and_gradients`], then the optimizer's update.
            pub fn train_step(&mut self, #forward_sig, y: &[f32], rows: usize, optimizer: &mut impl ::nnlang_runtime::interp::Updater<f32>) -> ::std::result::Result<f64, ::nnlang_runtime::mem::ExecError> {
                let loss = self.loss_and_gradients(#call y, rows)?;
                optimizer.update(&mut self.params, &self.grads);
                ::std::result::Result::Ok(loss)
            }

            /// The recipe's learning rates, epoch by epoch (`at(epoch)`; a plateau schedule
            /// also watches each epoch's loss, `observe(loss)`).
            pub fn rates() -> ::nnlang_runtime::train::Rates {
                ::nnlang_runtime::train::Rates::new(#base_lr, #schedule)
            }

            /// The optimizer of the model's recipe (learning rate, momentum, regularization,
            /// max-norm, weight average).
            pub fn optimizer(&self) -> ::nnlang_runtime::train::Optimizer<f32> {
                #optimizer
            }

            #evaluate

            /// Every parameter, all tensors together (see [`Self::parameters`] for where
            /// each one is).
            pub fn weights(&self) -> &[f32] {
                &self.params
            }

            /// Every parameter, to change in place (to load or average weights).
            pub fn weights_mut(&mut self) -> &mut [f32] {
                &mut self.params
            }

            /// The gradients of the last [`Self::loss_and_gradients`], laid out as the weights.
            pub fn gradients(&self) -> &[f32] {
                &self.grads
            }

            /// The parameter tensors: PyTorch names, shapes and places in [`Self::weights`].
            pub fn parameters(&self) -> &[::nnlang_runtime::plan::Param] {
                &self.table
            }

            /// One parameter tensor by name (`dense_0.weight`).
            pub fn param(&self, name: &str) -> ::std::option::Option<&[f32]> {
                let p = self.table.iter().find(|p| p.name == name)?;
                ::std::option::Option::Some(&self.params[p.buf.offset..p.buf.offset + p.buf.len])
            }

            /// One parameter tensor by name, to change in place.
            pub fn param_mut(&mut self, name: &str) -> ::std::option::Option<&mut [f32]> {
                let p = self.table.iter().find(|p| p.name == name)?;
                ::std::option::Option::Some(&mut self.params[p.buf.offset..p.buf.offset + p.buf.len])
            }

            /// Saves the weights as safetensors, and what is done to raw data as
            /// `preprocess.json` beside them, as `nnlangc train` does.
            pub fn save(&self, path: impl ::std::convert::AsRef<::std::path::Path>) -> ::std::result::Result<(), ::nnlang_runtime::io::CheckpointError> {
                let path = path.as_ref();
                ::nnlang_runtime::io::save(path, &self.table, &self.params)?;
                if !self.preprocess.is_empty() {
                    let beside = path.with_file_name("preprocess.json");
                    ::nnlang_runtime::io::write_atomic(&beside, self.preprocess.to_json().as_bytes()).map_err(::nnlang_runtime::io::CheckpointError)?;
                }
                ::std::result::Result::Ok(())
            }

            /// Loads weights saved by [`Self::save`] or `nnlangc train`, with the
            /// `preprocess.json` beside them when there is one; refuses a file whose tensors
            /// do not match, and changes nothing then.
            pub fn load(&mut self, path: impl ::std::convert::AsRef<::std::path::Path>) -> ::std::result::Result<(), ::nnlang_runtime::io::CheckpointError> {
                let path = path.as_ref();
                let beside = path.with_file_name("preprocess.json");
                let preprocess = if beside.exists() {
                    ::std::option::Option::Some(::nnlang_runtime::data::preprocess::Preprocess::read(&beside).map_err(|e| ::nnlang_runtime::io::CheckpointError(e.to_string()))?)
                } else {
                    ::std::option::Option::None
                };
                ::nnlang_runtime::io::load(path, &self.table, &mut self.params)?;
                if let ::std::option::Option::Some(p) = preprocess {
                    self.preprocess = p;
                }
                ::std::result::Result::Ok(())
            }
        }
    }
}
