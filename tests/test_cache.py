"""The stage cache: hits skip the work, keys separate what must differ, the byte budget holds."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from core.cache import StageCache, get_cache, image_digest


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_same_parts_compute_once_and_return_equal_value():
    cache = StageCache(max_bytes=10_000)
    compute, calls = _counting(Image.new("L", (8, 8), 200))
    first = cache.get_or_compute("mask", ("abc", "u2netp"), compute)
    second = cache.get_or_compute("mask", ("abc", "u2netp"), compute)
    assert len(calls) == 1
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert cache.hits == {"mask": 1} and cache.misses == {"mask": 1}


def test_different_model_stage_or_image_are_separate_entries():
    cache = StageCache(max_bytes=10_000)
    compute, calls = _counting(Image.new("L", (4, 4)))
    cache.get_or_compute("mask", ("img1", "u2netp"), compute)
    cache.get_or_compute("mask", ("img1", "isnet-general-use"), compute)
    cache.get_or_compute("depth", ("img1", "u2netp"), compute)
    cache.get_or_compute("mask", ("img2", "u2netp"), compute)
    assert len(calls) == 4 and len(cache) == 4


def test_caller_edits_do_not_reach_the_cached_image_or_array():
    cache = StageCache(max_bytes=10_000)
    got = cache.get_or_compute("mask", ("k",), lambda: Image.new("L", (4, 4), 0))
    got.putpixel((0, 0), 255)
    assert cache.get_or_compute("mask", ("k",), lambda: None).getpixel((0, 0)) == 0
    arr = cache.get_or_compute("a", ("k",), lambda: np.zeros(3))
    arr[0] = 9
    assert cache.get_or_compute("a", ("k",), lambda: None)[0] == 0


def test_tensor_tuples_are_cached_and_sized():
    cache = StageCache(max_bytes=10_000)
    pair = (torch.zeros(2, 77, 4), torch.ones(2, 77, 4))
    got = cache.get_or_compute("text", ("model", "rev", "cpu", "float32", "a cat", ""), lambda: pair)
    assert got[0] is pair[0] and got[1] is pair[1]
    assert cache.nbytes == 2 * 2 * 77 * 4 * 4


def test_budget_evicts_least_recently_used_first():
    cache = StageCache(max_bytes=3 * 100)
    for name in "abc":
        cache.get_or_compute("m", (name,), lambda: Image.new("L", (10, 10)))
    cache.get_or_compute("m", ("a",), lambda: None)  # touch a: b is now the oldest
    cache.get_or_compute("m", ("d",), lambda: Image.new("L", (10, 10)))
    compute, calls = _counting(Image.new("L", (10, 10)))
    cache.get_or_compute("m", ("a",), compute)
    cache.get_or_compute("m", ("c",), compute)
    assert calls == []
    cache.get_or_compute("m", ("b",), compute)
    assert calls == [1]
    assert cache.nbytes <= 300


def test_zero_budget_disables_caching():
    cache = StageCache(max_bytes=0)
    compute, calls = _counting(Image.new("L", (2, 2)))
    cache.get_or_compute("mask", ("k",), compute)
    cache.get_or_compute("mask", ("k",), compute)
    assert len(calls) == 2 and len(cache) == 0


def test_failed_compute_is_not_cached():
    cache = StageCache(max_bytes=1000)

    def boom():
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("depth", ("k",), boom)
    assert cache.get_or_compute("depth", ("k",), lambda: 5) == 5


def test_image_digest_depends_on_pixels_mode_and_size():
    a = Image.new("RGB", (4, 2), (10, 20, 30))
    same = Image.frombytes("RGB", (4, 2), a.tobytes())
    assert image_digest(a) == image_digest(same)
    b = a.copy()
    b.putpixel((3, 1), (10, 20, 31))
    assert image_digest(a) != image_digest(b)
    assert image_digest(a) != image_digest(Image.frombytes("RGB", (2, 4), a.tobytes()))
    assert image_digest(a) != image_digest(Image.frombytes("YCbCr", (4, 2), a.tobytes()))


def test_concurrent_readers_get_consistent_values():
    cache = StageCache(max_bytes=1_000_000)
    results = []

    def worker(i):
        for j in range(50):
            results.append(cache.get_or_compute("m", (j % 5,), lambda j=j: j % 5) == j % 5)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results) and len(cache) == 5


def test_process_cache_reads_budget_from_env(monkeypatch):
    import core.cache as module

    monkeypatch.setattr(module, "_cache", None)
    monkeypatch.setenv("BACKDROP_CACHE_MB", "1")
    assert get_cache().max_bytes == 2**20
    assert get_cache() is get_cache()
    monkeypatch.setattr(module, "_cache", None)
