"""Prompt assistant benchmark: how long Improve prompt takes, and what it costs other sessions.

No real language model's weights reach this machine, so two models stand in:

- ``tiny``: the tests' tiny random Qwen2 chat model (tests/tiny_models.py), through the product's
  own path (core.prompting.assistant.propose: the loader, the chat template, greedy search, the
  deny-list), median of ``--repeats`` proposals of 75 tokens, alternating with transformers'
  ``generate`` alone on the same model and inputs;
- ``full size``: Qwen2ForCausalLM with Qwen/Qwen2.5-0.5B-Instruct's shapes (24 layers, hidden 896,
  14 heads, 2 key-value heads, 151,936 tokens: 494M parameters) and random weights, fp32 on the
  CPU, the product's generation settings, ``--prompt-tokens`` tokens in (the instruction, the
  chat markup and a few words come to about 150 of Qwen's tokens) and all 75 new tokens out (the
  bound: a random model never ends itself), in wall and CPU seconds (on a loaded machine the CPU
  seconds say more). Time depends on the shapes, not the weights' values.

While the full-size model writes, another thread runs a ``probe``: ~10 ms of pure Python (what a
Streamlit page run of another session is made of), and its latency is compared with the same
probe on an idle process: the model's kernels release the interpreter, so the probe slows by
sharing the CPU, not by waiting for the proposal to end. Writes ``results/prompt-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=True)


def probe() -> float:
    """Seconds for ~10 ms of interpreter-bound work (building and serialising small objects)."""
    start = time.perf_counter()
    rows = [{"id": i, "label": f"row {i}", "values": list(range(i % 17))} for i in range(2500)]
    json.loads(json.dumps(rows))
    return time.perf_counter() - start


def tiny_proposals(repeats: int) -> dict:
    """The product's whole path (deny-list, chat template, greedy search, tidy) against
    transformers' ``generate`` alone on the same loaded model, inputs and settings."""
    import torch

    from core.models.registry import ModelRegistry
    from core.prompting.assistant import generation_config, model_inputs, propose
    from core.prompting.denylist import DenyList
    from tests.tiny_models import build_prompt_lm

    folder = str(build_prompt_lm(Path(tempfile.mkdtemp(prefix="backdrop-prompt-bench-"))))
    registry = ModelRegistry()
    deny = DenyList.parse("nike")
    propose("warm up", folder, "cpu", deny, registry)
    tokenizer, model = registry.load("prompt", folder, "cpu")
    inputs = model_inputs(tokenizer, "a shoe on a beach")
    runs, plain = [], []
    for _ in range(repeats):  # alternating: the product's path, then transformers' generate alone
        start = time.perf_counter()
        runs.append(propose("a Nike shoe on a beach", folder, "cpu", deny, registry))
        runs[-1] = time.perf_counter() - start, runs[-1]
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, generation_config=generation_config(model, tokenizer))
        plain.append(time.perf_counter() - start)
    seconds = [total for total, _ in runs]
    return {"tokens": runs[0][1].tokens, "median_s": statistics.median(seconds), "runs_s": seconds,
            "generate_alone_median_s": statistics.median(plain)}


def full_size(repeats: int, prompt_tokens: int, device: str) -> dict:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from core.prompting.assistant import MAX_NEW_TOKENS, REPETITION_PENALTY

    torch.manual_seed(0)
    made = time.perf_counter()
    model = Qwen2ForCausalLM(Qwen2Config(**QWEN25_05B)).to(device).eval()
    made = time.perf_counter() - made
    parameters = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, QWEN25_05B["vocab_size"], (1, prompt_tokens), device=device)

    def write(new_tokens: int) -> float:
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  repetition_penalty=REPETITION_PENALTY, eos_token_id=151645, pad_token_id=151643)
        start, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        assert out.shape[1] == prompt_tokens + new_tokens
        cpu_seconds.append(time.process_time() - cpu)
        return time.perf_counter() - start

    cpu_seconds: list[float] = []
    write(2)  # warm
    first = [write(1) for _ in range(repeats)]
    whole = [write(MAX_NEW_TOKENS) for _ in range(repeats)]
    whole_cpu = cpu_seconds[-repeats:]
    # another session's page run while the proposal is written
    idle = [probe() for _ in range(200)]
    busy: list[float] = []
    done = threading.Event()
    writer = threading.Thread(target=lambda: (write(MAX_NEW_TOKENS), done.set()))
    writer.start()
    while not done.is_set():
        busy.append(probe())
    writer.join()
    return {
        "parameters": parameters, "device": device, "built_s": made, "prompt_tokens": prompt_tokens,
        "new_tokens": MAX_NEW_TOKENS, "first_token_median_s": statistics.median(first),
        "proposal_median_s": statistics.median(whole), "proposal_runs_s": whole,
        "proposal_cpu_median_s": statistics.median(whole_cpu),
        "per_new_token_s": (statistics.median(whole) - statistics.median(first)) / (MAX_NEW_TOKENS - 1),
        "probe_idle_median_ms": 1000 * statistics.median(idle), "probe_idle_max_ms": 1000 * max(idle),
        "probe_during_proposal_median_ms": 1000 * statistics.median(busy),
        "probe_during_proposal_max_ms": 1000 * max(busy), "probes_during_proposal": len(busy),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full-repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=150)
    parser.add_argument("--device", default="cpu", help="for the full-size model (cpu, cuda)")
    parser.add_argument("--skip-full", action="store_true", help="the tiny model only (a smoke run)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: bench/results/prompt-<date>.json)")
    args = parser.parse_args(argv)

    import torch

    load_before = os.getloadavg()
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "load_before": load_before, "tiny": tiny_proposals(args.repeats)}
    tiny = result["tiny"]
    print(f"tiny model: {tiny['tokens']} tokens in {tiny['median_s']:.3f} s, transformers' generate alone "
          f"{tiny['generate_alone_median_s']:.3f} s (medians of {args.repeats}, alternating)")
    if not args.skip_full:
        full = result["full_size"] = full_size(args.full_repeats, args.prompt_tokens, args.device)
        print(f"full size ({full['parameters'] / 1e6:.0f}M parameters, {full['device']}): first token "
              f"{full['first_token_median_s']:.2f} s, {full['new_tokens']} tokens {full['proposal_median_s']:.2f} s "
              f"({1000 * full['per_new_token_s']:.0f} ms a token; {full['proposal_cpu_median_s']:.1f} s of CPU), "
              f"median of {args.full_repeats}")
        print(f"another session's 10 ms page work: {full['probe_idle_median_ms']:.1f} ms (max "
              f"{full['probe_idle_max_ms']:.1f}) idle, "
              f"{full['probe_during_proposal_median_ms']:.1f} ms (max {full['probe_during_proposal_max_ms']:.1f}) "
              "while a proposal is written")
    result["load_after"] = os.getloadavg()
    print(f"load average {load_before[0]:.2f} -> {result['load_after'][0]:.2f}")
    out = args.out or ROOT / "bench" / "results" / f"prompt-{datetime.now():%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
