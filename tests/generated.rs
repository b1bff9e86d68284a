//! Generated code against the interpreter, for every example model that runs: the same
//! forward outputs, gradients and weights after several training steps, bit for bit.
#![allow(clippy::modulo_one)] // models with one output class index modulo 1

mod common;

use nnlang::plan::{build, Mode};
use nnlang::{compile, Options};
use nnlang_runtime::interp::{Exec, Updater};
use nnlang_runtime::model::Model;
use nnlang_runtime::plan::TargetKind;
use rand::{RngExt, SeedableRng};

nnlang_macros::nn!(file = "examples/mnist_mlp.nn", model = "Mlp");
nnlang_macros::nn!(file = "examples/logistic_regression.nn", model = "LogReg");
nnlang_macros::nn!(file = "examples/residual.nn", model = "Residual");
nnlang_macros::nn!(file = "examples/projection_pursuit.nn", model = "ProjectionPursuit");
nnlang_macros::nn!(file = "examples/convnet.nn", model = "ConvNet");
nnlang_macros::nn!(file = "examples/mnist_convnet.nn", model = "MnistConvNet");
nnlang_macros::nn!(file = "examples/fashion_convnet.nn", model = "FashionConvNet");
nnlang_macros::nn!(file = "examples/maxout.nn", model = "MaxoutNet");
nnlang_macros::nn!(file = "examples/local_faces.nn", model = "LocalFaces");
nnlang_macros::nn!(file = "examples/mnist_rows.nn", model = "Rows");
nnlang_macros::nn! {
    model TwoInputs {
        input a: [3]
        input b: [2]
        concat(a -> dense(4) -> tanh, b) -> dense(2) -> softmax
    }
}
nnlang_macros::nn! {
    model BinnedIris {
        input x: [4]
        x -> dense(16) -> tanh -> dense(5) -> softmax
    }
    train BinnedIris on iris { loss = cross_entropy(bins = 5), optimizer = adam(lr = 0.01), batch = 16, epochs = 20, validate = 10%, seed = 3 }
    data iris { train = csv("examples/data/sklearn/iris.csv.gz", label = 4), standardize = true }
}
nnlang_macros::nn! {
    // Warm-up then cosine decay, step by step, with AdamW.
    model CosineIris {
        input x: [4]
        x -> dense(16) -> tanh -> dense(3) -> softmax
    }
    train CosineIris on iris { loss = cross_entropy, optimizer = adamw(lr = 0.05, weight_decay = 0.1), schedule = cosine(min = 0.05), warmup = 2, batch = 16, epochs = 12, validate = 20%, seed = 4 }
    data iris { train = csv("examples/data/sklearn/iris.csv.gz", label = 0), standardize = true }
}
nnlang_macros::nn! {
    // Label smoothing, batches accumulated four to an update (the epoch's rest included), and
    // clipping spelled `norm(…)`.
    model SmoothIris {
        input x: [4]
        x -> dense(16) -> tanh -> dense(3) -> softmax
    }
    train SmoothIris on iris { loss = cross_entropy(smoothing = 0.2), optimizer = sgd(lr = 0.2, momentum = 0.9), batch = 8, accumulate = 4, clip = norm(1.5), epochs = 6, validate = 20%, seed = 5 }
    data iris { train = csv("examples/data/sklearn/iris.csv.gz", label = 0), standardize = true }
}
nnlang_macros::nn! {
    // A plateau schedule: a rate that halves after every epoch without a better validation loss.
    model PlateauIris {
        input x: [4]
        x -> dense(16) -> tanh -> dense(3) -> softmax
    }
    train PlateauIris on iris { loss = cross_entropy, optimizer = sgd(lr = 2.5, momentum = 0.9), schedule = plateau(factor = 0.5, patience = 1), batch = 16, epochs = 15, validate = 20%, seed = 4 }
    data iris { train = csv("examples/data/sklearn/iris.csv.gz", label = 0), standardize = true }
}
nnlang_macros::nn!(file = "examples/japanese_vowels.nn", model = "BiRnnClassifier");
nnlang_macros::nn!(file = "examples/rnn_tagger.nn", model = "Tagger");
nnlang_macros::nn!(file = "examples/shakespeare.nn", model = "CharRnn");
nnlang_macros::nn!(file = "examples/shakespeare_lstm.nn", model = "CharLstm");
nnlang_macros::nn!(file = "examples/shakespeare_transformer.nn", model = "CharTransformer");
nnlang_macros::nn!(file = "examples/resnet.nn", model = "ResNet");

nnlang_macros::nn! {
    // Dropout (with its random masks), leaky ReLU, sigmoid and binary cross-entropy.
    model Dropped(width = 12) {
        input x: [10]
        x -> dense(width) -> leaky_relu(alpha = 0.1) -> dropout(keep = 0.7)
          -> dense(width) -> tanh -> dropout(drop = 0.25)
          -> dense(3) -> sigmoid
    }
    train Dropped on d { loss = binary_cross_entropy, optimizer = adam(lr = 0.01), batch = 16, seed = 3 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // softplus (an op added by following docs/architecture.md, "Adding a layer") after a
    // dense layer and after a convolution.
    model Soft {
        input x: [6, 6, 2]
        x -> conv(filters = 4, size = 3, pad = same) -> softplus -> maxpool(size = 2)
          -> dense(8) -> softplus -> dense(3) -> softmax
    }
    train Soft on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // hard_tanh (added by following docs/architecture.md, "Adding a layer"), fused into a
    // convolution and a dense layer.
    model Clamped {
        input x: [6, 6, 2]
        x -> conv(filters = 4, size = 3, pad = same) -> hard_tanh -> maxpool(size = 2)
          -> dense(8) -> hard_tanh -> dense(3) -> softmax
    }
    train Clamped on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 6 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // hard_tanh and gelu (activations added by following docs/architecture.md, "Adding a
    // layer"): GELU's derivative reads its input, after a convolution and a dense layer.
    model Gelus {
        input x: [6, 6, 2]
        x -> conv(filters = 4, size = 3, pad = same) -> gelu -> maxpool(size = 2)
          -> dense(8) -> hard_tanh -> dense(8) -> gelu(approximate = tanh) -> leaky_relu(alpha = 0.2) -> dense(3) -> softmax
    }
    train Gelus on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 6 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // Stacked Elman RNNs over fixed-length sequences: every state, then the last.
    model StackedRows {
        input x: [6, 5]
        x -> rnn(8) -> rnn(6, activation = relu, output = last) -> dense(3) -> softmax
    }
    train StackedRows on d { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 8, clip = 0.5, seed = 2 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // A bidirectional layer (every step, concatenated) under another (final states, added).
    model BothWays {
        input x: [5, 4]
        x -> bidirectional(rnn(6), merge = concat) -> bidirectional(rnn(3, activation = relu, output = last), merge = add)
          -> dense(2) -> softmax
    }
    train BothWays on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 7, seed = 4 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    // The gated recurrences, stacked on ragged sequences: every LSTM state, then the GRU's last.
    model Gates {
        input x: [seq <= 6, 4]
        x -> lstm(5) -> bidirectional(gru(3), merge = add) -> bidirectional(lstm(3, output = last), merge = concat)
          -> dense(3) -> softmax
    }
    train Gates on d { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 8, clip = 0.5, seed = 10 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    model BnDense {
        input x: [10]
        x -> dense(12) -> batchnorm -> relu -> dense(8) -> batchnorm(momentum = 0.3, eps = 1e-3) -> tanh -> dense(3) -> softmax
    }
    train BnDense on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 64, seed = 7 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    model BnConv {
        input x: [6, 6, 2]
        x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)
          -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax
    }
    train BnConv on d { loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 64, seed = 8 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    model BnSeq {
        input x: [seq <= 6, 4]
        x -> dense(5) -> batchnorm -> tanh -> rnn(4) -> dense(3) -> batchnorm -> softmax
    }
    train BnSeq on d { loss = cross_entropy, optimizer = adamw(lr = 0.01, weight_decay = 0.05), batch = 8, seed = 9 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    model GlobalPools {
        input x: [6, 5, 2]
        let a = x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> globalavgpool
        let b = x -> conv(filters = 3, size = 3) -> tanh -> globalmaxpool
        concat(a, b) -> dense(3) -> softmax
    }
    train GlobalPools on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! {
    model Floored {
        input x: [13, 13, 1]
        x -> conv(filters = 4, size = 3) -> relu -> maxpool(size = 2, round = floor) -> avgpool(size = 3, stride = 2, round = floor) -> dense(3) -> softmax
    }
    train Floored on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }
    data d { train = csv("unused.csv") }
}

// Augmented 8×8 digits: the generated `fit` draws the crops, shifts and flips `train` draws.
nnlang_macros::nn! {
    model AugDigits {
        input x: [8, 8, 1]
        x -> conv(filters = 8, size = 3, pad = same) -> relu -> maxpool(size = 2) -> dense(10) -> softmax
    }
    train AugDigits on digits { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 32, epochs = 2, validate = 20%, seed = 9 }
    data digits { train = csv("examples/data/sklearn/digits.csv.gz", label = 0), scale = 1/16, augment { crop = 1, shift = 1, flip = true } }
}

// Pools that round up (PyTorch's ceil_mode): the last window cut at the edge.
nnlang_macros::nn! {
    model Ceiled {
        input x: [11, 10, 2]
        x -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2, round = ceil)
          -> avgpool(size = 3, stride = 2, round = ceil) -> dense(3) -> softmax
    }
    train Ceiled on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }
    data d { train = csv("unused.csv") }
}

// Grouped, depthwise (the direct kernel), dilated and floored convolutions.
nnlang_macros::nn! {
    model Separable {
        input x: [9, 9, 4]
        x -> conv(filters = 8, size = 3, pad = same, groups = 2, bias = false) -> batchnorm -> relu
          -> conv(filters = 8, size = 3, pad = same, groups = 8, bias = false) -> relu
          -> conv(filters = 8, size = 3, pad = same, groups = 8, dilation = 2)
          -> conv(filters = 16, size = 1) -> relu
          -> conv(filters = 16, size = 3, stride = 3, round = floor, groups = 16, dilation = 2) -> tanh
          -> conv(filters = 6, size = 3, groups = 2, dilation = 2, pad = 2)
          -> globalavgpool -> dense(3) -> softmax
    }
    train Separable on d { loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 8, seed = 6 }
    data d { train = csv("unused.csv") }
}

// Models named like Rust keywords and types: a raw identifier, or a suffix.
nnlang_macros::nn! { model fn { input x: [3] x -> dense(2) -> softmax } }
nnlang_macros::nn! { model Self { input x: [3] x -> dense(2) -> softmax } }
nnlang_macros::nn! {
    // Layer and RMS normalization at every step of ragged sequences.
    model LayerNormed {
        input x: [seq <= 5, 4]
        x -> dense(8) -> layernorm -> relu -> lstm(6) -> rmsnorm(eps = 1e-3) -> dense(3) -> softmax
    }
    train LayerNormed on d { loss = cross_entropy, optimizer = adamw(lr = 0.01), batch = 8, seed = 12 }
    data d { train = csv("unused.csv") }
}

nnlang_macros::nn! { model f32 { input x: [3] x -> dense(2) -> softmax } }
nnlang_macros::nn! {
    // Causal attention over ragged sequences with sinusoidal positions, and one that is not
    // causal after it.
    model Attending {
        input x: [seq <= 6, 4]
        x -> dense(8) -> positions(6, sinusoidal = true) -> attention(2, causal = true) -> relu -> attention(4)
          -> dense(3) -> softmax
    }
    train Attending on d { loss = cross_entropy, optimizer = adamw(lr = 0.01), batch = 8, seed = 13 }
    data d { train = csv("unused.csv") }
}

/// The interpreter side: the same model compiled from the same source at run time.
fn interpreter(
    src: &str,
    name: &str,
) -> (nnlang_runtime::plan::Plan, nnlang_runtime::plan::Plan, nnlang::plan::Loss, nnlang_runtime::train::Options) {
    let c = compile(src, &Options { model: Some(name.to_string()), ..Options::default() }).expect("compiles");
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let m = &c.models[0];
    let recipe = c.recipe_or_implied(m);
    let (loss, opts) = (recipe.loss, recipe.options(1));
    // A model trained on a stream carries its recurrent states, as its generated code does.
    let plan = |mode| {
        if recipe.bptt.is_some() {
            nnlang::plan::build_carrying(m, mode, opts.batch)
        } else {
            build(m, mode, opts.batch)
        }
    };
    let train = plan(Mode::Training(loss)).expect("plan");
    let infer = plan(Mode::Inference).expect("plan");
    (train, infer, loss, opts)
}

macro_rules! differential {
    ($test:ident, $ty:ident, $src:expr) => {
        #[test]
        fn $test() {
            let src: &str = $src;
            let (train, infer, _loss, opts) = interpreter(src, stringify!($ty));
            let seed = 42;
            let mut net = $ty::new(seed);
            // Same initial weights as the trainer draws for the same seed.
            let mut params = vec![0f32; train.params_len];
            nnlang_runtime::train::initialize(&train, &mut params, opts.init, seed);
            assert_eq!(net.weights(), &params[..], "initial weights");

            let rows = $ty::MAX_BATCH.min(13);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            let x: Vec<f32> = match train.input_ids[0] {
                // Token ids, each used several times.
                Some(vocab) => (0..rows * $ty::INPUTS[0]).map(|_| rng.random_range(0..vocab) as f32).collect(),
                None => (0..rows * $ty::INPUTS[0]).map(|_| rng.random_range(-1.0..1.0)).collect(),
            };
            let y: Vec<f32> = match train.target.expect("target").1 {
                TargetKind::Class => {
                    let classes = if $ty::PER_STEP_OUTPUT { $ty::OUTPUT / $ty::STEPS } else { $ty::OUTPUT };
                    (0..rows * $ty::TARGET_COLS).map(|r| (r % classes) as f32).collect()
                }
                TargetKind::Values => (0..rows * $ty::TARGET_COLS).map(|_| rng.random_range(0.0..1.0)).collect(),
            };

            // Sequences of different lengths, where the model accepts them.
            let lengths: Vec<usize> = match train.sequence {
                Some(q) if q.variable => (0..rows).map(|r| 1 + (r * 7 + 3) % q.steps).collect(),
                _ => Vec::new(),
            };
            net.set_lengths(&lengths);

            // Forward.
            let mut infer_exec = Exec::<f32>::new(&infer, 0);
            infer_exec.set_lengths(&lengths);
            infer_exec.params.copy_from_slice(&params);
            infer_exec.set_input(&infer, 0, rows, &x);
            infer_exec.run(&infer, rows, None).expect("runs");
            let expected = infer_exec.output(&infer, rows).to_vec();
            assert_eq!(bits(net.forward(&x, rows)), bits(&expected), "forward outputs");

            // Several training steps: losses, gradients and weights.
            let mut exec = Exec::<f32>::new(&train, seed.wrapping_add(1));
            exec.params.copy_from_slice(&params);
            exec.set_lengths(&lengths);
            let mut opt_i = nnlang_runtime::train::Optimizer::new(
                &train.params,
                opts.optimizer,
                opts.l1,
                opts.l2,
                opts.max_norm,
                opts.ema,
            );
            opt_i.clip = opts.clip;
            let mut opt_g = net.optimizer();
            for step in 0..4 {
                if step == 3 {
                    // New streams (a model with carried states starts again from zero).
                    exec.reset_state(&train);
                    net.reset_state();
                }
                exec.set_input(&train, 0, rows, &x);
                exec.set_target(&train, rows, &y);
                let li = exec.run(&train, rows, None).expect("runs").expect("loss");
                let lg = net.loss_and_gradients(&x, &y, rows).expect("runs");
                assert_eq!(li.to_bits(), lg.to_bits(), "loss at step {step}");
                assert_eq!(bits(&exec.grads), bits(net.gradients()), "gradients at step {step}");
                opt_i.update(&mut exec.params, &exec.grads);
                let grads = net.gradients().to_vec();
                opt_g.update(net.weights_mut(), &grads);
                assert_eq!(bits(&exec.params), bits(net.weights()), "weights after step {step}");
            }
        }
    };
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

differential!(mnist_mlp, Mlp, include_str!("../examples/mnist_mlp.nn"));
differential!(logistic_regression, LogReg, include_str!("../examples/logistic_regression.nn"));
differential!(residual, Residual, include_str!("../examples/residual.nn"));
differential!(projection_pursuit, ProjectionPursuit, include_str!("../examples/projection_pursuit.nn"));
differential!(convnet_cifar_shaped, ConvNet, include_str!("../examples/convnet.nn"));
differential!(mnist_convnet, MnistConvNet, include_str!("../examples/mnist_convnet.nn"));
differential!(fashion_convnet, FashionConvNet, include_str!("../examples/fashion_convnet.nn"));
differential!(maxout, MaxoutNet, include_str!("../examples/maxout.nn"));
differential!(local_faces, LocalFaces, include_str!("../examples/local_faces.nn"));
differential!(mnist_rows, Rows, include_str!("../examples/mnist_rows.nn"));
differential!(japanese_vowels, BiRnnClassifier, include_str!("../examples/japanese_vowels.nn"));
differential!(rnn_tagger, Tagger, include_str!("../examples/rnn_tagger.nn"));
differential!(shakespeare, CharRnn, include_str!("../examples/shakespeare.nn"));
differential!(shakespeare_lstm, CharLstm, include_str!("../examples/shakespeare_lstm.nn"));
// Blocks of causal attention, layer normalization, GELU and residual sums over learned positions.
differential!(shakespeare_transformer, CharTransformer, include_str!("../examples/shakespeare_transformer.nn"));
// Blocks, batch norm, a projected shortcut, global pooling.
differential!(resnet_blocks, ResNet, include_str!("../examples/resnet.nn"));
differential!(
    dropout_and_bce,
    Dropped,
    "model Dropped(width = 12) {\n input x: [10]\n x -> dense(width) -> leaky_relu(alpha = 0.1) -> dropout(keep = 0.7)\n -> dense(width) -> tanh -> dropout(drop = 0.25)\n -> dense(3) -> sigmoid\n }\n train Dropped on d { loss = binary_cross_entropy, optimizer = adam(lr = 0.01), batch = 16, seed = 3 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    softplus,
    Soft,
    "model Soft {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> softplus -> maxpool(size = 2)\n -> dense(8) -> softplus -> dense(3) -> softmax\n }\n train Soft on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    hard_tanh,
    Clamped,
    "model Clamped {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> hard_tanh -> maxpool(size = 2)\n -> dense(8) -> hard_tanh -> dense(3) -> softmax\n }\n train Clamped on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 6 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    gelu_and_hard_tanh,
    Gelus,
    "model Gelus {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> gelu -> maxpool(size = 2)\n -> dense(8) -> hard_tanh -> dense(8) -> gelu(approximate = tanh) -> leaky_relu(alpha = 0.2) -> dense(3) -> softmax\n }\n train Gelus on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 6 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    stacked_rnn,
    StackedRows,
    "model StackedRows {\n input x: [6, 5]\n x -> rnn(8) -> rnn(6, activation = relu, output = last) -> dense(3) -> softmax\n }\n train StackedRows on d { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 8, clip = 0.5, seed = 2 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    bidirectional,
    BothWays,
    "model BothWays {\n input x: [5, 4]\n x -> bidirectional(rnn(6), merge = concat) -> bidirectional(rnn(3, activation = relu, output = last), merge = add)\n -> dense(2) -> softmax\n }\n train BothWays on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 7, seed = 4 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    lstm_and_gru,
    Gates,
    "model Gates {\n input x: [seq <= 6, 4]\n x -> lstm(5) -> bidirectional(gru(3), merge = add) -> bidirectional(lstm(3, output = last), merge = concat)\n -> dense(3) -> softmax\n }\n train Gates on d { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 8, clip = 0.5, seed = 10 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    layer_norm,
    LayerNormed,
    "model LayerNormed {\n input x: [seq <= 5, 4]\n x -> dense(8) -> layernorm -> relu -> lstm(6) -> rmsnorm(eps = 1e-3) -> dense(3) -> softmax\n }\n train LayerNormed on d { loss = cross_entropy, optimizer = adamw(lr = 0.01), batch = 8, seed = 12 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    attention,
    Attending,
    "model Attending {\n input x: [seq <= 6, 4]\n x -> dense(8) -> positions(6, sinusoidal = true) -> attention(2, causal = true) -> relu -> attention(4)\n -> dense(3) -> softmax\n }\n train Attending on d { loss = cross_entropy, optimizer = adamw(lr = 0.01), batch = 8, seed = 13 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    batchnorm_dense,
    BnDense,
    "model BnDense {\n input x: [10]\n x -> dense(12) -> batchnorm -> relu -> dense(8) -> batchnorm(momentum = 0.3, eps = 1e-3) -> tanh -> dense(3) -> softmax\n }\n train BnDense on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 64, seed = 7 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    batchnorm_conv,
    BnConv,
    "model BnConv {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax\n }\n train BnConv on d { loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 64, seed = 8 }\n data d { train = csv(\"unused.csv\") }"
);
differential!(
    batchnorm_ragged_sequences,
    BnSeq,
    "model BnSeq {\n input x: [seq <= 6, 4]\n x -> dense(5) -> batchnorm -> tanh -> rnn(4) -> dense(3) -> batchnorm -> softmax\n }\n train BnSeq on d { loss = cross_entropy, optimizer = adamw(lr = 0.01, weight_decay = 0.05), batch = 8, seed = 9 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    global_pools,
    GlobalPools,
    "model GlobalPools {\n input x: [6, 5, 2]\n let a = x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> globalavgpool\n let b = x -> conv(filters = 3, size = 3) -> tanh -> globalmaxpool\n concat(a, b) -> dense(3) -> softmax\n }\n train GlobalPools on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    ceiled_pooling,
    Ceiled,
    "model Ceiled {\n input x: [11, 10, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> relu -> maxpool(size = 2, round = ceil)\n -> avgpool(size = 3, stride = 2, round = ceil) -> dense(3) -> softmax\n }\n train Ceiled on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }\n data d { train = csv(\"unused.csv\") }"
);

differential!(
    grouped_dilated_depthwise,
    Separable,
    "model Separable {\n    input x: [9, 9, 4]\n    x -> conv(filters = 8, size = 3, pad = same, groups = 2, bias = false) -> batchnorm -> relu\n      -> conv(filters = 8, size = 3, pad = same, groups = 8, bias = false) -> relu\n      -> conv(filters = 8, size = 3, pad = same, groups = 8, dilation = 2)\n      -> conv(filters = 16, size = 1) -> relu\n      -> conv(filters = 16, size = 3, stride = 3, round = floor, groups = 16, dilation = 2) -> tanh\n      -> conv(filters = 6, size = 3, groups = 2, dilation = 2, pad = 2)\n      -> globalavgpool -> dense(3) -> softmax\n}\ntrain Separable on d { loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 8, seed = 6 }\ndata d { train = csv(\"unused.csv\") }"
);

differential!(
    floored_pooling,
    Floored,
    "model Floored {\n input x: [13, 13, 1]\n x -> conv(filters = 4, size = 3) -> relu -> maxpool(size = 2, round = floor) -> avgpool(size = 3, stride = 2, round = floor) -> dense(3) -> softmax\n }\n train Floored on d { loss = cross_entropy, optimizer = sgd(lr = 0.1, momentum = 0.9), batch = 8, seed = 5 }\n data d { train = csv(\"unused.csv\") }"
);

#[test]
fn train_step_and_checkpoints() {
    let mut net = Mlp::new(1);
    let mut opt = net.optimizer();
    let rows = 32;
    let x: Vec<f32> = (0..rows * 784).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % 10) as f32).collect();
    let first = net.train_step(&x, &y, rows, &mut opt).expect("step");
    let mut last = first;
    for _ in 0..30 {
        last = net.train_step(&x, &y, rows, &mut opt).expect("step");
    }
    assert!(last < first * 0.5, "the loss falls when fitting one batch: {first} → {last}");
    let dir = common::temp_dir("macros");
    let path = dir.join("mlp.safetensors");
    net.save(&path).expect("save");
    let before = net.forward(&x, rows).to_vec();
    let mut other = Mlp::new(2);
    other.load(&path).expect("load");
    assert_eq!(bits(other.forward(&x, rows)), bits(&before), "saved weights give the same outputs");
    assert_eq!(net.param("dense_2.bias").map(|b| b.len()), Some(10));
    let bad = y.iter().map(|_| 12.0).collect::<Vec<f32>>();
    assert!(net.loss_and_gradients(&x, &bad, rows).is_err(), "a label outside the classes is an error");
}

#[test]
fn data_parallel_generated_matches_the_interpreters_two_thread_step() {
    let (train, _, _, mut opts) = interpreter(include_str!("../examples/mnist_mlp.nn"), "Mlp");
    // The generated code's threads split the batch.
    opts.split = nnlang_runtime::train::Split::Batch;
    let rows = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let x: Vec<f32> = (0..rows * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % 10) as f32).collect();
    let mut net = Mlp::new(5);
    let mut parallel = net.parallel(2, 5).expect("pool");
    let mut opt = net.optimizer();
    let mut stepper = nnlang_runtime::train::Stepper::new(&train, net.weights().to_vec(), &opts, 2);
    for step in 0..3 {
        let lg = net.train_step_parallel(&mut parallel, &x, &y, rows, &mut opt).expect("step");
        let li = stepper.step(&x, &y, rows).expect("step");
        assert_eq!(lg.to_bits(), li.to_bits(), "loss at step {step}");
        assert_eq!(bits(net.weights()), bits(stepper.params()), "weights after step {step}");
    }
}

/// Batch normalization on a batch split between threads: the generated code's workers meet
/// for the statistics of the whole batch as the interpreter's do, and both equal one thread's
/// run within rounding (each worker normalizing with its own rows' statistics would not).
#[test]
fn data_parallel_batchnorm_uses_the_whole_batchs_statistics() {
    let src = "model BnConv {\n input x: [6, 6, 2]\n x -> conv(filters = 4, size = 3, pad = same) -> batchnorm -> relu -> maxpool(size = 2)\n -> dense(8) -> batchnorm -> relu -> dense(3) -> softmax\n }\n train BnConv on d { loss = cross_entropy, optimizer = sgd(lr = 0.05, momentum = 0.9), batch = 64, seed = 8 }\n data d { train = csv(\"unused.csv\") }";
    let (train, _, _, mut opts) = interpreter(src, "BnConv");
    opts.split = nnlang_runtime::train::Split::Batch;
    let rows = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    // Each half of the batch from its own distribution: per-half statistics would differ.
    let x: Vec<f32> =
        (0..rows * 72).map(|i| rng.random_range(0.0..1.0) + if i < rows * 36 { 2.0 } else { -1.0 }).collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % 3) as f32).collect();
    let mut net = BnConv::new(5);
    let mut parallel = net.parallel(2, 5).expect("pool");
    let mut opt = net.optimizer();
    let mut stepper = nnlang_runtime::train::Stepper::new(&train, net.weights().to_vec(), &opts, 2);
    let mut alone = nnlang_runtime::train::Stepper::new(&train, net.weights().to_vec(), &opts, 1);
    for step in 0..3 {
        let lg = net.train_step_parallel(&mut parallel, &x, &y, rows, &mut opt).expect("step");
        let li = stepper.step(&x, &y, rows).expect("step");
        let l1 = alone.step(&x, &y, rows).expect("step");
        assert_eq!(lg.to_bits(), li.to_bits(), "loss at step {step}");
        assert_eq!(bits(net.weights()), bits(stepper.params()), "weights after step {step}");
        assert!((li - l1).abs() < 1e-5 * l1.abs(), "two threads' loss {li} against one's {l1}");
        let worst = stepper.params().iter().zip(alone.params()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "step {step}: two threads' weights differ from one's by {worst}");
    }
    // (Adam would not do for this comparison: the bias before a batch norm has no gradient,
    // and Adam's first steps move it by ±lr on the sign of rounding noise.)
    // The running averages moved, and agree between the two.
    let mean = train.params.iter().find(|p| p.name == "batchnorm_0.running_mean").expect("state");
    let (two, one) = (&stepper.params()[mean.buf.range()], &alone.params()[mean.buf.range()]);
    assert!(two.iter().all(|v| v.abs() > 1e-3), "running means moved: {two:?}");
    assert!(two.iter().zip(one).all(|(a, b)| (a - b).abs() < 1e-5), "{two:?} against {one:?}");
}

/// The notes' gradient check of the generated code itself: its steps run in double
/// precision (`loss_and_gradients_f64`) against centred differences, for sampled coordinates
/// of every parameter tensor. A difference that crosses a ReLU or max kink can miss the
/// gradient; at most one such coordinate per tensor is tolerated (the interpreter's check,
/// `nnlangc gradcheck`, detects kinks and scores none of them).
fn check_generated_gradients(
    name: &str,
    table: &[nnlang_runtime::plan::Param],
    params: &[f64],
    f: &dyn Fn(&[f64]) -> f64,
    analytic: &[f64],
) {
    let h = 1e-6;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut p = params.to_vec();
    // Trained tensors: a state's slot holds a batch statistic, not a gradient.
    for t in table.iter().filter(|t| t.trained()) {
        let mut off = 0;
        for _ in 0..8 {
            let i = t.buf.offset + rng.random_range(0..t.buf.len);
            let orig = p[i];
            p[i] = orig + h;
            let up = f(&p);
            p[i] = orig - h;
            let down = f(&p);
            p[i] = orig;
            let (a, n) = (analytic[i], (up - down) / (2.0 * h));
            let scale = a.abs().max(n.abs());
            let rel = if scale < 1e-9 { 0.0 } else { (a - n).abs() / scale };
            if rel > 1e-4 {
                off += 1;
            }
        }
        assert!(off <= 1, "{name}: {}: {off} of 8 coordinates off by more than 1e-4", t.name);
    }
}

macro_rules! generated_gradcheck {
    ($test:ident, $ty:ident) => {
        #[test]
        fn $test() {
            let mut net = $ty::new(3);
            let rows = $ty::MAX_BATCH.min(4);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
            let mut params: Vec<f64> = net.weights().iter().map(|&w| f64::from(w)).collect();
            for t in net.parameters().iter().filter(|t| t.role == nnlang_runtime::plan::Role::Bias) {
                params[t.buf.range()].iter_mut().for_each(|b| *b = rng.random_range(-0.1..0.1));
            }
            let x: Vec<f64> = (0..rows * $ty::INPUTS[0]).map(|_| rng.random_range(-1.0..1.0)).collect();
            let classes = if $ty::PER_STEP_OUTPUT { $ty::OUTPUT / $ty::STEPS } else { $ty::OUTPUT };
            let y: Vec<f64> = match $ty::LOSS {
                nnlang::plan::Loss::CrossEntropy(_) => {
                    (0..rows * $ty::TARGET_COLS).map(|r| (r * 7 % classes) as f64).collect()
                }
                _ => (0..rows * $ty::TARGET_COLS).map(|_| rng.random_range(0.0..1.0)).collect(),
            };
            if $ty::STEPS > 0 {
                net.set_lengths(&(0..rows).map(|r| 1 + (r * 5) % $ty::STEPS.max(1)).collect::<Vec<_>>());
            }
            let (_, analytic) = net.loss_and_gradients_f64(&params, &x, &y, rows, 9).expect("runs");
            let loss = |p: &[f64]| net.loss_and_gradients_f64(p, &x, &y, rows, 9).expect("runs").0;
            check_generated_gradients(stringify!($ty), net.parameters(), &params, &loss, &analytic);
        }
    };
}

generated_gradcheck!(gradcheck_mnist_mlp, Mlp);
generated_gradcheck!(gradcheck_logistic_regression, LogReg);
generated_gradcheck!(gradcheck_residual, Residual);
generated_gradcheck!(gradcheck_projection_pursuit, ProjectionPursuit);
generated_gradcheck!(gradcheck_mnist_convnet, MnistConvNet);
generated_gradcheck!(gradcheck_maxout, MaxoutNet);
generated_gradcheck!(gradcheck_local_faces, LocalFaces);
generated_gradcheck!(gradcheck_mnist_rows, Rows);
generated_gradcheck!(gradcheck_japanese_vowels, BiRnnClassifier);
generated_gradcheck!(gradcheck_rnn_tagger, Tagger);
generated_gradcheck!(gradcheck_shakespeare, CharRnn);
generated_gradcheck!(gradcheck_dropout_and_bce, Dropped);
generated_gradcheck!(gradcheck_softplus, Soft);
generated_gradcheck!(gradcheck_hard_tanh, Clamped);
generated_gradcheck!(gradcheck_gelu_and_hard_tanh, Gelus);
generated_gradcheck!(gradcheck_bidirectional, BothWays);
generated_gradcheck!(gradcheck_batchnorm_dense, BnDense);
generated_gradcheck!(gradcheck_batchnorm_conv, BnConv);
generated_gradcheck!(gradcheck_batchnorm_ragged_sequences, BnSeq);
generated_gradcheck!(gradcheck_global_pools, GlobalPools);
generated_gradcheck!(gradcheck_floored_pooling, Floored);
generated_gradcheck!(gradcheck_grouped_dilated_depthwise, Separable);
generated_gradcheck!(gradcheck_ceiled_pooling, Ceiled);

/// `predict` takes an array of any number of rows (more than a batch here), runs it in
/// batches, and returns an owned array; a wrong width is an error.
#[test]
fn predict_on_arrays_of_any_size() {
    let mut net = Mlp::new(5);
    let rows = 2 * Mlp::MAX_BATCH + 22;
    // Raw pixels: predict scales them as the recipe does (`scale = 1 / 255`); forward takes
    // them scaled.
    let scale = Mlp::SCALE.expect("the recipe scales");
    let x = nnlang_runtime::ndarray::Array2::from_shape_fn((rows, Mlp::INPUTS[0]), |(r, c)| {
        ((r * 31 + c * 7) % 255) as f32
    });
    let y = net.predict(x.view()).expect("predicts");
    assert_eq!(y.dim(), (rows, Mlp::OUTPUT));
    let flat: Vec<f32> = x.iter().map(|v| v * scale).collect();
    let last = rows - 22;
    let direct = net.forward(&flat[last * Mlp::INPUTS[0]..], 22).to_vec();
    let tail: Vec<f32> = y.slice(nnlang_runtime::ndarray::s![last.., ..]).iter().copied().collect();
    assert_eq!(bits(&tail), bits(&direct));
    // A view with another layout (every other column of a wider array) is read the same.
    let wide =
        nnlang_runtime::ndarray::Array2::from_shape_fn((3, 2 * Mlp::INPUTS[0]), |(r, c)| ((r + c / 2) % 7) as f32);
    let strided = wide.slice(nnlang_runtime::ndarray::s![.., ..;2]);
    let dense: Vec<f32> = strided.iter().map(|v| v * scale).collect();
    assert_eq!(
        bits(net.predict(strided).expect("predicts").as_slice().expect("standard")),
        bits(net.forward(&dense, 3))
    );
    let e = net.predict(nnlang_runtime::ndarray::Array2::zeros((4, 10)).view()).expect_err("wrong width");
    assert_eq!(e.to_string(), "rows of 10 values, but the model's input has 784 per example");
}

/// `fit` runs the model's recipe as `nnlangc train` does: on the same 1,000 MNIST images the
/// generated model's weights are byte for byte the trainer's.
#[test]
fn fit_on_arrays_is_nnlangc_train() {
    let dir = common::temp_dir("fit");
    let data = common::root().join("examples/data/mnist");
    let x = nnlang_runtime::data::idx::read_rows(&data.join("train-images-idx3-ubyte.gz"), Some(1000)).expect("images");
    let y = nnlang_runtime::data::idx::read_rows(&data.join("train-labels-idx1-ubyte.gz"), Some(1000)).expect("labels");
    // Raw pixels: `fit` scales them as the recipe says.
    let x =
        nnlang_runtime::ndarray::Array2::from_shape_vec((1000, 784), x.data.iter().map(|&b| f32::from(b)).collect())
            .expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((1000, 1), y.data.iter().map(|&b| f32::from(b)).collect())
        .expect("shape");
    let mut net = Mlp::new(Mlp::SEED);
    let mut seen = 0;
    let history = net
        .fit(x.view(), y.view(), |e| {
            seen = e.epoch;
            e.val_accuracy.is_some()
        })
        .expect("fits");
    assert_eq!((history.len(), seen), (Mlp::EPOCHS, Mlp::EPOCHS));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train", "examples/mnist_mlp.nn", "--limit", "1000", "--quiet", "--out"])
        .arg(&*dir)
        .current_dir(common::root())
        .output()
        .expect("trains");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut trained = Mlp::new(0);
    trained.load(dir.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(trained.weights()), bits(net.weights()), "fit and nnlangc train agree");
    // What fit learned about the data is what train saved, and predictions on raw pixels agree.
    assert_eq!(net.preprocess().scale, Some((1.0f64 / 255.0) as f32));
    assert_eq!(trained.preprocess(), net.preprocess());
    let (a, b) = (net.predict(x.view()).expect("predicts"), trained.predict(x.view()).expect("predicts"));
    assert_eq!(bits(a.as_slice().expect("contiguous")), bits(b.as_slice().expect("contiguous")));
    // Wrong shapes are errors.
    let e = net.fit(x.view(), y.slice(nnlang_runtime::ndarray::s![..10, ..]), |_| true).expect_err("short target");
    assert!(e.to_string().contains("a target of 10 rows of 1 values, but 1000 rows of 1 are needed"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plateau schedule in the generated `fit` is `nnlangc train`'s: the same rate at every
/// epoch (it drops several times here) and the same weights, bit for bit.
#[test]
fn fit_follows_a_plateau_schedule_as_nnlangc_train() {
    let root = common::root();
    let iris = nnlang_runtime::data::csv::read_rows(&root.join("examples/data/sklearn/iris.csv.gz"), Some(0), None)
        .expect("iris");
    let x = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 4), iris.x.clone()).expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 1), iris.y.clone()).expect("shape");
    let mut net = PlateauIris::new(PlateauIris::SEED);
    let history = net.fit(x.view(), y.view(), |_| true).expect("fits");
    let dir = common::temp_dir("fit-plateau");
    let file = dir.join("plateau.nn");
    std::fs::write(
        &file,
        format!(
            "model PlateauIris {{\n input x: [4]\n x -> dense(16) -> tanh -> dense(3) -> softmax\n}}\n\
             train PlateauIris on iris {{ loss = cross_entropy, optimizer = sgd(lr = 2.5, momentum = 0.9), schedule = plateau(factor = 0.5, patience = 1), batch = 16, epochs = 15, validate = 20%, seed = 4 }}\n\
             data iris {{ train = csv(\"{}\", label = 0), standardize = true }}\n",
            root.join("examples/data/sklearn/iris.csv.gz").display()
        ),
    )
    .expect("source");
    let run = dir.join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train".as_ref(), file.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), run.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "lr").expect("an lr column");
    let trained: Vec<f64> =
        metrics.lines().skip(1).map(|l| l.split(',').nth(col).expect("lr").parse().expect("a number")).collect();
    let fitted: Vec<f64> = history.iter().map(|e| e.lr).collect();
    assert_eq!(fitted, trained, "the same rate at every epoch");
    let drops = fitted.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(drops >= 2, "the plateau schedule acted: {fitted:?}");
    let mut saved = PlateauIris::new(0);
    saved.load(run.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(saved.weights()), bits(net.weights()), "fit and nnlangc train agree");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fit` on raw arrays standardizes (and bins targets) as `nnlangc train` does: the same
/// weights and `preprocess.json`, and `predict` on raw rows gives what `nnlangc run` writes.
#[test]
fn fit_standardizes_and_bins_as_nnlangc_train() {
    let root = common::root();
    let iris = nnlang_runtime::data::csv::read_rows(&root.join("examples/data/sklearn/iris.csv.gz"), Some(4), None)
        .expect("iris");
    let x = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 4), iris.x.clone()).expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 1), iris.y.clone()).expect("shape");
    let dir = common::temp_dir("fit-pre");
    let input = dir.join("x.npy");
    nnlang_runtime::data::npy::write(&input, &[iris.rows(), 4], &iris.x).expect("writes");
    let binned_src = format!(
        "model BinnedIris {{\n input x: [4]\n x -> dense(16) -> tanh -> dense(5) -> softmax\n}}\n\
         train BinnedIris on iris {{ loss = cross_entropy(bins = 5), optimizer = adam(lr = 0.01), batch = 16, epochs = 20, validate = 10%, seed = 3 }}\n\
         data iris {{ train = csv(\"{}\", label = 4), standardize = true }}\n",
        root.join("examples/data/sklearn/iris.csv.gz").display()
    );
    let binned = dir.join("binned.nn");
    std::fs::write(&binned, binned_src).expect("source");
    let nnlangc = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(args)
            .current_dir(&root)
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let run_on = |file: &std::path::Path, run: &std::path::Path| -> Vec<f32> {
        let out = dir.join("y.npy");
        nnlangc(&[
            "run".as_ref(),
            file.as_os_str(),
            "--weights".as_ref(),
            run.join("weights.safetensors").as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ]);
        nnlang_runtime::data::npy::read(&out).expect("reads").data
    };

    // A standardized regression.
    let mut net = ProjectionPursuit::new(ProjectionPursuit::SEED);
    net.fit(x.view(), y.view(), |_| true).expect("fits");
    let run = dir.join("pp");
    let file = root.join("examples/projection_pursuit.nn");
    nnlangc(&["train".as_ref(), file.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), run.as_os_str()]);
    let mut trained = ProjectionPursuit::new(0);
    trained.load(run.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(trained.weights()), bits(net.weights()), "fit and nnlangc train agree");
    assert!(net.preprocess().standardize.is_some());
    assert_eq!(trained.preprocess(), net.preprocess());
    let p = net.predict(x.view()).expect("predicts");
    assert_eq!(bits(p.as_slice().expect("contiguous")), bits(&run_on(&file, &run)));

    // A binned regression: targets binned by fit, values out of predict.
    let mut net = BinnedIris::new(BinnedIris::SEED);
    net.fit(x.view(), y.view(), |_| true).expect("fits");
    let run = dir.join("binned");
    nnlangc(&["train".as_ref(), binned.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), run.as_os_str()]);
    let mut trained = BinnedIris::new(0);
    trained.load(run.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(trained.weights()), bits(net.weights()), "fit and nnlangc train agree");
    let bins = net.preprocess().bins.expect("bins learned");
    assert_eq!((bins.n, bins.lo), (5, 0.1));
    assert_eq!(trained.preprocess(), net.preprocess());
    let p = net.predict(x.view()).expect("predicts");
    assert_eq!(p.dim(), (iris.rows(), 1));
    assert_eq!(bits(p.as_slice().expect("contiguous")), bits(&run_on(&binned, &run)));
    // Saved beside the weights, read back by load.
    let saved = dir.join("saved.safetensors");
    net.save(&saved).expect("saves");
    let mut again = BinnedIris::new(9);
    again.load(&saved).expect("loads");
    assert_eq!(again.preprocess(), net.preprocess());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model of several inputs predicts from one array per input, any number of rows.
#[test]
fn predict_takes_an_array_per_input() {
    use nnlang_runtime::ndarray::Array2;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let rows = 3 * TwoInputs::MAX_BATCH + 5;
    let a = Array2::from_shape_fn((rows, 3), |_| rng.random_range(-1.0f32..1.0));
    let b = Array2::from_shape_fn((rows, 2), |_| rng.random_range(-1.0f32..1.0));
    let mut net = TwoInputs::new(1);
    let p = net.predict_inputs(&[a.view(), b.view()]).expect("predicts");
    assert_eq!(p.dim(), (rows, 2));
    // Batch by batch, as forward computes them.
    let mut start = 0;
    while start < rows {
        let n = TwoInputs::MAX_BATCH.min(rows - start);
        let ra: Vec<f32> = a.slice(nnlang_runtime::ndarray::s![start..start + n, ..]).iter().copied().collect();
        let rb: Vec<f32> = b.slice(nnlang_runtime::ndarray::s![start..start + n, ..]).iter().copied().collect();
        let want = net.forward([&ra, &rb], n).to_vec();
        let got: Vec<f32> = p.slice(nnlang_runtime::ndarray::s![start..start + n, ..]).iter().copied().collect();
        assert_eq!(bits(&got), bits(&want), "rows {start}..{}", start + n);
        start += n;
    }
    let e = net.predict_inputs(&[a.view(), b.slice(nnlang_runtime::ndarray::s![..4, ..])]).expect_err("rows differ");
    assert_eq!(e.to_string(), format!("the inputs have {rows} and 4 rows; every input needs a row per example"));
    let e = net.predict_inputs(&[b.view(), b.view()]).expect_err("too narrow");
    assert_eq!(e.to_string(), "rows of 2 values, but the model's input has 3 per example");
}

/// Threads that split each dense product (`--split products`) compute what one thread does,
/// bit for bit — losses and weights after every step, whatever their count — with dropout
/// (drawn once, by the calling thread), layers too small to split, inputs that are not whole
/// vectors, a batch that does not divide evenly and Adam; while threads that split the batch
/// average their gradients and so differ in the last bits. `auto` splits products for this
/// model and batches for a ConvNet.
#[test]
fn threads_that_split_products_train_bit_for_bit_as_one_thread() {
    use nnlang_runtime::train::{Split, Stepper};
    // With batch norms: their statistics and running averages are one thread's too.
    let src = "model P { input x: [784]\n x -> dense(256) -> batchnorm -> tanh -> dropout(keep = 0.8) -> dense(200) -> batchnorm(momentum = 0.3) -> relu -> dense(40) -> sigmoid -> dense(10) -> softmax }\n\
               train P on d { optimizer = adam(lr = 0.01), batch = 96, regularize { l2 = 1e-4 }, seed = 3 }\n\
               data d { train = idx(\"a\", \"b\") }\n";
    let (train, _, _, opts) = interpreter(src, "P");
    let mut params = vec![0f32; train.params_len];
    nnlang_runtime::train::initialize(&train, &mut params, nnlang_runtime::train::Init::He, 3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let x: Vec<f32> = (0..96 * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<f32> = (0..96).map(|r| (r * 7 % 10) as f32).collect();
    let run = |threads: usize, split: Split| {
        let o = nnlang_runtime::train::Options { split, ..opts.clone() };
        let mut s = Stepper::new(&train, params.clone(), &o, threads);
        let mut seen = Vec::new();
        for rows in [96, 50, 96, 7] {
            let loss = s.step(&x[..rows * 784], &y[..rows], rows).expect("step");
            seen.push((loss.to_bits(), bits(s.params())));
        }
        seen
    };
    let one = run(1, Split::Auto);
    assert!(Split::Auto.products(&train, 2), "a model of dense layers splits its products");
    for threads in [2, 3] {
        let many = run(threads, Split::Products);
        for (step, (a, b)) in one.iter().zip(&many).enumerate() {
            assert_eq!(a.0, b.0, "{threads} threads: the loss of step {step}");
            assert!(a.1 == b.1, "{threads} threads: the weights after step {step}");
        }
    }
    assert!(run(2, Split::Batch).last() != one.last(), "splitting the batch averages halves");
    let (conv, _, _, _) = interpreter(include_str!("../examples/mnist_convnet.nn"), "MnistConvNet");
    assert!(!Split::Auto.products(&conv, 2), "a ConvNet splits its batches");
    // The MNIST MLP's activations (1,562 values a row) are fewer than its 235,146 weights up to
    // a batch of 150: products at 64 and 128, batches at 256.
    let c = compile(include_str!("../examples/mnist_mlp.nn"), &Options::default()).expect("compiles");
    let at = |rows| build(&c.models[0], Mode::Training(nnlang::plan::Loss::CROSS_ENTROPY), rows).expect("plan");
    assert!(Split::Auto.products(&at(64), 2) && Split::Auto.products(&at(128), 4));
    assert!(!Split::Auto.products(&at(256), 2) && !Split::Auto.products(&at(64), 1));
}

/// Generated code's threads split products as the interpreter's do: two threads give one
/// thread's weights bit for bit, and the interpreter's two-thread step.
#[test]
fn generated_threads_that_split_products_train_as_one_thread() {
    const { assert!(Mlp::SPLITS_PRODUCTS, "the MNIST MLP at batch 64 splits its products") };
    let (train, _, _, opts) = interpreter(include_str!("../examples/mnist_mlp.nn"), "Mlp");
    let rows = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let x: Vec<f32> = (0..rows * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % 10) as f32).collect();
    let (mut one, mut two) = (Mlp::new(3), Mlp::new(3));
    let (mut opt1, mut opt2) = (one.optimizer(), two.optimizer());
    two.split_products(2, &mut opt2).expect("threads");
    let mut stepper = nnlang_runtime::train::Stepper::new(&train, one.weights().to_vec(), &opts, 2);
    for step in 0..3 {
        let a = one.train_step(&x, &y, rows, &mut opt1).expect("step");
        let b = two.train_step(&x, &y, rows, &mut opt2).expect("step");
        let c = stepper.step(&x, &y, rows).expect("step");
        assert_eq!((a.to_bits(), a.to_bits()), (b.to_bits(), c.to_bits()), "loss at step {step}");
        assert_eq!(bits(one.weights()), bits(two.weights()), "weights after step {step}");
        assert_eq!(bits(one.weights()), bits(stepper.params()), "interpreter after step {step}");
    }
    assert_eq!(bits(one.forward(&x, rows)), bits(two.forward(&x, rows)), "forward");
}

/// Models named `fn`, `Self` and `f32` compile into `r#fn`, `Self_` and `f32_`, and run.
#[test]
fn models_named_like_rust_keywords_compile_and_run() {
    let x = [0.5f32, -1.0, 2.0];
    let outs = [
        r#fn::new(1).forward(&x, 1).to_vec(),
        Self_::new(1).forward(&x, 1).to_vec(),
        f32_::new(1).forward(&x, 1).to_vec(),
    ];
    for out in outs {
        assert_eq!(out.len(), 2);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6, "softmax outputs {out:?}");
    }
}

/// Warm-up and cosine decay (step by step) with AdamW in the generated `fit` are `nnlangc
/// train`'s: the same rate at the end of every epoch and the same weights, bit for bit; the
/// rate climbs through the warm-up, then falls to `min` at the last step.
#[test]
fn fit_follows_a_cosine_schedule_as_nnlangc_train() {
    let root = common::root();
    let iris = nnlang_runtime::data::csv::read_rows(&root.join("examples/data/sklearn/iris.csv.gz"), Some(0), None)
        .expect("iris");
    let x = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 4), iris.x.clone()).expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 1), iris.y.clone()).expect("shape");
    let mut net = CosineIris::new(CosineIris::SEED);
    let history = net.fit(x.view(), y.view(), |_| true).expect("fits");
    let dir = common::temp_dir("fit-cosine");
    let file = dir.join("cosine.nn");
    std::fs::write(
        &file,
        format!(
            "model CosineIris {{\n input x: [4]\n x -> dense(16) -> tanh -> dense(3) -> softmax\n}}\n\
             train CosineIris on iris {{ loss = cross_entropy, optimizer = adamw(lr = 0.05, weight_decay = 0.1), schedule = cosine(min = 0.05), warmup = 2, batch = 16, epochs = 12, validate = 20%, seed = 4 }}\n\
             data iris {{ train = csv(\"{}\", label = 0), standardize = true }}\n",
            root.join("examples/data/sklearn/iris.csv.gz").display()
        ),
    )
    .expect("source");
    let run = dir.join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train".as_ref(), file.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), run.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics");
    let header: Vec<&str> = metrics.lines().next().expect("header").split(',').collect();
    let col = header.iter().position(|h| *h == "lr").expect("an lr column");
    let trained: Vec<f64> =
        metrics.lines().skip(1).map(|l| l.split(',').nth(col).expect("lr").parse().expect("a number")).collect();
    let fitted: Vec<f64> = history.iter().map(|e| e.lr).collect();
    assert_eq!(fitted, trained, "the same rate at every epoch");
    // The last step of the warm-up reaches the base rate; the last step of the run `min`.
    assert!((fitted[1] - 0.05).abs() < 1e-12 && fitted[0] < fitted[1], "{fitted:?}");
    assert!(fitted.windows(2).skip(1).all(|w| w[1] < w[0]), "falling after the warm-up: {fitted:?}");
    assert!((fitted[11] - 0.05 * 0.05).abs() < 1e-12, "{fitted:?}");
    let mut saved = CosineIris::new(0);
    saved.load(run.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(saved.weights()), bits(net.weights()), "fit and nnlangc train agree");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Label smoothing, gradient accumulation and `clip = norm(…)` in the generated `fit` are
/// `nnlangc train`'s, bit for bit.
#[test]
fn fit_smooths_labels_and_accumulates_as_nnlangc_train() {
    let root = common::root();
    let iris = nnlang_runtime::data::csv::read_rows(&root.join("examples/data/sklearn/iris.csv.gz"), Some(0), None)
        .expect("iris");
    let x = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 4), iris.x.clone()).expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((iris.rows(), 1), iris.y.clone()).expect("shape");
    let mut net = SmoothIris::new(SmoothIris::SEED);
    let history = net.fit(x.view(), y.view(), |_| true).expect("fits");
    let dir = common::temp_dir("fit-smooth");
    let file = dir.join("smooth.nn");
    std::fs::write(
        &file,
        format!(
            "model SmoothIris {{\n input x: [4]\n x -> dense(16) -> tanh -> dense(3) -> softmax\n}}\n\
             train SmoothIris on iris {{ loss = cross_entropy(smoothing = 0.2), optimizer = sgd(lr = 0.2, momentum = 0.9), batch = 8, accumulate = 4, clip = norm(1.5), epochs = 6, validate = 20%, seed = 5 }}\n\
             data iris {{ train = csv(\"{}\", label = 0), standardize = true }}\n",
            root.join("examples/data/sklearn/iris.csv.gz").display()
        ),
    )
    .expect("source");
    let run = dir.join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
        .args(["train".as_ref(), file.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), run.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mut saved = SmoothIris::new(0);
    saved.load(run.join("weights.safetensors")).expect("loads");
    assert_eq!(bits(saved.weights()), bits(net.weights()), "fit and nnlangc train agree");
    // It learned: the plain cross-entropy on the held-out fifth is well below chance (ln 3).
    let last = history.last().expect("epochs");
    assert!(last.val_loss.is_some_and(|l| l < 0.6), "{last:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The generated `fit` augments the training images as `nnlangc train` does (the same draws
/// per epoch from the seed): the same weights, bit for bit.
#[test]
fn fit_augments_images_as_nnlangc_train() {
    let root = common::root();
    let path = root.join("examples/data/sklearn/digits.csv.gz");
    let digits = nnlang_runtime::data::csv::read_rows(&path, Some(0), None).expect("digits");
    let x = nnlang_runtime::ndarray::Array2::from_shape_vec((digits.rows(), 64), digits.x.clone()).expect("shape");
    let y = nnlang_runtime::ndarray::Array2::from_shape_vec((digits.rows(), 1), digits.y.clone()).expect("shape");
    let mut net = AugDigits::new(AugDigits::SEED);
    net.fit(x.view(), y.view(), |_| true).expect("fits");
    let dir = common::temp_dir("fit-augment");
    let file = dir.join("aug.nn");
    std::fs::write(
        &file,
        format!(
            "model AugDigits {{\n input x: [8, 8, 1]\n x -> conv(filters = 8, size = 3, pad = same) -> relu -> maxpool(size = 2) -> dense(10) -> softmax\n}}\n\
             train AugDigits on digits {{ loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 32, epochs = 2, validate = 20%, seed = 9 }}\n\
             data digits {{ train = csv(\"{}\", label = 0), scale = 1/16, augment {{ crop = 1, shift = 1, flip = true }} }}\n",
            path.display()
        ),
    )
    .expect("source");
    let run = |out: &std::path::Path, src: &std::path::Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_nnlangc"))
            .args(["train".as_ref(), src.as_os_str(), "--quiet".as_ref(), "--out".as_ref(), out.as_os_str()])
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&dir.join("run"), &file);
    let mut saved = AugDigits::new(0);
    saved.load(dir.join("run/weights.safetensors")).expect("loads");
    assert_eq!(bits(saved.weights()), bits(net.weights()), "fit and nnlangc train agree");
    // And the augmentation is on: without it, other weights.
    let plain = dir.join("plain.nn");
    let src =
        std::fs::read_to_string(&file).expect("source").replace(", augment { crop = 1, shift = 1, flip = true }", "");
    std::fs::write(&plain, src).expect("plain");
    run(&dir.join("plain"), &plain);
    saved.load(dir.join("plain/weights.safetensors")).expect("loads");
    assert_ne!(bits(saved.weights()), bits(net.weights()), "augmented ≠ plain");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Workers of a batch-splitting step that plan for their share of the batch only (what
/// `nnlangc train --threads N` gives them) train bit for bit as workers that plan for the
/// whole batch — here on streams with carried LSTM states, batch norm's meetings and
/// dropout — and their memory is the share's.
#[test]
fn workers_planned_for_their_share_train_as_workers_planned_for_the_batch() {
    let src = "model Chars {\n input text: [seq <= 12] ids < 7\n text -> embedding(7, 6) -> lstm(16) -> batchnorm -> dropout(keep = 0.8) -> dense(7) -> softmax\n }\n train Chars on d { loss = cross_entropy, optimizer = adam(lr = 0.01), batch = 40, bptt = 12, clip = 1.0, seed = 3 }\n data d { train = text(\"unused.txt\") }";
    let (train, _, _, mut opts) = interpreter(src, "Chars");
    opts.split = nnlang_runtime::train::Split::Batch;
    let c = compile(src, &Options::default()).expect("compiles");
    let share = nnlang_runtime::train::worker_rows(40, 2);
    assert_eq!(share, 20);
    let mode = Mode::Training(nnlang::plan::Loss::CROSS_ENTROPY);
    let small = nnlang::plan::build_carrying(&c.models[0], mode, share).expect("plan");
    assert!(small.arena_len * 3 < train.arena_len * 2, "{} vs {}", small.arena_len, train.arena_len);
    let rows = 40;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..rows * 12).map(|_| rng.random_range(0..7) as f32).collect();
    let y: Vec<f32> = (0..rows * 12).map(|_| rng.random_range(0..7) as f32).collect();
    let lengths: Vec<usize> = (0..rows).map(|r| 1 + (r * 5) % 12).collect();
    let mut params = vec![0f32; train.params_len];
    nnlang_runtime::train::initialize(&train, &mut params, opts.init, 3);
    let whole = nnlang_runtime::train::Stepper::new(&train, params.clone(), &opts, 2);
    opts.worker_plan = Some(std::sync::Arc::new(small));
    let shared = nnlang_runtime::train::Stepper::new(&train, params, &opts, 2);
    let (mut a, mut b) = (whole, shared);
    for step in 0..4 {
        if step == 3 {
            a.reset_state();
            b.reset_state();
        }
        let la = a.step_sequences(&x, &y, &lengths, rows).expect("step");
        let lb = b.step_sequences(&x, &y, &lengths, rows).expect("step");
        assert_eq!(la.to_bits(), lb.to_bits(), "loss at step {step}");
        assert_eq!(bits(a.params()), bits(b.params()), "weights after step {step}");
    }
}
