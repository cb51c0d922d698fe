"""Shared fixtures, and CI's rule that a skipped test fails."""

from __future__ import annotations

import os

import pytest
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
