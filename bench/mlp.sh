#!/usr/bin/env bash
# Side by side, in one run: the MLP training step of examples/mnist_mlp.nn, as code generated
# by nn!, in the plan interpreter, and in PyTorch, at batch 64 and 256 on 1 and 2 threads.
#
#   PYTHON=/path/to/venv/bin/python bench/mlp.sh
exec "$(dirname "$0")/side_by_side.sh" train_step bench/pytorch_mlp.py --batch 64 256
