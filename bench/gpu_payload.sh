#!/usr/bin/env bash
# What bench/gpu_check.py needs on a GPU machine that cannot download: the wheels of TRL, datasets and the config
# libraries (pure Python, CPython 3.12 x86-64 as that machine runs), and the SmolLM2 tokenizer, under .gpu/ (ignored
# by git; the device run carries it, ~6 MB of the 64 MiB allowed). Versions: TRL 1.16.0 as in bench/RESULTS.md;
# datasets 4.7.0, the oldest TRL 1.16 accepts (its pyarrow floor is the lowest); hydra-core/omegaconf/antlr4 as pinned
# by hydra 1.3. Run from the repository root with the project's Python: bash bench/gpu_payload.sh
set -euo pipefail
python=${PYTHON:-python}
rm -rf .gpu && mkdir -p .gpu/wheels
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/wheels \
  trl==1.16.0 datasets==4.7.0 "dill<0.4.2" "multiprocess<0.70.20" hydra-core==1.3.8 omegaconf==2.3.0
"$python" -m pip wheel -q --no-deps -w .gpu/wheels antlr4-python3-runtime==4.9.3  # an sdist only: built here
"$python" bench/gpu_check.py --export-tokenizer .gpu/tokenizer
du -sh .gpu
