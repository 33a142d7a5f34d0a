"""The coverage-guided fuzzing ``make harden`` runs (tools/harden/coverage_fuzz.py),
briefly: both targets start from the committed seeds, execute, gain coverage
in this project's modules, and find no crash."""
import pytest

from tools.harden import coverage_fuzz


@pytest.mark.parametrize("target", coverage_fuzz.TARGETS)
def test_a_short_run_executes_covers_and_does_not_crash(target):
    result = coverage_fuzz.run(target, seconds=5)
    assert result["crashes"] == 0, result
    assert result["executions"] > 100, result
    assert result["edges"] > 100 and result["features"] > result["edges"], result
