//! A run directory's files, written as training goes.

use super::*;
use std::borrow::Cow;

/// The files of a run directory by name, their bytes borrowed where the recorder holds them.
pub type Files<'a> = Vec<(String, Cow<'a, [u8]>)>;

/// Renders a run's files from the history and the weights.
pub struct Recorder {
    /// The model's name.
    pub model: String,
    /// The parameter tensors, in the order of the model's layers.
    pub table: Vec<nnlang_runtime::plan::Param>,
    /// The dimensions of the model's (first) input.
    pub input_dims: Vec<usize>,
    pub(super) source: String,
    pub(super) epochs: usize,
    /// A character model's vocabulary (`vocab.json`).
    pub(super) vocab: Option<String>,
    /// What was done to the data (`preprocess.json`).
    pub(super) preprocess: Option<String>,
    /// The resume state of the last completed epoch (`state.safetensors`, `state.json`).
    pub(super) state: Vec<(&'static str, Vec<u8>)>,
    /// The weights of the last `keep` completed epochs, by epoch.
    pub(super) checkpoints: std::collections::VecDeque<(usize, Vec<u8>)>,
    /// With a weight average: the raw (not averaged) weights (`weights.raw.safetensors`).
    pub(super) raw: Option<Vec<u8>>,
    /// How many epochs' weights to keep (0: none).
    pub keep: usize,
    pub(super) identity: resume::Identity,
    /// Epochs completed in the kept resume state.
    pub(super) saved: usize,
}

/// The file of epoch `n`'s weights in a run directory (`epoch-3.safetensors`).
fn checkpoint_name(n: usize) -> String {
    format!("epoch-{n}.safetensors")
}

/// How many epochs' weights a run directory keeps (`epoch-N.safetensors`) unless told.
pub const KEEP_CHECKPOINTS: usize = 3;

impl Recorder {
    /// For a resumed run: keeps what its directory holds of the epochs done (the resume
    /// state, the last epochs' weights), so that every write still has them.
    pub fn adopt(&mut self, dir: &Path, done: usize) -> Result<(), Error> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| Error::Input(format!("{}: {e}", dir.join(name).display())))
        };
        self.state = vec![("state.safetensors", read("state.safetensors")?), ("state.json", read("state.json")?)];
        self.saved = done;
        self.raw = read("weights.raw.safetensors").ok();
        for n in done.saturating_sub(self.keep.saturating_sub(1)).max(1)..=done {
            if let Ok(bytes) = read(&checkpoint_name(n)) {
                self.checkpoints.push_back((n, bytes));
            }
        }
        Ok(())
    }

    /// How many epochs the resume state kept (and so the run directory) has completed.
    pub fn epochs_saved(&self) -> usize {
        self.saved
    }

    /// Keeps an epoch's resume state and weights for the files written from now on.
    pub fn remember(&mut self, weights: &[f32], state: &train::Resume) -> Result<(), Error> {
        self.state = resume::to_files(state, &self.identity)?;
        self.saved = state.epochs_done;
        let bytes = nnlang_runtime::io::to_bytes(&self.table, weights).map_err(|e| Error::Usage(e.to_string()))?;
        self.checkpoints.push_back((state.epochs_done, bytes));
        if state.opt.average.is_some() {
            let raw =
                nnlang_runtime::io::to_bytes(&self.table, &state.params).map_err(|e| Error::Usage(e.to_string()))?;
            self.raw = Some(raw);
        }
        while self.checkpoints.len() > self.keep {
            self.checkpoints.pop_front();
        }
        Ok(())
    }

    /// `weights.safetensors`, `metrics.csv`, `model.nn`, the resume state and the kept
    /// epochs' weights (the manifest is [`Recorder::manifest`]).
    pub fn files(&self, history: &[nnlang_runtime::train::EpochStats], weights: &[f32]) -> Result<Files<'_>, Error> {
        let checkpoint = nnlang_runtime::io::to_bytes(&self.table, weights).map_err(|e| Error::Usage(e.to_string()))?;
        let owned = |b: Vec<u8>| Cow::Owned(b);
        let mut files = vec![
            ("weights.safetensors".to_string(), owned(checkpoint)),
            ("metrics.csv".to_string(), owned(artifacts::metrics_csv(history).into_bytes())),
            ("layers.csv".to_string(), owned(artifacts::layers_csv(history).into_bytes())),
            ("model.nn".to_string(), Cow::Borrowed(self.source.as_bytes())),
        ];
        if let Some(v) = &self.vocab {
            files.push(("vocab.json".to_string(), Cow::Borrowed(v.as_bytes())));
        }
        if let Some(p) = &self.preprocess {
            files.push(("preprocess.json".to_string(), Cow::Borrowed(p.as_bytes())));
        }
        // What the recorder holds is written from where it is held (the resume state and the
        // kept epochs' weights are megabytes each): borrowed, not copied.
        files.extend(self.state.iter().map(|(n, b)| (n.to_string(), Cow::Borrowed(&b[..]))));
        if let Some(raw) = &self.raw {
            files.push(("weights.raw.safetensors".to_string(), Cow::Borrowed(&raw[..])));
        }
        for (epoch, bytes) in &self.checkpoints {
            files.push((checkpoint_name(*epoch), Cow::Borrowed(&bytes[..])));
        }
        Ok(files)
    }

    /// What the manifest says of the run (`complete`: it ended normally, rather than after
    /// an epoch); its format, version and files are the run directory's to add.
    pub fn manifest(
        &self,
        history: &[nnlang_runtime::train::EpochStats],
        complete: bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("model".into(), self.model.clone().into());
        m.insert("epochs".into(), self.epochs.into());
        m.insert("epochs_done".into(), history.len().into());
        m.insert("complete".into(), complete.into());
        m
    }
}
