#!/usr/bin/env bash
# Side by side, in one run: the MLP training step of examples/mnist_mlp.nn, as code generated
# by nn!, in the plan interpreter, and in PyTorch, at batch 64 and 256 on 1 and 2 threads.
#
# Two threads share the step as `nnlangc train --split auto` would (each product at batch 64,
# the batch at 256); NNLANG_SPLIT=batch or NNLANG_SPLIT=products forces one way.
#
#   PYTHON=/path/to/venv/bin/python [NNLANG_SPLIT=batch] bench/mlp.sh
exec "$(dirname "$0")/side_by_side.sh" train_step bench/pytorch_mlp.py --batch 64 256
