//! The command line's arguments (clap): every command, its flags and their checks.

use clap::{Args, Parser, Subcommand};
use nnlang::ir::ParamValue;
use nnlang::lower::parse_param_value;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "nnlangc", version, about = "The nnlang compiler: check, inspect and run neural-network models")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Check a model file and print a summary of each model: layers, shapes, parameters,
    /// memory.
    Check {
        #[command(flatten)]
        model: ModelArgs,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a compiler stage's output.
    Emit {
        #[command(flatten)]
        model: ModelArgs,
        /// The IR in its stable text form (the default).
        #[arg(long, group = "what")]
        ir: bool,
        /// The IR as a Graphviz graph.
        #[arg(long, group = "what")]
        dot: bool,
        /// The model compiled to Rust: a struct with constant shapes over the runtime's
        /// kernels, as `nnlang_macros::nn!` generates it.
        #[arg(long, group = "what")]
        rust: bool,
        /// Show the IR after this pass (loss, fuse-softmax-ce, fold-batchnorm, fuse-dense,
        /// fuse-pool, dce, inplace) of the training pipeline (the inference pipeline when the file has no
        /// `train` block; only it folds batch norms).
        #[arg(long, value_name = "PASS")]
        after: Option<String>,
    },
    /// Train a model with the recipe of its `train` block, on the data of its `data` block.
    Train {
        #[command(flatten)]
        model: ModelArgs,
        /// Train for this many epochs instead of the recipe's.
        #[arg(long, value_parser = at_least_one)]
        epochs: Option<usize>,
        /// Where to write weights.safetensors, metrics.csv, curves.svg and model.nn
        /// (default: runs/MODEL).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Use only the first N training (and test) examples.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        limit: Option<usize>,
        /// Print only the final results.
        #[arg(long)]
        quiet: bool,
        /// Threads for the training step (a run repeats exactly for a given count; see
        /// --split).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// How the threads share each step: `products` (each large dense layer's products
        /// split among them: the results are one thread's, bit for bit, whatever the count),
        /// `batch` (each thread a share of the batch's rows, the gradients averaged; `mpirun
        /// -n N` trains as `--threads N --split batch`), or `auto`: products for a model of dense
        /// layers whose activations at its batch are fewer values than its weights (less to
        /// move between the cores), batch otherwise.
        #[arg(long, value_enum, default_value_t = SplitArg::Auto)]
        split: SplitArg,
        /// Continue the run in this directory from its last completed epoch, exactly as if it
        /// had never stopped (same seed, batch, and cut of each batch over threads: --threads,
        /// --split; --epochs to train further).
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "init")]
        resume: Option<PathBuf>,
        /// Start from these weights (a checkpoint of this model) instead of the recipe's
        /// initialization.
        #[arg(long, value_name = "WEIGHTS")]
        init: Option<PathBuf>,
        /// Keep the weights of the last K completed epochs (epoch-N.safetensors).
        #[arg(long, value_name = "K", default_value_t = nnlang::session::KEEP_CHECKPOINTS)]
        keep: usize,
    },
    /// Evaluate trained weights on the test split: loss, accuracy, confusion matrix.
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// The weights, as written by `nnlangc train`.
        #[arg(long, required_unless_present = "ensemble", conflicts_with = "ensemble")]
        weights: Option<PathBuf>,
        /// An ensemble's directory, as written by `nnlangc ensemble`.
        #[arg(long, value_name = "DIR")]
        ensemble: Option<PathBuf>,
        /// Use only the first N test examples.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        limit: Option<usize>,
    },
    /// Run a model on every row of a .npy array and write its outputs as .npy.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, required_unless_present = "ensemble", conflicts_with = "ensemble")]
        weights: Option<PathBuf>,
        /// An ensemble's directory: its members' mean output.
        #[arg(long, value_name = "DIR")]
        ensemble: Option<PathBuf>,
        /// An array of shape [batch, …the input's dimensions].
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Use the weights without their preprocess.json even though the source preprocesses
        /// its data (the inputs are then used as they are).
        #[arg(long)]
        raw: bool,
    },
    /// Check the compiled gradients against centred differences (the notes' procedure):
    /// double precision, a few examples, sampled coordinates of every parameter tensor, a
    /// verdict per tensor. Exits with 1 when a gradient is wrong.
    Gradcheck {
        #[command(flatten)]
        model: ModelArgs,
        /// The difference step h (the notes: 1e-6 to 1e-4).
        #[arg(long, default_value_t = 1e-5)]
        step: f64,
        /// Examples in the batch.
        #[arg(long, default_value_t = 4)]
        examples: usize,
        /// Coordinates sampled per parameter tensor.
        #[arg(long, default_value_t = 20)]
        coordinates: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The notes' sanity checks before training: the loss at initialization is chance,
    /// regularization raises it, and the model overfits 20 examples. Exits with 1 when one
    /// fails.
    Sanity {
        #[command(flatten)]
        model: ModelArgs,
        /// Use only the first N training examples.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        limit: Option<usize>,
    },
    /// Run the file's `search` block: random trials in stages from coarse to fine, the
    /// trials table, the best configuration as a .nn file, and a plot of the scores.
    Search {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to write trials.csv, best.nn and search.svg (default: runs/MODEL-search);
        /// a search there before is resumed.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Trials trained at once (each on one thread).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Use only the first N training examples.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        limit: Option<usize>,
    },
    /// Run the file's `ensemble` block: train its members, and score their averaged
    /// probabilities beside each member's on the test set.
    Ensemble {
        #[command(flatten)]
        model: ModelArgs,
        /// Where the members' runs and ensemble.json go (default: runs/MODEL-ensemble);
        /// members already trained there are kept.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Threads for each member's training.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Use only the first N training (and test) examples.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        limit: Option<usize>,
        /// The search whose best trials are the members (default: runs/MODEL-search).
        #[arg(long, value_name = "DIR")]
        search: Option<PathBuf>,
        /// Print only the results.
        #[arg(long)]
        quiet: bool,
    },
    /// Write the trained model in another framework's terms: `--onnx`, an ONNX file with the
    /// weights and the preprocessing inside; `--pytorch`, a Python file with an `nn.Module`
    /// that loads the weights nnlang saved.
    #[command(group(clap::ArgGroup::new("format").required(true).args(["onnx", "pytorch"])))]
    Export {
        #[command(flatten)]
        model: ModelArgs,
        /// An ONNX file (opset 17, dynamic batch size; needs --weights; written beside them
        /// as model.onnx unless --output says where).
        #[arg(long)]
        onnx: bool,
        /// A PyTorch module: a Python file (standard output unless --output says where).
        #[arg(long)]
        pytorch: bool,
        /// The trained weights, whose preprocessing (preprocess.json beside them) goes inside
        /// the export.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Where to write it.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Use the weights without their preprocess.json even though the source preprocesses
        /// its data (the inputs are then used as they are).
        #[arg(long)]
        raw: bool,
        /// With --onnx, for a model of sequences of variable length: a second input `lengths`
        /// (int32, one per row) that every recurrent node takes as its `sequence_lens`, so that
        /// a ragged batch runs in one call (onnxruntime; tract does not take it).
        #[arg(long, requires = "onnx")]
        sequence_lengths: bool,
    },
    /// Rewrite .nn files in nnlang's one layout (docs/language.md, "Layout"): what the
    /// programs mean is unchanged and comments stay where they were.
    Fmt {
        /// The files; `-` formats standard input to standard output.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing: name each file whose layout differs, with its first line that
        /// does, and exit with 1 if there is one.
        #[arg(long)]
        check: bool,
    },
    /// Serve the language server protocol over standard input and output (for editors:
    /// diagnostics as you type, shapes on hover, completion, navigation, formatting).
    Lsp,
    /// Generate text with a character model trained by `nnlangc train` on a `text(…)`.
    Sample {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        weights: PathBuf,
        /// The vocabulary saved by training (default: `vocab.json` beside the weights).
        #[arg(long)]
        vocab: Option<PathBuf>,
        /// The text to continue (default: a new line).
        #[arg(long, default_value = "")]
        prime: String,
        /// Characters to generate.
        #[arg(long, default_value_t = 500)]
        length: usize,
        /// Below 1 picks likelier characters, above 1 more surprising ones.
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time the model as written, layer by layer: the training step (forward, backward, the
    /// optimizer's update) and inference, each layer's GFLOP/s against this machine's
    /// measured FMA peak, and the memory it moves. Runs on made-up inputs of the model's
    /// shapes: no data is read.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Examples per batch (default: the recipe's `batch`).
        #[arg(long, value_parser = at_least_one)]
        batch: Option<usize>,
        /// Threads, as `train --threads`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// How the threads share a training step, as `train --split`.
        #[arg(long, value_enum, default_value_t = SplitArg::Auto)]
        split: SplitArg,
        /// Time each of the two phases for at least this many seconds.
        #[arg(long, default_value_t = 2.0, value_parser = seconds)]
        seconds: f64,
        /// Print the profile as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A duration in seconds: positive, at most an hour.
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        Ok(_) => Err("must be more than 0 and at most 3600".to_string()),
        Err(_) => Err(format!("`{s}` is not a number of seconds")),
    }
}

/// The source file and what to do to it: the model and the `--set` overrides.
#[derive(Args)]
pub struct ModelArgs {
    /// The .nn source file.
    pub file: PathBuf,
    /// Only this model (default: every model in the file; `train` and `eval` take the model
    /// of the first `train` block).
    #[arg(long)]
    pub model: Option<String>,
    /// Override a model parameter (`--set N=3`) or a setting of the `train` block
    /// (`--set optimizer.lr=0.01`, `--set seed=3`, `--set "schedule=step(every = 5)"`);
    /// repeatable, checked as if written in the file.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub(crate) set: Vec<Set>,
}

/// One `--set`: a model parameter's value, or a recipe setting's source text.
#[derive(Clone, Debug)]
pub(crate) enum Set {
    Param(String, ParamValue),
    Recipe(String, String),
}

/// A count that must be 1 or more (`--limit 0` would evaluate nothing and report 0%).
/// `--split`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum SplitArg {
    Auto,
    Batch,
    Products,
}

impl From<SplitArg> for nnlang_runtime::train::Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Auto => Self::Auto,
            SplitArg::Batch => Self::Batch,
            SplitArg::Products => Self::Products,
        }
    }
}

pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

pub(crate) fn parse_set(s: &str) -> Result<Set, String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let key = k.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("`{key}` is not a parameter name or a recipe setting"));
    }
    if nnlang::settings::is_recipe_key(key) {
        return Ok(Set::Recipe(key.to_string(), v.trim().to_string()));
    }
    let digits = v.trim().trim_start_matches('-');
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && v.trim().parse::<i64>().is_err() {
        return Err(format!("`{}` is beyond the largest integer ({})", v.trim(), i64::MAX));
    }
    let value = parse_param_value(v).ok_or_else(|| format!("`{v}` is not an integer, a number or true/false"))?;
    Ok(Set::Param(key.to_string(), value))
}

/// Why a command failed, and so its exit code.
pub enum Failure {
    /// The source (or its data) is wrong; already reported (exit 1).
    Source,
    /// The command line or the file system refused (exit 2).
    Usage(String),
    /// Exit with this code, after saying why.
    Exit(u8),
}
