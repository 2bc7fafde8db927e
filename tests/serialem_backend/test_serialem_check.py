"""``tomopilot serialem check``, the lazy import of SerialEM's module, and the address."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from fake_serialem import FakeSerialEM, small_twin
from typer.testing import CliRunner

import tomopilot.instrument.serialem.microscope as backend
from tomopilot.cli.main import app
from tomopilot.instrument.serialem import (
    Address,
    SerialEMConnectionError,
    SerialEMUnavailableError,
    import_serialem,
    resolve_address,
)

runner = CliRunner()


def test_missing_module_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "serialem", None)  # not importable
    with pytest.raises(SerialEMUnavailableError, match="PYTHONPATH") as info:
        import_serialem()
    assert "PythonModules" in str(info.value) and "EnableExternalPython" in str(info.value)
    result = runner.invoke(app, ["serialem", "check"])
    assert result.exit_code == 1
    assert "PYTHONPATH" in result.output and "Traceback" not in result.output


def test_importing_tomopilot_never_imports_serialem() -> None:
    import tomopilot.acquisition.run
    import tomopilot.instrument.serialem  # noqa: F401

    assert "serialem" not in sys.modules or sys.modules["serialem"] is None


def test_address_from_arguments_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PY_SERIALEM_IP", raising=False)
    monkeypatch.delenv("PY_SERIALEM_PORT", raising=False)
    assert resolve_address() == Address("127.0.0.1", 48888)
    monkeypatch.setenv("PY_SERIALEM_IP", "10.0.0.7")
    monkeypatch.setenv("PY_SERIALEM_PORT", "48890")
    assert resolve_address() == Address("10.0.0.7", 48890)
    assert resolve_address("scope-pc", 5000) == Address("scope-pc", 5000)
    monkeypatch.setenv("PY_SERIALEM_PORT", "eighty")
    with pytest.raises(SerialEMConnectionError, match="PY_SERIALEM_PORT"):
        resolve_address()


class ConnectingFake(FakeSerialEM):
    """The fake, plus the module's ConnectToSEM."""

    connected_to: tuple[int, str] | None = None

    def ConnectToSEM(self, port: int, ip: str) -> None:
        ConnectingFake.connected_to = (port, ip)


def use_fake(monkeypatch: pytest.MonkeyPatch, fake: FakeSerialEM) -> None:
    monkeypatch.setattr(backend, "import_serialem", lambda: fake)


def test_check_reports_the_setup_and_connects_where_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = ConnectingFake(small_twin())
    use_fake(monkeypatch, fake)
    result = runner.invoke(app, ["serialem", "check", "--port", "48891", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert ConnectingFake.connected_to == (48891, "127.0.0.1")
    assert report["ok"] and report["version"] == "4.2.0"
    facts = {(s, n): v for s, n, v in report["facts"]}
    assert facts[("limits", "image shift (ImageShiftLimit)")] == "15 µm"
    assert facts[("Record area", "magnification")].endswith("×")
    assert ("Record area", "SpecimenToISMatrix") in facts
    assert not [n for n, _ in fake.calls if n.startswith("Set") or n in ("R", "V", "G")]


def test_check_refuses_an_old_serialem_and_targets_beyond_the_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeSerialEM(small_twin(), version=30900)
    use_fake(monkeypatch, fake)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "microscope": {"backend": "serialem"},
                "targets": [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 18.0, "SSY": 2.0}],
                "output": {"dir": str(tmp_path / "out")},
            }
        )
    )
    result = runner.invoke(app, ["serialem", "check", str(config)])
    assert result.exit_code == 1
    assert "3.9.0 is too old" in result.output
    assert "18.00 µm of image shift" in result.output
