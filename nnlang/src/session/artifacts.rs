//! What a training run leaves in its directory (the weights, the metrics as CSV, the model as
//! trained, the manifest; the command line adds the curves), and how the directory is
//! replaced all at once ([`RunDir`]).

use crate::{Compiled, Model};
use nnlang_runtime::train::EpochStats;
use std::path::{Path, PathBuf};

/// The file that marks a directory as a run directory nnlang wrote, and describes the run.
pub const MANIFEST: &str = "run.json";

/// A run directory: every file of a run, replaced all at once.
///
/// Each write stages the files in a new sibling directory, syncs them, and swaps it with the
/// run directory in one step (`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere two renames,
/// between which the directory is briefly absent but never mixed). The directory therefore
/// always holds one complete run: a kill at any moment leaves the previous epoch's files,
/// all of them, or the new ones.
pub struct RunDir {
    /// The directory's absolute path.
    dir: PathBuf,
}

fn describe(path: &Path) -> String {
    path.display().to_string()
}

impl RunDir {
    /// Checks that `dir` can hold a run, before anything is trained: it is absent (its parent
    /// is created), or a directory that is empty or holds an earlier run (its `run.json`).
    /// Writing is probed in its parent.
    pub fn prepare(dir: &Path) -> Result<RunDir, String> {
        let shown = describe(dir);
        let abs = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| format!("{shown}: {e}"))?.join(dir)
        };
        match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {
                let abs = std::fs::canonicalize(&abs).map_err(|e| format!("{shown}: {e}"))?;
                let mut entries = std::fs::read_dir(&abs).map_err(|e| format!("{shown}: cannot read: {e}"))?;
                let empty = entries.next().is_none();
                if !empty && !abs.join(MANIFEST).is_file() {
                    return Err(format!(
                        "{shown}: refusing to write a run here: the directory holds files that are not an nnlang run (no {MANIFEST}); choose a new or empty directory"
                    ));
                }
                let run = RunDir { dir: abs };
                run.probe()?;
                Ok(run)
            }
            Ok(_) => Err(format!("{shown}: refusing to write a run here: it exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = abs.parent().ok_or_else(|| format!("{shown}: not a directory name"))?;
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: cannot create: {e}", describe(parent)))?;
                let parent = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", describe(parent)))?;
                let name = abs.file_name().ok_or_else(|| format!("{shown}: not a directory name"))?;
                let run = RunDir { dir: parent.join(name) };
                run.probe()?;
                Ok(run)
            }
            Err(e) => Err(format!("{shown}: {e}")),
        }
    }

    /// The run directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn parent(&self) -> &Path {
        self.dir.parent().unwrap_or(Path::new("/"))
    }

    fn stage_name(&self, what: &str) -> PathBuf {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.parent().join(format!(".{name}.{what}-{}", std::process::id()))
    }

    /// Creates and removes a directory beside the run's: fails now, not after training, when
    /// the run could not be written. Removes what a killed earlier run left staged beside it.
    fn probe(&self) -> Result<(), String> {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.parent()) {
            for e in entries.flatten() {
                let f = e.file_name().to_string_lossy().into_owned();
                let stale = [".writing-", ".old-", ".probe-"]
                    .iter()
                    .any(|k| f.strip_prefix('.').and_then(|r| r.strip_prefix(&name)).is_some_and(|r| r.starts_with(k)));
                if stale {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let probe = self.stage_name("probe");
        std::fs::create_dir(&probe)
            .and_then(|_| std::fs::remove_dir(&probe))
            .map_err(|e| format!("{}: cannot write a run here: {e}", describe(&self.dir)))
    }

    /// Replaces the run's files with `files` (name, bytes), all at once.
    pub fn write(&self, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        let stage = self.stage_name("writing");
        let _ = std::fs::remove_dir_all(&stage);
        let result = self.stage(&stage, files).and_then(|_| self.swap(&stage));
        let _ = std::fs::remove_dir_all(&stage);
        if let Ok(d) = std::fs::File::open(self.parent()) {
            let _ = d.sync_all();
        }
        result
    }

    fn stage(&self, stage: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        use std::io::Write;
        let fail = |e: std::io::Error| format!("{}: cannot write: {e}", describe(&self.dir));
        std::fs::create_dir(stage).map_err(fail)?;
        for (name, bytes) in files {
            let mut f = std::fs::File::create(stage.join(name)).map_err(fail)?;
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(fail)?;
        }
        std::fs::File::open(stage).and_then(|d| d.sync_all()).map_err(fail)
    }

    /// Puts `stage` where the run directory is; afterwards `stage` holds the old run (or
    /// nothing) and is removed by the caller.
    fn swap(&self, stage: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: cannot replace the run: {e}", describe(&self.dir));
        if !self.dir.exists() {
            return std::fs::rename(stage, &self.dir).map_err(fail);
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            use nix::fcntl::{renameat2, RenameFlags};
            let parent = std::fs::File::open(self.parent()).map_err(fail)?;
            if renameat2(&parent, stage, &parent, &self.dir, RenameFlags::RENAME_EXCHANGE).is_ok() {
                return Ok(());
            }
        }
        // No atomic exchange here: move the old run aside, then the new one in.
        let old = self.stage_name("old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&self.dir, &old).map_err(fail)?;
        if let Err(e) = std::fs::rename(stage, &self.dir) {
            let _ = std::fs::rename(&old, &self.dir);
            return Err(fail(e));
        }
        std::fs::rename(&old, stage).map_err(fail)
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v}"))
}

/// One line per epoch: losses (data and penalty), training and validation accuracy, rate,
/// speed and update/weight ratios.
pub fn metrics_csv(history: &[EpochStats]) -> String {
    let mut out = String::from(
        "epoch,train_loss,penalty,train_accuracy,val_loss,val_accuracy,lr,samples_per_sec,seconds,min_update_ratio,max_update_ratio\n",
    );
    for s in history {
        let min = s.ratios.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
        let max = s.ratios.iter().map(|r| r.ratio).fold(0.0, f64::max);
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{:.1},{:.3},{},{}\n",
            s.epoch,
            s.train_loss,
            s.penalty,
            opt(s.train_accuracy),
            opt(s.val_loss),
            opt(s.val_accuracy),
            s.lr,
            s.samples_per_sec,
            s.seconds,
            if min.is_finite() { format!("{min:e}") } else { String::new() },
            if s.ratios.is_empty() { String::new() } else { format!("{max:e}") },
        ));
    }
    out
}

/// Inside the model, one line per epoch and layer (activations: mean, spread, dead ReLU
/// units, saturated outputs) or parameter tensor (gradient norm, update/weight ratio).
pub fn layers_csv(history: &[EpochStats]) -> String {
    let mut out = String::from("epoch,name,kind,mean,std,dead_fraction,saturated_fraction,grad_norm,update_ratio\n");
    for s in history {
        for l in &s.layers {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},,\n",
                s.epoch,
                l.name,
                l.function,
                l.mean,
                l.std,
                opt(l.dead),
                opt(l.saturated)
            ));
        }
        for (name, g) in &s.grad_norms {
            let ratio = s.ratios.iter().find(|r| &r.name == name).map(|r| r.ratio);
            out.push_str(&format!("{},{},tensor,,,,,{},{}\n", s.epoch, name, g, opt(ratio)));
        }
    }
    out
}

/// The model's source with each parameter's default replaced by the value it was trained
/// with, under a header saying so.
pub fn resolved_source(source: &str, compiled: &Compiled, model: &Model, note: &str) -> String {
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if let Some(m) = compiled.file.models.iter().find(|m| m.name.name == model.graph.name) {
        for p in &m.params {
            if let (Some(default), Some((_, v))) =
                (&p.default, model.graph.params.iter().find(|(k, _)| *k == p.name.name))
            {
                edits.push((default.span.start, default.span.end, v.to_string()));
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (s, e, text) in edits {
        if s <= e && e <= out.len() && out.is_char_boundary(s) && out.is_char_boundary(e) {
            out.replace_range(s..e, &text);
        }
    }
    format!("// {note}\n{out}")
}

/// `source` with every relative path of its `data` blocks (relative to `base`, the source's
/// directory) made relative to `dir`, where the source is written: a run's `model.nn` and a
/// search's `best.nn` read the same data from where they are.
pub fn relocate_data_paths(source: &str, base: &Path, dir: &Path) -> String {
    use crate::syntax::ast::{BlockKind, EntryKind, ExprKind};
    let Ok(file) = crate::syntax::parse(source) else { return source.to_string() };
    let absolute = |p: &Path| {
        std::fs::canonicalize(if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (base, dir) = (absolute(base), absolute(dir));
    let mut edits = Vec::new();
    for b in file.blocks.iter().filter(|b| b.kind == BlockKind::Data) {
        for e in &b.entries {
            let EntryKind::Assign(_, v) = &e.kind else { continue };
            let ExprKind::Call { args, .. } = &v.kind else { continue };
            for a in args {
                if let ExprKind::Str(p) = &a.value.kind {
                    if Path::new(p).is_relative() {
                        let to = relative(&dir, &base.join(p));
                        edits.push((a.value.span.start, a.value.span.end, format!("{:?}", to.display().to_string())));
                    }
                }
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = source.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

/// `to` as seen from the directory `from` (both absolute): `../examples/data/…`.
fn relative(from: &Path, to: &Path) -> std::path::PathBuf {
    let (a, b): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}
