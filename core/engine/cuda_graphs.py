"""The guided step captured as a CUDA graph: one launch per step instead of hundreds.

Measured on an H100 on 2026-11-23 (bench/h100/README.md): the stock pipeline's step takes 60 ms, nearly all of
it Python launching kernels; the same ControlNet + UNet captured as one ``torch.cuda.CUDAGraph``
replays in 15 ms, bit-identical to eager. Rules this module keeps, each learned the hard way:

- One graph per input shape (working-size bucket, batch rows, prompt tokens, control on/off),
  captured on first use and kept for the process (the model registry holds this object).
- All graphs share ONE memory pool: they never replay at once, so five buckets cost about the
  memory of one instead of five.
- A graph holds raw pointers, not references: every static input tensor is kept alive with its
  graph, or replays read freed memory without any error.
- With a shared pool, a replay may overwrite another graph's output: callers consume the output
  before the next replay (the sampler combines guidance right away).
- If a capture fails, that shape runs eagerly from then on, and the log says so once.
``BACKDROP_CUDA_GRAPHS=0`` turns graphs off.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import torch

from core.engine.step import GuidedStep, Predict

log = logging.getLogger(__name__)

WARMUP_RUNS = 3  # eager runs on a side stream before capture (cuDNN/cuBLAS pick their kernels)


def attention_backends():
    """Attention kernels in order of preference: cuDNN's (fastest measured at 512 and 768x1024 on
    Hopper), then flash, memory-efficient, and the plain maths one where the others do not apply."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    return sdpa_kernel(order, set_priority=True)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]  # static inputs: the graph reads these addresses
    output: torch.Tensor
    seconds: float  # warm-up + capture

    def load(self, cond) -> None:
        """Copy one run's constant inputs into the static tensors."""
        self.inputs["text"].copy_(cond.text)
        for name in ("extra", "control"):
            if name in self.inputs:
                self.inputs[name].copy_(getattr(cond, name))
        self.inputs["scale"].fill_(float(cond.control_scale))

    def predict(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        self.inputs["sample"].copy_(sample)
        self.inputs["timestep"].copy_(timestep)
        self.graph.replay()
        return self.output


def shape_key(sample_shape: tuple[int, ...], cond, dtype) -> tuple:
    """What a graph is specific to: latent shape (rows, channels, h, w), prompt tokens, whether
    the mask latents and the control image are inputs, and the dtype."""
    return (tuple(sample_shape), tuple(cond.text.shape), cond.extra is not None,
            None if cond.control is None else tuple(cond.control.shape), str(dtype))


class StepGraphs:
    """The captured steps of one (UNet, ControlNet) pair on one CUDA device."""

    def __init__(self, step: GuidedStep) -> None:
        self.step = step
        self._graphs: dict[tuple, _Graph] = {}
        self._failed: dict[tuple, str] = {}
        self._pool = None
        self._lock = threading.Lock()

    def predictor(self, sample_shape: tuple[int, ...], cond) -> tuple[Predict | None, dict]:
        """A replaying predictor for this run, and what to record about it; (None, info) when
        this shape cannot be captured (the caller runs the step eagerly)."""
        key = shape_key(sample_shape, cond, cond.text.dtype)
        with self._lock:
            graph = self._graphs.get(key)
            info = {"step": "cuda_graph", "graph_captured_now": graph is None}
            if graph is None:
                if key in self._failed:
                    return None, {"step": "eager", "graph_error": self._failed[key]}
                try:
                    graph = self._capture(sample_shape, cond)
                except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    self._failed[key] = reason
                    log.warning("CUDA graph capture failed for %s; this shape runs eagerly: %s", key, reason)
                    torch.cuda.synchronize()
                    return None, {"step": "eager", "graph_error": reason}
                self._graphs[key] = graph
                info["graph_capture_s"] = graph.seconds
            graph.load(cond)
            return graph.predict, info

    def _capture(self, sample_shape: tuple[int, ...], cond) -> _Graph:
        start = time.perf_counter()
        device = cond.text.device
        inputs = {
            "sample": torch.zeros(sample_shape, device=device, dtype=cond.text.dtype),
            "timestep": torch.full((), 500.0, device=device, dtype=torch.float32),
            "text": cond.text.clone(),
            "scale": torch.full((), float(cond.control_scale), device=device, dtype=torch.float32),
        }
        if cond.extra is not None:
            inputs["extra"] = cond.extra.clone()
        if cond.control is not None:
            inputs["control"] = cond.control.clone()

        def run():
            return self.step(inputs["sample"], inputs["timestep"], inputs["text"], inputs.get("extra"),
                             inputs.get("control"), inputs["scale"])

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                run()
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a model loading or a compile on another thread must not break this capture
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            output = run()
        torch.cuda.synchronize()
        return _Graph(graph, inputs, output, time.perf_counter() - start)

    def captured(self) -> list[tuple]:
        return list(self._graphs)
