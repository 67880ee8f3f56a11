"""bench/gpu.sh's first step: can this machine run the GPU benchmark? Answers in seconds.

    python3 -m bench.gpu_preflight [--dry-run]      # from the repository root

Before any model is built (a lent GPU is held for minutes only): every module the run imports
(naming the wheel list to carry when one is missing), torch's CUDA (not with --dry-run, which
runs the tiny models on the CPU), and the CLIP vocabulary the tokenizers are built from. Prints
one line per check; exit 0, or 2 with a line saying what failed and what to do.

Importing this module does nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# What bench/gpu.sh runs imports: the benchmark scripts, the studio (bench/overhead.py serves
# it), and the libraries the generator only imports when it loads.
MODULES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "peft", "PIL", "numpy",
           "test_speed", "bench.sdxl_random", "bench.overhead", "app", "local_image_generator")
WHEELS_HINT = "carry the wheels of bench/gpu-wheels.txt in .whl/ (bash bench/gpu.sh --fetch-wheels)"


def check_imports() -> list[str]:
    problems = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as error:
            hint = "run with the python3 that has the machine's CUDA torch (PYTHON=...)" if name == "torch" \
                else WHEELS_HINT
            problems.append(f"import {name}: {error}; {hint}")
    return problems


def check_cuda() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return [f"CUDA: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no GPU; "
                "run on the GPU machine, or pass --dry-run for the tiny models on the CPU"]
    a = torch.ones(64, 64, device="cuda", dtype=torch.float16)
    if float((a @ a)[0, 0]) != 64:  # one kernel: the driver and this torch work together
        return ["CUDA: a 64x64 matmul on the GPU gave a wrong answer"]
    print(f"preflight: CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, torch {torch.__version__} "
          f"from {torch.__file__}")
    return []


def check_vocabulary() -> list[str]:
    import tiny_models

    try:
        merges = tiny_models.clip_bpe_merges()
    except tiny_models.MissingVocabulary as error:
        return [f"CLIP vocabulary: {error} On the GPU machine: {WHEELS_HINT}"]
    print(f"preflight: CLIP vocabulary, {len(merges)} merges")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny models on the CPU: no CUDA needed")
    args = parser.parse_args(argv)
    problems = check_imports()
    if not problems:  # the later checks import torch and the project
        problems = (check_cuda() if not args.dry_run else []) + check_vocabulary()
    for problem in problems:
        print(f"preflight FAILED: {problem}", file=sys.stderr)
    if problems:
        return 2
    import diffusers
    import peft
    import transformers

    print(f"preflight: ok (diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
