"""`memspice doctor`: what was found and what each missing piece costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memspice.cli import main
from memspice.sim.info import ENV_VAR


@pytest.mark.ngspice
def test_doctor_reports_the_simulator_and_its_build(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.sim.info import simulator_info

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert {"python", "memspice", "ngspice", "sky130 models", "pyarrow", "distributed", "PySpice", "mkdocs"} <= set(checks)
    info = simulator_info()
    assert report["ready"] and report["simulator"] == info.as_dict()
    assert checks["ngspice"]["found"] and f"ngspice-{info.version}" in checks["ngspice"]["detail"]
    assert "(from PATH)" in checks["ngspice"]["detail"]
    # a build without KLU or the predictor says what that costs
    assert bool(checks["ngspice"]["cost"]) == (not (info.klu and info.predictor))
    for check in checks.values():
        assert check["found"] or check["cost"], f"{check['name']} is missing without saying what it costs"

    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert f"ngspice-{info.version}" in text and "python" in text


def test_doctor_without_a_simulator_says_what_it_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-such-ngspice"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "-- ngspice" in out and "does not exist" in out and f"${ENV_VAR}" in out
    assert "what is missing costs:" in out and "no SPICE" in out
