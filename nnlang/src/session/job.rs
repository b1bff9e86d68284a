//! A model with its recipe: loading its data, preparing the plans, fitting, evaluating.

use super::*;

/// A model, its training recipe and the session it came from.
pub struct Job<'s> {
    /// The compiled file.
    pub session: &'s Session,
    /// The model trained.
    pub model: &'s Model,
    /// The recipe; a caller may change it (`--epochs`) before preparing.
    pub recipe: TrainRecipe,
}

/// `result`, computed over `set`, unless a row of `set` could not be read from its file.
fn read_whole<T>(set: &Table, result: T) -> Result<T, Error> {
    match set.inputs().failure() {
        Some(e) => Err(Error::Input(e)),
        None => Ok(result),
    }
}

/// The views of a table the training loop reads.
pub fn view(t: &Table) -> Data<'_> {
    Data { x: t.inputs(), x_cols: t.cols, y: &t.y, y_cols: t.y_cols, lengths: &t.lengths, stream: None }
}

impl<'s> Job<'s> {
    /// Reads and checks the recipe's data set; `limit` keeps the first rows of each split.
    pub fn load_data(&self, limit: Option<usize>) -> Result<Loaded, Error> {
        let on = self.recipe.data.clone().unwrap_or_default();
        let spec = self
            .session
            .compiled
            .data_spec(&on)
            .ok_or_else(|| self.session.input_error(format!("no data set `{on}`")))?;
        // `bins` and `classes` against the outputs were checked when the file was compiled.
        let expect = data::expect(self.model, self.recipe.loss, self.recipe.bins);
        data::load(&spec, self.session.base(), &expect, limit).map_err(|e| Error::Input(e.to_string()))
    }

    /// The data set's augmentation of the training images, for the model's `[h, w, c]` input
    /// (the compiler refused it for any other input).
    fn augment(&self) -> Option<nnlang_runtime::data::augment::Augment> {
        let on = self.recipe.data.as_deref()?;
        self.session.compiled.data_spec(on)?.augment?.for_model(self.model)
    }

    /// The inference plan used to evaluate: batches of at least 256 rows, or, for streams
    /// read in windows (`bptt`), of the streams side by side — what evaluation runs, each
    /// batch continuing the last (an arena for 256 rows of a character LSTM's kept gates
    /// would hold ~300 MB it never uses).
    pub fn eval_plan(&self) -> Result<Plan, Error> {
        let rows = match self.recipe.bptt {
            Some(_) => self.recipe.batch.clamp(1, 1 << 16),
            None => self.recipe.batch.clamp(256, 1 << 16),
        };
        self.session.plan_with(self.model, Mode::Inference, rows, self.recipe.bptt.is_some())
    }

    /// The training plan again for one worker's share of a batch of `plan`, when the
    /// options' threads split each batch (each worker's memory then holds its share only);
    /// `None` when they split products or there is one thread.
    pub fn worker_plan(
        &self,
        plan: &Plan,
        options: &train::Options,
        carry: bool,
    ) -> Result<Option<std::sync::Arc<Plan>>, Error> {
        let threads = options.threads;
        let share = train::worker_rows(plan.max_batch, threads);
        if threads > 1 && share < plan.max_batch && !options.splits_products(plan, threads) {
            let w = self.session.plan_with(self.model, Mode::Training(self.recipe.loss), share, carry)?;
            return Ok(Some(std::sync::Arc::new(w)));
        }
        Ok(None)
    }

    /// How the threads share each step (`--split`) and the processes of a distributed run:
    /// set in `prepared`'s options, and the workers' plan made again for them (the one
    /// [`Job::prepare`] made followed the default sharing: with `--split batch` where that
    /// would split the products, each worker would have held the whole batch's memory).
    pub fn share(
        &self,
        prepared: &mut Prepared,
        split: train::Split,
        cluster: Option<nnlang_runtime::train::cluster::Cluster>,
    ) -> Result<(), Error> {
        prepared.options.split = split;
        prepared.options.cluster = cluster;
        let carry = prepared.options.bptt.is_some();
        prepared.options.worker_plan = self.worker_plan(&prepared.train_plan, &prepared.options, carry)?;
        Ok(())
    }

    /// Everything up to the first step: plans, the validation split (drawn with the
    /// recipe's seed) and the initial weights.
    pub fn prepare(&self, loaded: &Loaded, threads: usize) -> Result<Prepared, Error> {
        self.prepare_split(loaded, threads, None)
    }

    /// `prepare`, with the training and validation examples given when already split.
    fn prepare_split(&self, loaded: &Loaded, threads: usize, split: Option<(Table, Table)>) -> Result<Prepared, Error> {
        let mut options = self.recipe.options(threads);
        // A batch larger than the data is the whole data set (the same mean gradient): planned
        // at the data's size, never at the size asked for (`batch = 15000000` would plan
        // gigabytes for 1,438 rows).
        let available = match (&split, &loaded.text) {
            (Some((fit, val)), _) => fit.rows() + val.rows(),
            (None, Some(text)) => text.ids.len(),
            (None, None) => loaded.train.rows(),
        };
        options.batch = options.batch.min(available.max(1));
        options.augment = self.augment();
        let carry = options.bptt.is_some();
        let train_plan = self.session.plan_with(self.model, Mode::Training(self.recipe.loss), options.batch, carry)?;
        options.worker_plan = self.worker_plan(&train_plan, &options, carry)?;
        let eval_plan = self.eval_plan()?;
        if train_plan.inputs.len() != 1 {
            return Err(self.session.input_error("training from a data set needs a model with exactly one input"));
        }
        let mut params = vec![0f32; train_plan.params_len];
        train::initialize(&train_plan, &mut params, options.init, options.seed);
        let mut stream = None;
        let (fit, val, vocab) = match (&loaded.text, split) {
            (_, Some((fit, val))) => (fit, val, None),
            (Some(text), None) => {
                let (fit, val) = self.text_windows(text, &train_plan, &options)?;
                // Windows that carry nothing from one to the next: cut anew every epoch.
                if let (Some(n), Some(seq), true) = (options.bptt, train_plan.sequence, train_plan.carried.is_empty()) {
                    let n_val = ((text.ids.len() as f64) * options.validate).round() as usize;
                    let fit_ids = &text.ids[..text.ids.len() - n_val.min(text.ids.len())];
                    let as_ids = train_plan.input_ids.first().copied().flatten().is_some();
                    stream = Some(TextStream {
                        ids: fit_ids.to_vec(),
                        streams: options.batch.min(train_plan.max_batch).max(1),
                        window: n,
                        steps: seq.steps,
                        one_hot: (!as_ids).then(|| text.vocab.len()),
                    });
                }
                (fit, val, Some(text.vocab.clone()))
            }
            (None, None) if carry => {
                return Err(self
                    .session
                    .input_error("`bptt` trains on a stream in windows: the data set's `train` must be a `text(…)`"))
            }
            (None, None) => {
                let (fit_rows, val_rows) =
                    train::arrays::validation_split(loaded.train.rows(), options.validate, options.seed);
                let (fit, val) = (loaded.train.select(&fit_rows), loaded.train.select(&val_rows));
                if fit.rows() == 0 {
                    return Err(self.session.input_error(
                        "no training examples are left to train on (check the data, `--limit` and `validate`)",
                    ));
                }
                (fit, val, None)
            }
        };
        Ok(Prepared {
            train_plan,
            eval_plan,
            options,
            fit,
            val,
            params,
            vocab,
            resume: None,
            preprocess: loaded.preprocess.clone(),
            stream,
        })
    }

    /// [`Job::prepare`], taking the training set out of `loaded` when its test split (or the
    /// text) makes it unneeded afterwards: the split into the examples trained on and the
    /// validation examples is then made in place, not by a copy (the data is held once).
    pub fn prepare_taking(&self, loaded: &mut Loaded, threads: usize) -> Result<Prepared, Error> {
        if loaded.text.is_some() || loaded.test.is_none() {
            return self.prepare(loaded, threads);
        }
        let options = self.recipe.options(threads);
        let (fit_rows, val_rows) = train::arrays::validation_split(loaded.train.rows(), options.validate, options.seed);
        if fit_rows.is_empty() {
            return self.prepare(loaded, threads);
        }
        let table = std::mem::take(&mut loaded.train);
        let (fit, val) = table.into_split(&fit_rows, &val_rows);
        self.prepare_split(loaded, threads, Some((fit, val)))
    }

    /// What a run of this job must share with a saved state to continue it.
    pub fn identity(&self, p: &Prepared) -> resume::Identity {
        resume::Identity {
            model: self.model.graph.name.clone(),
            seed: p.options.seed,
            batch: p.options.batch,
            threads: p.options.threads,
            processes: p.options.cluster.as_ref().map_or(1, |c| c.size()),
            products: p.options.splits_products(&p.train_plan, p.options.threads),
            params: p.train_plan.params_len,
            tensors: p.train_plan.params.iter().map(|t| (t.name.clone(), t.shape.clone())).collect(),
            rows: (p.fit.rows(), p.val.rows()),
            data: self.data_files(),
            optimizer: optimizer_text(&p.options.optimizer),
        }
    }

    /// The training data's files, by name and size (what a resumed run must read again).
    fn data_files(&self) -> Vec<(String, u64)> {
        let on = self.recipe.data.clone().unwrap_or_default();
        let Some(spec) = self.session.compiled.data_spec(&on) else { return Vec::new() };
        let Some(train) = &spec.train else { return Vec::new() };
        train
            .files()
            .into_iter()
            .map(|f| {
                let path = self.session.base().join(f);
                let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
                (name, std::fs::metadata(&path).map_or(0, |m| m.len()))
            })
            .collect()
    }

    /// Continue the run whose directory is `dir` from its last completed epoch.
    pub fn resume_from(&self, p: &mut Prepared, dir: &Path) -> Result<usize, Error> {
        let state = resume::read(dir, &self.identity(p))?;
        let done = state.epochs_done;
        p.resume = Some(state);
        Ok(done)
    }

    /// Start from the weights in `path` (a checkpoint of this model) instead of the
    /// initialization.
    pub fn init_from(&self, p: &mut Prepared, path: &Path) -> Result<(), Error> {
        nnlang_runtime::io::load(path, &p.train_plan.params, &mut p.params).map_err(|e| Error::Input(e.to_string()))
    }

    /// A text cut into windows of `bptt` characters over `batch` streams: the training part,
    /// and its last `validate` fraction (in the same layout) for validation.
    fn text_windows(
        &self,
        text: &data::TextStream,
        plan: &Plan,
        options: &train::Options,
    ) -> Result<(Table, Table), Error> {
        let at = |m: String| Error::Input(format!("{}: {m}", text.file.display()));
        let Some(n) = options.bptt else {
            return Err(self.session.input_error(
                "a text is trained in windows, each starting from the state the previous one ended with: set `bptt = 100` (or another window) in the `train` block",
            ));
        };
        let Some(seq) = plan.sequence else { return Err(at("the model's input is not a sequence".into())) };
        if n > seq.steps {
            return Err(self.session.input_error(format!(
                "`bptt = {n}` is longer than the {} steps the model's input holds: give it `[seq <= {n}, …]`",
                seq.steps
            )));
        }
        if text.test.is_some() {
            return Err(at(
                "a text data set is validated on its last part (`validate = 10%`); a separate `test = text(…)` is not read yet"
                    .into(),
            ));
        }
        let ids = &text.ids;
        let n_val = ((ids.len() as f64) * options.validate).round() as usize;
        let (fit_ids, val_ids) = ids.split_at(ids.len() - n_val.min(ids.len()));
        let streams = options.batch.min(plan.max_batch).max(1);
        let v = text.vocab.len();
        let as_ids = plan.input_ids.first().copied().flatten().is_some();
        let fit = data::windows(fit_ids, v, streams, n, seq.steps, !seq.variable, as_ids);
        let val = data::windows(val_ids, v, streams, n, seq.steps, !seq.variable, as_ids);
        if fit.rows() == 0 {
            return Err(at(format!(
                "{} characters are too few for {streams} streams of windows of {n}: lower `batch` or `bptt`",
                fit_ids.len()
            )));
        }
        Ok((fit, val))
    }

    /// Trains a prepared job to the end (or until the observer stops it).
    pub fn fit(&self, p: &mut Prepared, observer: &mut dyn Observer) -> Result<Outcome, Error> {
        let val = (p.val.rows() > 0).then(|| view(&p.val));
        let mut fit = view(&p.fit);
        fit.stream = p.stream.as_ref().map(|s| s.view());
        train::fit(
            &p.train_plan,
            &p.eval_plan,
            self.recipe.loss,
            &mut p.params,
            fit,
            val,
            &p.options,
            observer,
            p.resume.take(),
        )
        .map_err(|e| self.session.input_error(e))
    }

    /// Loss, accuracy and predictions of `weights` on `set`, with the inference plan `plan`;
    /// an error when `set` is left in its file and a row cannot be read.
    pub fn evaluate(&self, plan: &Plan, weights: &[f32], set: &Table) -> Result<Evaluation, Error> {
        let mut exec = Exec::<f32>::new(plan, 0);
        exec.params.copy_from_slice(weights);
        read_whole(set, train::evaluate(plan, &mut exec, self.recipe.loss, view(set), 256))
    }

    /// Evaluates the weights file `path` on `set`.
    pub fn evaluate_file(&self, path: &Path, set: &Table) -> Result<Evaluation, Error> {
        let plan = self.session.plan(self.model, Mode::Inference, 256)?;
        let mut exec = load_weights(&plan, path)?;
        read_whole(set, train::evaluate(&plan, &mut exec, self.recipe.loss, view(set), 256))
    }

    /// The confusion matrix of a classification (rows: true class, columns: predicted);
    /// `None` for a regression.
    pub fn confusion(&self, e: &Evaluation, set: &Table) -> Option<Vec<Vec<usize>>> {
        if !matches!(self.recipe.loss, Loss::CrossEntropy(_)) {
            return None;
        }
        let k = self.model.graph.output.map_or(0, |o| fixed_dims(self.model, o).iter().product());
        let mut m = vec![vec![0usize; k]; k];
        for (&p, &l) in e.predictions.iter().zip(&set.y) {
            if let Some(cell) = m.get_mut(l as usize).and_then(|row| row.get_mut(p)) {
                *cell += 1;
            }
        }
        Some(m)
    }

    /// What renders the files of the run directory `dir`, for the observer to write after
    /// each epoch. Its `model.nn` is the file as trained — parameters, recipe settings and
    /// epochs — with data paths that resolve from `dir`.
    pub fn recorder(&self, p: &Prepared, dir: &Path) -> Recorder {
        let note = format!("resolved by nnlangc train: parameters as trained, {} epochs", p.options.epochs);
        let s = self.session;
        let resolved = artifacts::resolved_source(&s.source, &s.compiled, self.model, &note);
        // The `--set` settings and the epochs trained, written into the record.
        let mut sets = s.sets.clone();
        sets.push(("epochs".to_string(), p.options.epochs.to_string()));
        let trained =
            crate::settings::override_source(&resolved, &sets, Some(&self.model.graph.name)).unwrap_or(resolved);
        let source = artifacts::relocate_data_paths(&trained, s.base(), dir);
        Recorder {
            model: self.model.graph.name.clone(),
            table: p.train_plan.params.clone(),
            input_dims: self.model.graph.inputs.first().map_or(Vec::new(), |&i| fixed_dims(self.model, i)),
            source,
            epochs: p.options.epochs,
            vocab: p.vocab.as_ref().map(|v| v.to_json()),
            preprocess: (!p.preprocess.is_empty()).then(|| p.preprocess.to_json()),
            state: Vec::new(),
            checkpoints: std::collections::VecDeque::new(),
            raw: None,
            keep: KEEP_CHECKPOINTS,
            identity: self.identity(p),
            saved: 0,
        }
    }
}

/// A job ready to train.
pub struct Prepared {
    /// The training step's plan.
    pub train_plan: Plan,
    /// The inference plan that scores validation and test sets.
    pub eval_plan: Plan,
    /// The run's settings.
    pub options: train::Options,
    /// The examples trained on, and those held out for validation.
    pub fit: Table,
    /// The validation split (empty for none).
    pub val: Table,
    /// The weights: initial, then as trained.
    pub params: Vec<f32>,
    /// A character model's vocabulary, saved beside its weights.
    pub vocab: Option<nnlang_runtime::data::text::Vocabulary>,
    /// The saved state a resumed run continues from ([`Job::resume_from`]).
    pub resume: Option<train::Resume>,
    /// What was done to the data, saved with the weights.
    pub preprocess: data::Preprocess,
    /// The training text of a character model that carries nothing from one window to the
    /// next, whose windows are cut at a new offset every epoch.
    pub stream: Option<TextStream>,
}

/// A training text and how it is read in windows ([`train::Stream`]).
pub struct TextStream {
    ids: Vec<u32>,
    streams: usize,
    window: usize,
    steps: usize,
    one_hot: Option<usize>,
}

impl TextStream {
    fn view(&self) -> train::Stream<'_> {
        train::Stream {
            ids: &self.ids,
            streams: self.streams,
            window: self.window,
            steps: self.steps,
            one_hot: self.one_hot,
        }
    }
}

impl Prepared {
    /// What every process of a distributed run must agree on before it trains (the
    /// all-reduce sums gradients position by position): the model's size, the weights it
    /// starts from, the data's rows, the recipe's batch, epochs and seed, the threads, and the
    /// epochs already done — as numbers for [`train::Cluster::agree`].
    pub fn agreement(&self, done: usize) -> [u64; 9] {
        let digest = |v: &[f32]| v.iter().fold(0u64, |h, x| h.rotate_left(5) ^ u64::from(x.to_bits()));
        let start = self.resume.as_ref().map_or(&self.params, |r| &r.params);
        let o = &self.options;
        [
            self.train_plan.params_len as u64,
            digest(start),
            self.fit.rows() as u64,
            self.val.rows() as u64,
            o.batch as u64,
            o.epochs as u64,
            o.seed,
            o.threads as u64,
            done as u64,
        ]
    }
}

/// The optimizer and its settings as a resume state records them.
fn optimizer_text(o: &train::OptimizerKind) -> String {
    match *o {
        train::OptimizerKind::Sgd { lr, momentum, nesterov } => {
            format!("sgd(lr = {lr}, momentum = {momentum}, nesterov = {nesterov})")
        }
        train::OptimizerKind::Adam { lr, beta1, beta2, eps, weight_decay } if weight_decay > 0.0 => {
            format!("adamw(lr = {lr}, beta1 = {beta1}, beta2 = {beta2}, eps = {eps}, weight_decay = {weight_decay})")
        }
        train::OptimizerKind::Adam { lr, beta1, beta2, eps, .. } => {
            format!("adam(lr = {lr}, beta1 = {beta1}, beta2 = {beta2}, eps = {eps})")
        }
    }
}
