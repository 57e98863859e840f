"""The CUDA-graph step manager's bookkeeping, on the CPU, with a recording stand-in for CUDAGraph.

A real CUDA graph records the kernels of one call with their tensors' addresses and replays them
on whatever those tensors hold now. The stand-in does the same at the operator level: capture
records every aten call with its argument and output tensors; replay re-runs them in order and
writes each result into the recorded output tensor. So these tests check what is ours to get
right (static inputs refreshed per run and per step, one graph per shape, the output consumed
before the next replay, fallback to eager when a capture fails) and what a GPU adds on top is
measured by bench/gpu_bench.py.
"""

import contextlib
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from core.engine import generate
from core.engine.cuda_graphs import StepGraphs
from core.models.registry import ModelRegistry
from core.request import GenerationRequest
from core.engine.runner import StepRunner

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = (96, 64)


class _Recorder(TorchDispatchMode):
    """Records each operator with aliases of its tensor arguments: like a graph's raw pointers,
    an alias keeps reading the memory the tensor had at capture, even if the tensor (a module's
    weight) is later given other memory."""

    def __init__(self, graph):
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        args, kwargs = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, (args, kwargs))
        self.graph.ops.append((func, args, kwargs, out))
        return out


class RecordedGraph:
    """Stands in for torch.cuda.CUDAGraph: replay() re-runs the recorded operators in place."""

    captures = 0

    def __init__(self):
        self.ops = []

    def replay(self):
        for func, args, kwargs, recorded in self.ops:
            fresh = func(*args, **kwargs)
            for old, new in zip(tree_flatten(recorded)[0], tree_flatten(fresh)[0]):
                if isinstance(old, torch.Tensor) and old.data_ptr() != new.data_ptr():
                    old.copy_(new)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's graph API on the CPU; ``fail`` makes the next capture raise."""
    state = {"fail": False}

    @contextlib.contextmanager
    def graph(cuda_graph, pool=None, capture_error_mode="global"):
        if state["fail"]:
            raise RuntimeError("operation not permitted when stream is capturing")
        RecordedGraph.captures += 1
        with _Recorder(cuda_graph):
            yield

    class Stream:
        def wait_stream(self, other):
            pass

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, "CUDAGraph", RecordedGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    RecordedGraph.captures = 0
    return state


@pytest.fixture(scope="module")
def inputs(inpaint_inputs):
    return inpaint_inputs


def _graphed_registry(monkeypatch) -> ModelRegistry:
    """A registry whose step runners take the CUDA-graph path on this CPU."""
    registry = ModelRegistry()

    def runner(self, inpaint_id, controlnet_id, device):
        unet = self.load("inpaint", inpaint_id, device).unet
        controlnet = self.load("controlnet", controlnet_id, device) if controlnet_id else None
        key = ("step", inpaint_id, controlnet_id)
        if key not in self._cache:
            made = StepRunner(unet, controlnet, device)
            made.cuda, made.graphs = True, StepGraphs(made.step)
            self._cache[key] = made
        return self._cache[key]

    monkeypatch.setattr(ModelRegistry, "step_runner", runner)
    return registry


def _request(tiny_models, **changes) -> GenerationRequest:
    return GenerationRequest(background="ai", prompt="a photo of a beach at sunset", seed=5, steps=4, device="cpu",
                             inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"],
                             depth_model=tiny_models["depth"]).replace(**changes)


def _arrays(images):
    return [np.asarray(image) for image in images]


def test_replayed_steps_equal_eager_steps_across_runs_and_shapes(tiny_models, inputs, fake_cuda, monkeypatch):
    eager = {}
    plain = ModelRegistry()
    requests = {"first": _request(tiny_models), "other prompt and seed": _request(tiny_models, prompt="a city street", seed=9),
                "two variants": _request(tiny_models, variants=2), "scale 0.3": _request(tiny_models, control_scale=0.3),
                "no control": _request(tiny_models, control_scale=0.0)}
    for name, request in requests.items():
        eager[name] = _arrays(generate.generate_backgrounds(*inputs, request, registry=plain))
    registry = _graphed_registry(monkeypatch)
    records = {}
    for name, request in requests.items():
        record: dict = {}
        graphed = _arrays(generate.generate_backgrounds(*inputs, request, registry=registry, record=record))
        records[name] = record
        assert all(np.array_equal(a, b) for a, b in zip(graphed, eager[name])), name
    assert all(r["step"] == "cuda_graph" for r in records.values())
    # captured once per shape: a new prompt, seed or control strength replays the same graph
    assert [r["graph_captured_now"] for r in records.values()] == [True, False, True, False, True]
    assert RecordedGraph.captures == 3
    again: dict = {}
    generate.generate_backgrounds(*inputs, requests["first"], registry=registry, record=again)
    assert again["graph_captured_now"] is False and RecordedGraph.captures == 3


def test_a_failed_capture_runs_eagerly_and_says_so_once(tiny_models, inputs, fake_cuda, monkeypatch, caplog):
    registry = _graphed_registry(monkeypatch)
    request = _request(tiny_models)
    expected = _arrays(generate.generate_backgrounds(*inputs, request, registry=ModelRegistry()))
    fake_cuda["fail"] = True
    records = []
    with caplog.at_level(logging.WARNING, logger="core.engine.cuda_graphs"):
        for _ in range(2):
            record: dict = {}
            images = _arrays(generate.generate_backgrounds(*inputs, request, registry=registry, record=record))
            records.append(record)
            assert all(np.array_equal(a, b) for a, b in zip(images, expected))
    assert [r["step"] for r in records] == ["eager", "eager"] and "not permitted" in records[0]["graph_error"]
    assert sum("CUDA graph capture failed" in m for m in caplog.messages) == 1


def test_graphs_switched_off_by_the_environment(tiny_models, inputs, fake_cuda, monkeypatch):
    monkeypatch.setenv("BACKDROP_CUDA_GRAPHS", "0")
    record: dict = {}
    generate.generate_backgrounds(*inputs, _request(tiny_models), registry=_graphed_registry(monkeypatch), record=record)
    assert record["step"] == "eager" and RecordedGraph.captures == 0


def test_a_captured_graph_replays_the_fused_weights(tiny_models, inputs, fake_cuda, monkeypatch, lora_hub):
    """Fast mode fuses its LoRA into the UNet's weights in place: a graph captured with the model's
    own weights, replayed after the switch, computes with the fused ones (and with the own ones
    again after switching back), each run equal to the eager step of its mode. Standard mode at
    guidance 1 has fast mode's shape (one row per variant), so both replay one graph."""
    standard = _request(tiny_models, guidance=1.0, variants=2)
    fast = standard.replace(fast=True)  # LCM-LoRA: guidance 1 as well
    eager = {"standard": _arrays(generate.generate_backgrounds(*inputs, standard, registry=ModelRegistry())),
             "fast": _arrays(generate.generate_backgrounds(*inputs, fast, registry=ModelRegistry()))}
    assert not all(np.array_equal(a, b) for a, b in zip(eager["standard"], eager["fast"]))
    registry = _graphed_registry(monkeypatch)
    records = []
    for name, request in (("standard", standard), ("fast", fast), ("standard", standard), ("fast", fast)):
        record: dict = {}
        graphed = _arrays(generate.generate_backgrounds(*inputs, request, registry=registry, record=record))
        assert all(np.array_equal(a, b) for a, b in zip(graphed, eager[name], strict=True)), name
        records.append(record)
    assert [r["step"] for r in records] == ["cuda_graph"] * 4
    assert [r["graph_captured_now"] for r in records] == [True, False, False, False] and RecordedGraph.captures == 1
    assert [r["fused_now"] for r in records] == [False, True, False, True]
