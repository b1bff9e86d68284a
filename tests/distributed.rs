//! The distributed training step without MPI: processes simulated by threads meeting at each
//! collective call (`nnlang_runtime::train::cluster::Local`) train exactly as `--threads`
//! does — the same shares of every batch, the same dropout streams, the same sum — and a
//! stop asked by one process stops every process after the same step.

use nnlang::plan::{build, Loss, Mode};
use nnlang_runtime::data::Inputs;
use nnlang_runtime::train::cluster::Local;
use nnlang_runtime::train::{self, Cluster, Data, EpochStats, Init, Observer, OptimizerKind, Resume};
use rand::{RngExt, SeedableRng};
use std::sync::Arc;

const SRC: &str = "model M {\n    input x: [12]\n    x -> dense(24) -> relu -> dropout(drop = 0.3) -> dense(24) -> tanh -> dense(4) -> softmax\n}\n";

struct Keep {
    states: Vec<Resume>,
    stop_at: Option<(usize, usize)>,
    batches: usize,
}

impl Observer for Keep {
    fn batch(&mut self, epoch: usize, step: usize, _: usize, _: f64) -> bool {
        self.batches += 1;
        self.stop_at != Some((epoch, step))
    }
    fn epoch(&mut self, _: &EpochStats) {}
    fn checkpoint(&mut self, _: &[f32], state: &Resume) -> Result<(), String> {
        self.states.push(state.clone());
        Ok(())
    }
}

struct Problem {
    train_plan: nnlang_runtime::plan::Plan,
    eval_plan: nnlang_runtime::plan::Plan,
    x: Vec<f32>,
    y: Vec<f32>,
    params: Vec<f32>,
}

fn problem(rows: usize) -> Problem {
    let c = nnlang::compile(SRC, &nnlang::Options::default()).expect("compiles");
    let model = &c.models[0];
    let train_plan = build(model, Mode::Training(Loss::CROSS_ENTROPY), 64).expect("plan");
    let eval_plan = build(model, Mode::Inference, 64).expect("plan");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let x: Vec<f32> = (0..rows * 12).map(|_| rng.random_range(-1.0..1.0)).collect();
    // The class: which of four fixed directions the point leans to most.
    let y: Vec<f32> = x
        .chunks(12)
        .map(|r| {
            let s: Vec<f32> = (0..4).map(|k| r.iter().skip(k).step_by(4).sum()).collect();
            (0..4).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0) as f32
        })
        .collect();
    let mut params = vec![0f32; train_plan.params_len];
    train::initialize(&train_plan, &mut params, Init::He, 3);
    Problem { train_plan, eval_plan, x, y, params }
}

fn options(threads: usize, cluster: Option<Cluster>) -> train::Options {
    train::Options {
        optimizer: OptimizerKind::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
        batch: 64,
        epochs: 3,
        clip: Some(5.0),
        seed: 11,
        threads,
        // Processes split batches: the threads they are compared with do too.
        split: train::Split::Batch,
        cluster,
        ..nnlang::spec::TrainRecipe::default().options(1)
    }
}

/// What a run left: the trained weights, what its observer saw, where it was interrupted.
type Run = (Vec<f32>, Keep, Option<(usize, usize)>);

/// Trains the problem (230 rows: batches of 64 and a last one of 38, too small to share
/// among more than two) and returns the weights and the observer.
fn run(
    p: &Problem,
    opts: &train::Options,
    stop_at: Option<(usize, usize)>,
) -> (Vec<f32>, Keep, Option<(usize, usize)>) {
    let data = Data { x: Inputs::F32(&p.x), x_cols: 12, y: &p.y, y_cols: 1, lengths: &[], stream: None };
    let mut params = p.params.clone();
    let mut keep = Keep { states: Vec::new(), stop_at, batches: 0 };
    let out =
        train::fit(&p.train_plan, &p.eval_plan, Loss::CROSS_ENTROPY, &mut params, data, None, opts, &mut keep, None)
            .expect("trains");
    (params, keep, out.interrupted)
}

/// `n` simulated processes of `threads` threads each, every one training the problem.
fn processes(p: &Problem, n: usize, threads: usize, stop: Option<(usize, (usize, usize))>) -> Vec<Run> {
    let group = Local::group(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|l| {
                let rank = train::Collective::rank(&l);
                let opts = options(threads, Some(Cluster(Arc::new(l))));
                let stop_at = stop.filter(|(r, _)| *r == rank).map(|(_, at)| at);
                scope.spawn(move || run(p, &opts, stop_at))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a process")).collect()
    })
}

#[test]
fn processes_train_bit_for_bit_as_threads_do() {
    let p = problem(230);
    for n in [2, 3] {
        let (threaded, keep, _) = run(&p, &options(n, None), None);
        for (rank, (w, k, _)) in processes(&p, n, 1, None).into_iter().enumerate() {
            let same = w.iter().zip(&threaded).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{n} processes: rank {rank}'s weights differ from {n} threads'");
            // The resumable state is the threads' too: the same dropout streams, gathered.
            let (a, b) = (k.states.last().expect("a state"), keep.states.last().expect("a state"));
            assert_eq!(a.rngs, b.rngs, "{n} processes: dropout streams");
            assert_eq!(a.opt, b.opt, "{n} processes: optimizer state");
            let losses = |s: &Resume| s.history.iter().map(|h| h.train_loss).collect::<Vec<_>>();
            for (x, y) in losses(a).iter().zip(losses(b)) {
                assert!((x - y).abs() <= 1e-7 * y.abs(), "{n} processes: the mean loss {x} vs {y}");
            }
        }
    }
    // Processes with threads of their own: reproducible, and close to the same total of
    // threads (the shares are cut in another order).
    let a = processes(&p, 2, 2, None);
    let b = processes(&p, 2, 2, None);
    assert_eq!(a[0].0, b[0].0, "2 processes × 2 threads repeat exactly");
    assert_eq!(a[0].0, a[1].0, "every process holds the same weights");
}

#[test]
fn a_stop_asked_by_one_process_stops_them_all_after_the_same_step() {
    let p = problem(230);
    // Rank 1 asks after epoch 2's first step: every process stops after the second.
    let runs = processes(&p, 2, 1, Some((1, (2, 1))));
    for (rank, (_, k, interrupted)) in runs.iter().enumerate() {
        assert_eq!(*interrupted, Some((2, 2)), "rank {rank}");
        assert_eq!(k.batches, 4 + 2, "rank {rank} ran epoch 1's 4 steps and 2 of epoch 2");
    }
    assert_eq!(runs[0].0, runs[1].0);
}

/// A loss at every step of sequences of different lengths: each share's mean is over its
/// steps, and the processes weigh them as the threads do.
#[test]
fn processes_weigh_sequence_steps_as_threads_do() {
    let src = "model T {\n    input x: [seq <= 7, 3]\n    x -> rnn(8, output = sequence) -> dense(2) -> softmax\n}\n";
    let c = nnlang::compile(src, &nnlang::Options::default()).expect("compiles");
    let model = &c.models[0];
    let train_plan = build(model, Mode::Training(Loss::CROSS_ENTROPY), 64).expect("plan");
    let eval_plan = build(model, Mode::Inference, 64).expect("plan");
    let rows = 150;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..rows * 7 * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let lengths: Vec<usize> = (0..rows).map(|_| rng.random_range(1..=7)).collect();
    // Each step's tag: whether its first feature is positive.
    let y: Vec<f32> = (0..rows * 7).map(|i| f32::from(u8::from(x[i * 3] > 0.0))).collect();
    let mut params = vec![0f32; train_plan.params_len];
    train::initialize(&train_plan, &mut params, Init::Xavier, 2);
    let train_with = |opts: &train::Options| {
        let data = Data { x: Inputs::F32(&x), x_cols: 21, y: &y, y_cols: 7, lengths: &lengths, stream: None };
        let mut p = params.clone();
        let mut keep = Keep { states: Vec::new(), stop_at: None, batches: 0 };
        let out = train::fit(&train_plan, &eval_plan, Loss::CROSS_ENTROPY, &mut p, data, None, opts, &mut keep, None)
            .expect("trains");
        (p, out.history.iter().map(|h| h.train_loss).collect::<Vec<_>>())
    };
    let (threaded, losses) = train_with(&options(2, None));
    let group = Local::group(2);
    let runs: Vec<(Vec<f32>, Vec<f64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|l| {
                let opts = options(1, Some(Cluster(Arc::new(l))));
                let train_with = &train_with;
                scope.spawn(move || train_with(&opts))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a process")).collect()
    });
    for (w, l) in runs {
        assert!(w.iter().zip(&threaded).all(|(a, b)| a.to_bits() == b.to_bits()), "weights differ");
        for (a, b) in l.iter().zip(&losses) {
            assert!((a - b).abs() <= 1e-7 * b.abs(), "mean loss {a} vs {b}");
        }
    }
}

/// Batch normalization across processes: each process's workers meet, the processes add their
/// totals, and N processes of one thread normalize with the statistics N threads do — the
/// same weights and running averages, bit for bit — for 2 and 3 processes (3 leave one idle
/// on the last batch, which brings zeros to each meeting); processes with two threads each
/// repeat exactly and agree with each other.
#[test]
fn processes_share_batch_statistics_as_threads_do() {
    processes_share_batch_statistics(
        "model B {\n    input x: [12]\n    x -> dense(16) -> batchnorm -> relu -> dense(8) -> batchnorm(momentum = 0.2) -> tanh -> dense(4) -> softmax\n}\n",
    );
    // A batch norm fused with the max pooling after it (`fuse-pool`): its sums over the taps
    // that took each window's gradient meet too.
    processes_share_batch_statistics(
        "model B {\n    input x: [2, 2, 3]\n    x -> conv(6, 1) -> batchnorm -> relu -> maxpool(size = 2) -> dense(4) -> softmax\n}\n",
    );
}

fn processes_share_batch_statistics(src: &str) {
    let c = nnlang::compile(src, &nnlang::Options::default()).expect("compiles");
    let model = &c.models[0];
    let train_plan = build(model, Mode::Training(Loss::CROSS_ENTROPY), 64).expect("plan");
    let eval_plan = build(model, Mode::Inference, 64).expect("plan");
    let base = problem(230);
    let mut params = vec![0f32; train_plan.params_len];
    train::initialize(&train_plan, &mut params, Init::He, 3);
    let train_with = |opts: &train::Options| {
        let data = Data { x: Inputs::F32(&base.x), x_cols: 12, y: &base.y, y_cols: 1, lengths: &[], stream: None };
        let mut p = params.clone();
        let mut keep = Keep { states: Vec::new(), stop_at: None, batches: 0 };
        train::fit(&train_plan, &eval_plan, Loss::CROSS_ENTROPY, &mut p, data, None, opts, &mut keep, None)
            .expect("trains");
        p
    };
    let group_of = |n: usize, threads: usize| -> Vec<Vec<f32>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = Local::group(n)
                .into_iter()
                .map(|l| {
                    let opts = options(threads, Some(Cluster(Arc::new(l))));
                    let train_with = &train_with;
                    scope.spawn(move || train_with(&opts))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a process")).collect()
        })
    };
    let running = train_plan.params.iter().find(|p| p.name == "batchnorm_0.running_var").expect("state");
    for n in [2, 3] {
        let threaded = train_with(&options(n, None));
        assert!(threaded[running.buf.range()].iter().any(|v| (v - 1.0).abs() > 1e-3), "the running variances moved");
        for (rank, w) in group_of(n, 1).into_iter().enumerate() {
            let same = w.iter().zip(&threaded).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{n} processes: rank {rank}'s weights and statistics differ from {n} threads'");
        }
    }
    let (a, b) = (group_of(2, 2), group_of(2, 2));
    assert_eq!(a[0], b[0], "2 processes × 2 threads repeat exactly");
    assert_eq!(a[0], a[1], "every process holds the same weights and statistics");
}
