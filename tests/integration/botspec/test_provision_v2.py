"""A spec that is not QIKI's, generated from its file and provisioned on a real nats-server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nats.js import api
from nats.js.client import JetStreamContext

from services.common.botspec import load_runtime_config, provision

_CLIMATE_ALL = """\
  - durable: climate-all
    stream: ACME_CLIMATE
    filter_subjects: [acme.climate.v1.alarms, acme.climate.v1.readings.raw]
"""
#: The greenhouse platform's spec (shared with the unit tests of the format) plus a consumer
#: with two filters, one of them on a second subject of the Reading channel.
ACME = (
    (Path(__file__).resolve().parents[2] / "data" / "acme-v2.yaml").read_text()
    .replace("    subjects: [acme.climate.v1.readings]\n",
             "    subjects: [acme.climate.v1.readings, acme.climate.v1.readings.raw]\n")
    .replace("channels:\n", _CLIMATE_ALL + "channels:\n")
)


@pytest.fixture
def acme_spec(tmp_path: Path) -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(ACME)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reading.schema.json").write_text('{"type": "object"}')
    return path


async def test_provision_creates_exactly_the_spec_layout(
        js: JetStreamContext, acme_spec: Path) -> None:
    config = load_runtime_config(acme_spec)
    first = await provision(js, config)
    assert first.created_streams == ["ACME_CLIMATE", "ACME_DLQ"]
    assert first.created_consumers == ["climate-reader", "climate-all"]
    # Exactly the spec's streams: nothing of QIKI's.
    names = [s async for s in _stream_names(js)]
    assert sorted(names) == ["ACME_CLIMATE", "ACME_DLQ"]

    info = (await js.stream_info("ACME_CLIMATE")).config
    assert info.subjects == ["acme.climate.v1.>"]
    assert info.storage == api.StorageType.MEMORY
    assert info.retention == api.RetentionPolicy.WORK_QUEUE
    assert info.max_msg_size == 65536
    assert info.duplicate_window == pytest.approx(30.0)
    c1 = (await js.consumer_info("ACME_CLIMATE", "climate-reader")).config
    assert c1.filter_subject == "acme.climate.v1.readings"
    assert (c1.max_deliver, c1.max_ack_pending) == (3, 100)
    assert c1.ack_wait == pytest.approx(7.0)
    c2 = (await js.consumer_info("ACME_CLIMATE", "climate-all")).config
    assert sorted(c2.filter_subjects or []) == ["acme.climate.v1.alarms",
                                                "acme.climate.v1.readings.raw"]

    second = await provision(js, config)
    assert not second.changed
    assert second.unchanged_consumers == ["climate-reader", "climate-all"]

    # A message on a channel subject is stored by the stream the spec says.
    ack = await js.publish("acme.climate.v1.readings", b"{}")
    assert ack.stream == "ACME_CLIMATE"


async def _stream_names(js: JetStreamContext):  # type: ignore[no-untyped-def]
    for info in await js.streams_info():
        yield info.config.name


def test_cli_generate_prints_the_user_layout(acme_spec: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "botspec", "generate", str(acme_spec)],
        capture_output=True, text=True, check=True,
    ).stdout
    data = yaml.safe_load(out)
    assert [s["name"] for s in data["streams"]] == ["ACME_CLIMATE", "ACME_DLQ"]
    assert data["channels"]["Reading"] == ["acme.climate.v1.readings",
                                           "acme.climate.v1.readings.raw"]
    assert data["dead_letter"] == "acme.dlq.registrar"
    # No QIKI stream or subject leaks in (the reference services keep their own sources).
    assert "qiki." not in out and "QIKI_" not in out


def test_cli_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(ACME.replace("subjects: [acme.climate.v1.alarms]", "subjects: [acme.alarms]")
                   .replace("code: 201", "code: 2010"))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "botspec", "validate", str(bad)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert f"{bad}:" in proc.stderr
    assert "channels[1].subjects[0]" in proc.stderr and "captured by no stream" in proc.stderr
    assert "codes.rules[0].code" in proc.stderr and "outside 100..999" in proc.stderr
