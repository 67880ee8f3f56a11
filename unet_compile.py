"""The compiled UNet: compiling it, and which of its graphs are compiled yet.

A compiled UNet has one graph per key: the picture size, how many characters the lock holds
(0: the lock off), which distilled LoRA is on (its family, or none) and whether the consistent
look's reference rows are in the batch. A call whose graph is not compiled
yet runs the UNet eagerly and queues its key (:class:`CompiledGraphs`): nothing is ever
compiled while a board waits for it; the worker compiles queued keys when it has nothing to
draw. The kernels are cached in the data directory, so a restart reuses them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from config import Settings

log = logging.getLogger(__name__)

GraphKey = tuple[int, int, int, str | None, bool]  # (width, height, characters locked, the LoRA family on,
#                                                   the consistent look's reference rows in the batch)


def compile_cache_dir(settings: Settings) -> Path:
    return settings.data_path / "compile-cache"


def compile_unet(unet, settings: Settings, backend=None):
    """torch.compile ``unet``, its caches in the data directory; returns the compiled wrapper.

    One graph per picture size, with the batch (the only dimension a board varies) symbolic:
    a board's batches (its first panel alone, then the rest; with CFG and after the cutoff)
    all run the graphs the warm-up compiled, nothing recompiles mid-board. Batch 1 is a graph
    of its own (torch specialises sizes 0 and 1). The sizes stay static (convolutions tuned to
    them). ``backend``: another torch.compile backend (the tests count compiles with one).
    """
    import torch

    torch._dynamo.config.automatic_dynamic_shapes = False  # only the batch, marked below
    # sizes x {batch 1, batch n} x {lock off, 1-4 characters} x {LoRA off, on}: more than the default 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128)
    cache = compile_cache_dir(settings)
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    artifacts = cache / "artifacts.bin"
    if artifacts.exists() and hasattr(torch.compiler, "load_cache_artifacts"):
        torch.compiler.load_cache_artifacts(artifacts.read_bytes())
        log.info("loaded compiled kernels from %s", artifacts)
    how = {"backend": backend} if backend is not None else {"mode": settings.compile_mode}
    compiled = torch.compile(unet, fullgraph=False, dynamic=None, **how)
    compiled.register_forward_pre_hook(mark_batch_dynamic, with_kwargs=True)
    return compiled


def save_kernels(settings: Settings) -> None:
    """Keep the kernels compiled so far for the next start."""
    import torch

    if hasattr(torch.compiler, "save_cache_artifacts"):
        saved = torch.compiler.save_cache_artifacts()
        if saved:
            (compile_cache_dir(settings) / "artifacts.bin").write_bytes(saved[0])


def mark_batch_dynamic(module, args, kwargs) -> None:
    """Before dynamo sees a call: dimension 0 of every tensor in it (the batch) may vary."""
    import torch

    def mark(value):
        if isinstance(value, torch.Tensor):
            if value.dim() > 0:
                torch._dynamo.maybe_mark_dynamic(value, 0)
        elif isinstance(value, (list, tuple)):
            for item in value:
                mark(item)
        elif isinstance(value, dict):
            for item in value.values():
                mark(item)

    mark(args)
    mark(kwargs)


class CompiledGraphs:
    """Which graphs are compiled, and which wait to be, in the order they were met."""

    def __init__(self) -> None:
        self.warm: set[GraphKey] = set()
        self.waiting: dict[GraphKey, None] = {}  # a dict: ordered, and each key once

    def __len__(self) -> int:
        return len(self.waiting)

    def queue(self, keys: Iterable[GraphKey]) -> None:
        for key in keys:
            if key not in self.warm:
                self.waiting.setdefault(key, None)

    def is_warm(self, key: GraphKey) -> bool:
        return key in self.warm

    def take(self) -> GraphKey | None:
        """The next graph to compile, counted as compiled from now on (so that the throwaway
        board that compiles it runs the compiled UNet); None when none waits."""
        if not self.waiting:
            return None
        key = next(iter(self.waiting))
        del self.waiting[key]
        self.warm.add(key)
        return key

    def failed(self, key: GraphKey) -> None:
        """``key`` could not be compiled: its panels stay eager."""
        self.warm.discard(key)
