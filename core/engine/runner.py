"""Which way a guided step runs: eagerly, replayed from a CUDA graph, or compiled.

One ``StepRunner`` per (UNet, ControlNet, device), kept by the model registry, so graphs and
compiled code live as long as the models do. The choice per run: a compiled step where one is
ready for this shape (``BACKDROP_COMPILE=1``), else a CUDA graph on CUDA (unless
``BACKDROP_CUDA_GRAPHS=0``), else the eager step; what ran is recorded with the generation.
"""

from __future__ import annotations

import threading

import torch

from core.config import config
from core.engine.compile import CompiledStep
from core.engine.cuda_graphs import StepGraphs, shape_key
from core.engine.step import GuidedStep, Predict, eager_predictor


class StepRunner:
    def __init__(self, unet, controlnet, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        self.step = GuidedStep(unet, controlnet).eval()
        if self.cuda:  # cuDNN's convolutions skip their NCHW<->NHWC conversions (4.4 of 7.5 ms at 512)
            self.step.to(memory_format=torch.channels_last)
        self.graphs = StepGraphs(self.step) if self.cuda else None
        self._compiled: CompiledStep | None = None
        self._compiled_graphs: StepGraphs | None = None
        self._lock = threading.Lock()

    def compiled(self) -> CompiledStep:
        with self._lock:
            if self._compiled is None:
                self._compiled = CompiledStep(self.step)
                if self.cuda:
                    self._compiled_graphs = StepGraphs(self._compiled.module)
            return self._compiled

    def predictor(self, sample_shape: tuple[int, ...], cond) -> tuple[Predict, dict]:
        """The predict function for a run with latents of ``sample_shape`` (rows included) and
        ``cond``, and a record of how it runs."""
        use_graphs = self.cuda and config().cuda_graphs
        info: dict = {}
        if config().compile:
            compiled = self.compiled()
            key = shape_key(sample_shape, cond, cond.text.dtype)
            if compiled.ready(key):
                if use_graphs:
                    predict, graph_info = self._compiled_graphs.predictor(sample_shape, cond)
                    if predict is not None:
                        return predict, {**graph_info, "step": "compiled+cuda_graph"}
                return _compiled_predictor(compiled.module, cond), {"step": "compiled"}
            example = (torch.zeros(sample_shape, device=cond.text.device, dtype=cond.text.dtype),
                       torch.full((), 500.0, device=cond.text.device), cond.text, cond.extra, cond.control,
                       _scale_tensor(cond))
            compiled.request(key, example)
            info["compile"] = compiled.status(key)
        if use_graphs:
            predict, graph_info = self.graphs.predictor(sample_shape, cond)
            if predict is not None:
                return predict, {**info, **graph_info}
            info.update(graph_info)
        return eager_predictor(self.step, cond), {**info, "step": "eager"}


def _scale_tensor(cond) -> torch.Tensor:
    """The ControlNet strength as a 0-dim tensor: compiled code then reads it as an input
    instead of specialising (and recompiling) on each value."""
    return torch.full((), float(cond.control_scale), device=cond.text.device, dtype=torch.float32)


def _compiled_predictor(module, cond) -> Predict:
    scale = _scale_tensor(cond)

    def predict(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        # float32 timesteps whatever the scheduler's dtype: the same embedding, one compiled graph
        return module(sample, timestep.to(torch.float32), cond.text, cond.extra, cond.control, scale)

    return predict
