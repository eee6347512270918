"""How "auto" chooses a kernel: the first listed, unless an engine that is fast only on some
CPUs (`native.MEASURED`) measures faster on this one. Rates here are made up; the tests check
the choice that follows from them, never a timing."""

from __future__ import annotations

import pytest

import pow_mcp.pow.kernels as registry
from pow_mcp.pow.kernels import SearchKernel, available_kernels, choose, get_kernel, native

HYBRID = "sha-ni+sse"


class Fake:
    """A kernel that only has a name (choose() passes it to the rate function)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def search(self, *args: object) -> None:
        raise AssertionError("a fake kernel is never run")


def fakes(*names: str) -> dict[str, SearchKernel]:
    return {name: Fake(name) for name in names}


def rates(**per_kernel: float) -> tuple[registry.Rate, list[str]]:
    """A rate function answering the given rates ("sha_ni_sse" for "sha-ni+sse"), and the
    names it was asked about, in order."""
    asked: list[str] = []

    def measure(kernel: SearchKernel) -> float:
        asked.append(kernel.name)
        return per_kernel[kernel.name.replace("-", "_").replace("+", "_")]

    return measure, asked


def test_the_hybrid_is_one_of_the_measured_engines() -> None:
    assert HYBRID in native.MEASURED


@pytest.mark.parametrize(
    ("hybrid_rate", "chosen"),
    [(120.0, HYBRID), (104.0, HYBRID), (102.0, "sha-ni"), (100.0, "sha-ni"), (76.0, "sha-ni")],
)
def test_a_measured_engine_must_beat_the_first_by_the_margin(
    hybrid_rate: float, chosen: str
) -> None:
    measure, asked = rates(sha_ni=100.0, sha_ni_sse=hybrid_rate)
    kernels = fakes("sha-ni", "avx2", HYBRID, "scalar-c", "hashlib")
    assert choose(kernels, measure) == chosen
    # Interleaved rounds: the first engine before and after each measurement of the other.
    assert asked == ["sha-ni", HYBRID, "sha-ni"] * registry.MEASURE_ROUNDS


def test_a_clear_loss_in_the_first_round_ends_the_measuring() -> None:
    # This Zen 3 measures the hybrid at about 0.36x: one round says enough.
    measure, asked = rates(sha_ni=100.0, sha_ni_sse=35.0)
    assert choose(fakes("sha-ni", HYBRID, "hashlib"), measure) == "sha-ni"
    assert asked == ["sha-ni", HYBRID, "sha-ni"]


def test_the_median_round_decides() -> None:
    # One noisy round (the machine was busy while sha-ni ran) does not make the hybrid win.
    answers = iter([100.0, 200.0, 100.0] + [100.0, 50.0, 100.0] * 2)
    kernels = fakes("sha-ni", HYBRID, "hashlib")
    assert choose(kernels, lambda kernel: next(answers)) == "sha-ni"


def test_nothing_is_measured_without_a_measured_engine() -> None:
    measure, asked = rates()
    assert choose(fakes("avx2", "scalar-c", "hashlib"), measure) == "avx2"
    assert choose(fakes("hashlib"), measure) == "hashlib"
    assert asked == []


def test_a_measured_engine_is_never_the_default_by_its_place() -> None:
    # Even listed first, it runs only if it measures faster than the first other engine.
    measure, _ = rates(sha_ni=100.0, sha_ni_sse=90.0)
    assert choose(fakes(HYBRID, "sha-ni", "hashlib"), measure) == "sha-ni"


def test_auto_measures_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POW_KERNEL", raising=False)
    monkeypatch.setattr(registry, "_auto", {})
    calls: list[list[str]] = []

    def fake_choose(kernels: dict[str, SearchKernel]) -> str:
        calls.append(list(kernels))
        return "hashlib"

    monkeypatch.setattr(registry, "choose", fake_choose)
    assert get_kernel().name == "hashlib"
    assert get_kernel("auto").name == "hashlib"
    assert calls == [list(available_kernels())]


def test_pow_kernel_forces_a_kernel_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_auto", {})
    monkeypatch.setattr(registry, "choose", lambda kernels: pytest.fail("measured"))
    monkeypatch.setenv("POW_KERNEL", "hashlib")
    assert get_kernel().name == "hashlib"
    monkeypatch.delenv("POW_KERNEL")
    assert get_kernel("hashlib").name == "hashlib"


def test_auto_on_this_machine_is_the_first_kernel_or_a_measured_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POW_KERNEL", raising=False)
    names = list(available_kernels())
    assert get_kernel().name in {names[0], *native.MEASURED}
