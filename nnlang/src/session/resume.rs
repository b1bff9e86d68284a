//! A run's resume state (`state.safetensors` and `state.json` in its directory, rewritten
//! after every completed epoch): the raw weights and the optimizer's buffers as tensors, the
//! rest — epoch, schedule, random streams' positions, history, and what the run must match
//! (model, architecture, data split and files, optimizer, seed, batch, threads, processes) —
//! as JSON. `nnlangc train --resume DIR` continues from it
//! exactly: a run stopped and resumed writes the weights of one that never stopped.

use super::Error;
use nnlang_runtime::train::{EpochStats, LayerStats, OptState, Resume, UpdateRatio};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use std::path::Path;

/// What a resumed run must share with the one that saved the state.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The model's name.
    pub model: String,
    /// The recipe's seed.
    pub seed: u64,
    /// The batch size.
    pub batch: usize,
    /// Threads of the data-parallel step (each process's, in a distributed run).
    pub threads: usize,
    /// Processes of a distributed run (1: one process).
    pub processes: usize,
    /// The threads split each product (`--split products`), not the batch: the run is then
    /// one thread's, whatever their count.
    pub products: bool,
    /// The number of parameters.
    pub params: usize,
    /// Every tensor's name and shape, in order (the architecture: a count alone would take
    /// 64→11→10 for 64→9→12→10).
    pub tensors: Vec<(String, Vec<usize>)>,
    /// The training and validation examples (what `--limit` and `validate` decide).
    pub rows: (usize, usize),
    /// The training data's files: name and size in bytes.
    pub data: Vec<(String, u64)>,
    /// The optimizer and its settings.
    pub optimizer: String,
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn stats_json(s: &EpochStats) -> Value {
    json!({
        "epoch": s.epoch,
        "train_loss": finite(s.train_loss),
        "penalty": finite(s.penalty),
        "train_accuracy": s.train_accuracy,
        "val_loss": s.val_loss.map(finite),
        "val_accuracy": s.val_accuracy,
        "lr": s.lr,
        "samples_per_sec": s.samples_per_sec,
        "seconds": s.seconds,
        "ratios": s.ratios.iter().map(|r| json!([r.name, finite(r.ratio)])).collect::<Vec<_>>(),
        "layers": s.layers.iter().map(|l| json!({
            "name": l.name, "function": l.function, "mean": finite(l.mean), "std": finite(l.std),
            "dead": l.dead, "saturated": l.saturated,
        })).collect::<Vec<_>>(),
        "grad_norms": s.grad_norms.iter().map(|(n, g)| json!([n, finite(*g)])).collect::<Vec<_>>(),
    })
}

fn function(name: &str) -> &'static str {
    ["relu", "leaky_relu", "tanh", "sigmoid"].into_iter().find(|f| *f == name).unwrap_or("")
}

fn stats_from(v: &Value) -> Option<EpochStats> {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let pairs = |k: &str| -> Vec<(String, f64)> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_f64().unwrap_or(f64::NAN))))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(EpochStats {
        epoch: v.get("epoch")?.as_u64()? as usize,
        train_loss: f("train_loss").unwrap_or(f64::NAN),
        penalty: f("penalty").unwrap_or(0.0),
        train_accuracy: f("train_accuracy"),
        val_loss: f("val_loss"),
        val_accuracy: f("val_accuracy"),
        lr: f("lr")?,
        samples_per_sec: f("samples_per_sec").unwrap_or(0.0),
        seconds: f("seconds").unwrap_or(0.0),
        ratios: pairs("ratios").into_iter().map(|(name, ratio)| UpdateRatio { name, ratio }).collect(),
        layers: v
            .get("layers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| {
                        Some(LayerStats {
                            name: l.get("name")?.as_str()?.to_string(),
                            function: function(l.get("function")?.as_str()?),
                            mean: l.get("mean")?.as_f64().unwrap_or(f64::NAN),
                            std: l.get("std")?.as_f64().unwrap_or(f64::NAN),
                            dead: l.get("dead").and_then(Value::as_f64),
                            saturated: l.get("saturated").and_then(Value::as_f64),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        grad_norms: pairs("grad_norms"),
    })
}

/// The two files of a state.
pub fn to_files(state: &Resume, id: &Identity) -> Result<Vec<(&'static str, Vec<u8>)>, Error> {
    // Safetensors holds little-endian values: on such a machine the f32 tensors are viewed as
    // their bytes where they lie (a large model's state is tens of megabytes), elsewhere copied.
    fn bytes(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(v))
        } else {
            std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }
    let mut tensors: Vec<(&str, std::borrow::Cow<'_, [u8]>)> =
        vec![("params", bytes(&state.params)), ("opt.m", bytes(&state.opt.m))];
    if !state.opt.v.is_empty() {
        tensors.push(("opt.v", bytes(&state.opt.v)));
    }
    if let Some(a) = &state.opt.average {
        tensors.push(("opt.average", bytes(a)));
    }
    if let Some(b) = &state.best {
        tensors.push(("best", bytes(&b.weights)));
    }
    let mut views = Vec::new();
    for (name, b) in &tensors {
        let view = TensorView::new(Dtype::F32, vec![b.len() / 4], b)
            .map_err(|e| Error::Usage(format!("state {name}: {e}")))?;
        views.push((name.to_string(), view));
    }
    let st = safetensors::serialize(views, None).map_err(|e| Error::Usage(format!("state: {e}")))?;
    let meta = json!({
        "format": "nnlang-resume",
        "version": 1,
        "model": id.model,
        "seed": id.seed,
        "batch": id.batch,
        "threads": id.threads,
        "processes": id.processes,
        "split": if id.products { "products" } else { "batch" },
        "params": id.params,
        "tensors": id.tensors.iter().map(|(n, d)| json!([n, d])).collect::<Vec<_>>(),
        "rows": [id.rows.0, id.rows.1],
        "data": id.data.iter().map(|(n, b)| json!([n, b])).collect::<Vec<_>>(),
        "optimizer": id.optimizer,
        "epochs_done": state.epochs_done,
        "adam_steps": state.opt.t,
        "plateau": [state.plateau.0, finite(state.plateau.1), state.plateau.2],
        "rngs": state.rngs.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "history": state.history.iter().map(stats_json).collect::<Vec<_>>(),
        "best": state.best.as_ref().map(|b| json!({"epoch": b.epoch, "val_loss": finite(b.loss)})),
    });
    Ok(vec![("state.safetensors", st), ("state.json", format!("{meta:#}\n").into_bytes())])
}

/// Whether two runs cut every batch the same way: the same counts of (threads, processes), or
/// N one-thread processes and one process of N threads (whose workers are the same). Threads
/// that split products compute what one thread does.
fn same_split(a: &Identity, b: &Identity) -> bool {
    let cut = |i: &Identity| if i.products { (1, 1) } else { (i.threads, i.processes) };
    let (a, b) = (cut(a), cut(b));
    let flat = |(t, p): (usize, usize)| t == 1 || p == 1;
    a == b || (flat(a) && flat(b) && a.0 * a.1 == b.0 * b.1)
}

fn split_text(i: &Identity) -> String {
    let t = if i.threads == 1 { "1 thread".to_string() } else { format!("{} threads", i.threads) };
    if i.processes > 1 {
        format!("{t} in each of {} processes (--threads, mpirun -n)", i.processes)
    } else if i.threads == 1 {
        format!("{t} (--threads)")
    } else if i.products {
        format!("{t} splitting each product (--threads, --split)")
    } else {
        format!("{t} splitting each batch (--threads, --split)")
    }
}

/// The first of the architecture, the data split, the data files and the optimizer that the
/// state records and that differs from `id`, said with both values.
fn recorded_differences(v: &Value, id: &Identity) -> Option<String> {
    let shape = |d: &[usize]| format!("[{}]", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "));
    if let Some(t) = v.get("tensors").and_then(Value::as_array) {
        let saved: Vec<(String, Vec<usize>)> = t
            .iter()
            .filter_map(|e| {
                let e = e.as_array()?;
                let dims =
                    e.get(1)?.as_array()?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<_>>()?;
                Some((e.first()?.as_str()?.to_string(), dims))
            })
            .collect();
        if saved != id.tensors {
            let at =
                saved.iter().zip(&id.tensors).position(|(a, b)| a != b).unwrap_or(saved.len().min(id.tensors.len()));
            let side = |l: &[(String, Vec<usize>)]| match l.get(at) {
                Some((n, d)) => format!("`{n}` {}", shape(d)),
                None => "no tensor".to_string(),
            };
            return Some(format!(
                "another architecture: tensor {} is {}, in this model {}",
                at + 1,
                side(&saved),
                side(&id.tensors)
            ));
        }
    }
    if let Some(r) = v.get("rows").and_then(Value::as_array) {
        let saved = (
            r.first().and_then(Value::as_u64).unwrap_or(0) as usize,
            r.get(1).and_then(Value::as_u64).unwrap_or(0) as usize,
        );
        if saved != id.rows {
            return Some(format!(
                "{} training and {} validation examples (--limit, validate), this run {} and {}",
                saved.0, saved.1, id.rows.0, id.rows.1
            ));
        }
    }
    if let Some(d) = v.get("data").and_then(Value::as_array) {
        let saved: Vec<(String, u64)> = d
            .iter()
            .filter_map(|e| {
                let e = e.as_array()?;
                Some((e.first()?.as_str()?.to_string(), e.get(1)?.as_u64()?))
            })
            .collect();
        if saved != id.data {
            let files =
                |f: &[(String, u64)]| f.iter().map(|(n, b)| format!("{n} ({b} bytes)")).collect::<Vec<_>>().join(", ");
            return Some(format!("the data {}, this run {}", files(&saved), files(&id.data)));
        }
    }
    match v.get("optimizer").and_then(Value::as_str) {
        Some(o) if o != id.optimizer => Some(format!("optimizer {o}, this run {}", id.optimizer)),
        _ => None,
    }
}

/// Reads the state in run directory `dir`, checked against `id`.
pub fn read(dir: &Path, id: &Identity) -> Result<Resume, Error> {
    let (jp, sp) = (dir.join("state.json"), dir.join("state.safetensors"));
    let bad = |p: &Path, m: String| Error::Input(format!("{}: {m}", p.display()));
    if !jp.exists() {
        return Err(bad(
            dir,
            "no state.json: not a run directory of `nnlangc train`, or one written before resuming was possible".into(),
        ));
    }
    let text = nnlang_runtime::data::read_maybe_gz(&jp).map_err(|e| Error::Input(e.to_string()))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad(&jp, format!("not a resume state ({e})")))?;
    if v.get("format").and_then(Value::as_str) != Some("nnlang-resume") {
        return Err(bad(&jp, "not a resume state (no `\"format\": \"nnlang-resume\"`)".into()));
    }
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    let saved = Identity {
        model: v.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
        seed: u("seed").unwrap_or(u64::MAX),
        batch: u("batch").unwrap_or(0) as usize,
        threads: u("threads").unwrap_or(0) as usize,
        processes: u("processes").unwrap_or(1) as usize,
        products: v.get("split").and_then(Value::as_str) == Some("products"),
        params: u("params").unwrap_or(0) as usize,
        tensors: Vec::new(),
        rows: (0, 0),
        data: Vec::new(),
        optimizer: String::new(),
    };
    let differ = [
        (saved.model != id.model, format!("model `{}`, this run `{}`", saved.model, id.model)),
        (saved.params != id.params, format!("{} parameters, this model {}", saved.params, id.params)),
        (saved.seed != id.seed, format!("seed {}, this run {}", saved.seed, id.seed)),
        (saved.batch != id.batch, format!("batch {}, this run {}", saved.batch, id.batch)),
        (!same_split(&saved, id), format!("{}, this run {}", split_text(&saved), split_text(id))),
    ];
    if let Some((_, what)) = differ.iter().find(|(d, _)| *d) {
        return Err(bad(&jp, format!("the run was trained with {what}: it cannot continue exactly")));
    }
    // What states written since they were recorded say (an older state lacks them).
    if let Some(what) = recorded_differences(&v, id) {
        return Err(bad(&jp, format!("the run was trained with {what}: it cannot continue exactly")));
    }
    let bytes = nnlang_runtime::data::read_maybe_gz(&sp).map_err(|e| Error::Input(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(&sp, format!("not a valid safetensors file ({e})")))?;
    let tensor = |name: &str| -> Result<Option<Vec<f32>>, Error> {
        match st.tensor(name) {
            Ok(t) if t.dtype() == Dtype::F32 => {
                Ok(Some(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
            }
            Ok(_) => Err(bad(&sp, format!("tensor `{name}` is not f32"))),
            Err(_) => Ok(None),
        }
    };
    let params = tensor("params")?.ok_or_else(|| bad(&sp, "no tensor `params`".into()))?;
    let m = tensor("opt.m")?.ok_or_else(|| bad(&sp, "no tensor `opt.m`".into()))?;
    if params.len() != id.params || m.len() != id.params {
        return Err(bad(&sp, format!("{} parameters, the model has {}", params.len(), id.params)));
    }
    if params.iter().any(|p| !p.is_finite()) {
        return Err(bad(&sp, "a parameter is NaN or infinite".into()));
    }
    let plateau = v.get("plateau").and_then(Value::as_array);
    let pl = |i: usize| plateau.and_then(|p| p.get(i));
    let rngs: Option<Vec<u128>> =
        v.get("rngs").and_then(Value::as_array).map(|a| a.iter().filter_map(|r| r.as_str()?.parse().ok()).collect());
    let history: Vec<EpochStats> = v
        .get("history")
        .and_then(Value::as_array)
        .map(|h| h.iter().filter_map(stats_from).collect())
        .unwrap_or_default();
    let epochs_done = u("epochs_done").ok_or_else(|| bad(&jp, "no `epochs_done`".into()))? as usize;
    if history.len() != epochs_done {
        return Err(bad(&jp, format!("{} epochs of history for {epochs_done} epochs done", history.len())));
    }
    // Early stopping's best epoch so far: its number and loss, and its weights as a tensor.
    let best = match v.get("best").filter(|b| !b.is_null()) {
        None => None,
        Some(b) => {
            let epoch = b.get("epoch").and_then(Value::as_u64).filter(|&e| e >= 1 && e as usize <= epochs_done);
            let loss = b.get("val_loss").and_then(Value::as_f64);
            let (Some(epoch), Some(loss)) = (epoch, loss) else {
                return Err(bad(&jp, format!("`best` is not an epoch from 1 to {epochs_done} with its `val_loss`")));
            };
            let weights = tensor("best")?.ok_or_else(|| bad(&sp, "no tensor `best` for the best epoch".into()))?;
            if weights.len() != id.params || weights.iter().any(|w| !w.is_finite()) {
                return Err(bad(&sp, format!("tensor `best` is not {} finite parameters", id.params)));
            }
            Some(nnlang_runtime::train::Best { epoch: epoch as usize, loss, weights })
        }
    };
    Ok(Resume {
        best,
        epochs_done,
        params,
        opt: OptState {
            m,
            v: tensor("opt.v")?.unwrap_or_default(),
            t: v.get("adam_steps").and_then(Value::as_i64).unwrap_or(0) as i32,
            average: tensor("opt.average")?,
        },
        plateau: (
            pl(0).and_then(Value::as_f64).unwrap_or(0.0),
            pl(1).and_then(Value::as_f64).unwrap_or(f64::INFINITY),
            pl(2).and_then(Value::as_u64).unwrap_or(0) as usize,
        ),
        rngs: rngs.ok_or_else(|| bad(&jp, "no `rngs`".into()))?,
        history,
    })
}
