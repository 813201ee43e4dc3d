"""Images of user services: what is missing or broken is a set-up error that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.containers.user_images import BASE_BUILD_ARG, ensure_user_image
from harness.errors import SetupError
from harness.scenario.model import ServiceTopology

pytestmark = pytest.mark.docker


def test_missing_image_is_not_pulled(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as err:
        ensure_user_image("gh", ServiceTopology(image="qiki-test/absent:never"), tmp_path)
    assert "image 'qiki-test/absent:never' is not on the Docker engine" in str(err.value)
    assert "topology.services.gh.build" in str(err.value)


def test_build_dir_needs_a_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "gh").mkdir()
    with pytest.raises(SetupError, match=r"build: gh needs a Dockerfile in .*/gh"):
        ensure_user_image("gh", ServiceTopology(build="gh"), tmp_path)


def test_failed_build_quotes_its_last_lines(tmp_path: Path) -> None:
    (tmp_path / "gh").mkdir()
    (tmp_path / "gh" / "Dockerfile").write_text(
        f"ARG {BASE_BUILD_ARG}\nFROM ${{{BASE_BUILD_ARG}}}\n"
        'RUN ["python", "-c", "print(\'no frobnicator here\'); raise SystemExit(4)"]\n'
    )
    with pytest.raises(SetupError) as err:
        ensure_user_image("gh", ServiceTopology(build="gh"), tmp_path)
    text = str(err.value)
    assert "service gh: building" in text and "no frobnicator here" in text, text
    assert f"FROM ${{{BASE_BUILD_ARG}}}" in text  # the hint names the offline base
