"""Shared fixtures (a Kaldi data dir of espeak-ng speech), and CI's rule that a skipped test
fails."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# Tests skip when an optional install is missing (TTS engines, asterisk sounds, deepspeed);
# CI must not pass with such an install broken.
CI_SKIP_MESSAGE = "skipped, which CI=true does not allow: {}"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _skip_reason_under_ci(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The reason of a skip (not an xfail) when `CI=true`, else None."""
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return None
    if hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Under CI=true a skip from a mark, a fixture or `pytest.skip` fails the test."""
    report = yield
    reason = _skip_reason_under_ci(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = CI_SKIP_MESSAGE.format(reason)
        report.ci_skip = True
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple | None:
    """A skip failed under CI shows as FAILED, not as an ERROR, in its setup phase too."""
    if getattr(report, "ci_skip", False):
        return "failed", "F", "FAILED"
    return None


class _SkippedModule(pytest.Item):
    """Stands in for a module that skipped itself at import, and fails with its skip reason."""

    def __init__(self, *, reason: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self) -> None:
        pytest.fail(CI_SKIP_MESSAGE.format(self.reason), pytrace=False)

    def reportinfo(self) -> tuple:
        return self.path, None, self.name


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """Under CI=true a module skipped at import (`pytest.importorskip`) collects as one failing
    test, rather than a collection error that would stop the whole run."""
    report = yield
    reason = _skip_reason_under_ci(report)
    if reason is not None and isinstance(collector, pytest.Module):
        item = _SkippedModule.from_parent(
            collector.parent, name=collector.name, nodeid=collector.nodeid, reason=reason
        )
        report.outcome, report.longrepr, report.result = "passed", None, [item]
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For pytest-xdist workers (make test TEST_JOBS=2 runs `-n 2 --dist loadgroup`): the
    runtime tests share session fixtures whose exports take minutes to compile, so they form one
    group that one worker runs; the minutes-long end-to-end runs (`slow`) come first, so that no
    worker is left running one of them alone at the end. Without xdist only the order changes."""
    runtime = Path(__file__).parent / "runtime"
    for item in items:
        if runtime in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("runtime"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@dataclass
class SpokenDir:
    """A Kaldi data dir of espeak-ng speech: `wav.scp`, `text` (u1..u3, one 16 kHz wav each),
    and `segments` over one recording `rec` (u1, u2 and u3 one after another) in `seg/`."""

    root: Path
    texts: dict[str, str]
    audio: dict[str, np.ndarray]  # key -> 16 kHz samples
    segments: dict[str, tuple[float, float]]  # key -> (start, end) s in rec


@pytest.fixture(scope="session")
def spoken_dir(tmp_path_factory) -> SpokenDir:
    """Three short utterances spoken by espeak-ng (skips without it)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    from tests.recipes.helpers import SR, speech

    root = tmp_path_factory.mktemp("spoken")
    texts = {"u1": "GOOD MORNING", "u2": "THE CAT SAT", "u3": "HELLO WORLD"}
    audio = {key: speech(text.lower(), "en", root) for key, text in texts.items()}
    for key, wav in audio.items():
        sf.write(root / f"{key}.wav", wav, SR, subtype="PCM_16")
    (root / "wav.scp").write_text("".join(f"{k}\t{root / k}.wav\n" for k in texts))
    (root / "text").write_text("".join(f"{k} {t}\n" for k, t in texts.items()))
    seg = root / "seg"
    seg.mkdir()
    sf.write(seg / "rec.wav", np.concatenate(list(audio.values())), SR, subtype="PCM_16")
    segments, start = {}, 0.0
    for key, wav in audio.items():
        segments[key] = (start, start + len(wav) / SR)
        start += len(wav) / SR
    (seg / "wav.scp").write_text(f"rec {seg / 'rec.wav'}\n")
    (seg / "text").write_text((root / "text").read_text())
    (seg / "segments").write_text(
        "".join(f"{k} rec {s:.4f} {e:.4f}\n" for k, (s, e) in segments.items())
    )
    return SpokenDir(root, texts, audio, segments)
