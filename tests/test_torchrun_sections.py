"""The per-image sections under torchrun (2 gloo ranks on the CPU): each rank computes a share of the images
(reportgen/features/split.py) and report.json's results equal a one-process build's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reportgen.demo import images_dir

ROOT = Path(__file__).resolve().parents[1]

GLOO = torch.distributed.is_available() and torch.distributed.is_gloo_available()
pytestmark = pytest.mark.skipif(not GLOO, reason="torch.distributed with gloo is not available")


def _args(out: Path, sections: str, images: int) -> list[str]:
    # 4 images per section: shares of 2 (a share never holds a single image, see split_rows)
    sets = [f"{s}.max_images=4" for s in ("saliency", "smoothgrad", "gradcam", "integrated_gradients", "sanity",
                                           "faithfulness") if s in sections.split(",")]
    return ["-m", "reportgen", "build", "--model", "demo", "--images", str(images_dir()), "--out", str(out),
            "--preset", "minimal", "--only", sections, "--max-images", str(images), "--batch-size", "8",
            "--threads", "1", *[a for s in sets for a in ("--set", s)]]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "TORCHELASTIC_RUN_ID")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MPLBACKEND="Agg", XDG_CACHE_HOME=str(tmp))
    return env


def _results(out: Path) -> dict:
    data = json.loads((out / "report.json").read_text())
    assert not [s["id"] for s in data["sections"] if s["error"]]
    res = {s["id"]: s["results"] for s in data["sections"]}
    if "faithfulness" in res:  # whether the frozen copy is used, and its speed-up, are timings (device.py)
        res["faithfulness"].pop("perturbation_forward")
    return res


def _one_and_two(tmp_path: Path, sections: str, images: int) -> tuple[dict, dict, str]:
    one = tmp_path / "one"
    p = subprocess.run([sys.executable, *_args(one, sections, images)], env=_env(tmp_path / "c1"),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *_args(two, sections, images)]  # --standalone: a free local port
    q = subprocess.run(cmd, env=_env(tmp_path / "c2"), capture_output=True, text=True, timeout=900)
    assert q.returncode == 0, q.stderr[-3000:]
    return _results(one), _results(two), q.stderr


def _assert_shared(log: str, sections: str) -> None:
    assert re.search(r"Distributed: (.*) split their images across 2 ranks", log), log[-2000:]
    m = re.search(r"Distributed: (\d+) per-image calls in (.*): all 2 ranks took part in (\d+) \(rank 0 alone in the "
                  r"rest\), (\d+) divided their work across ranks; CPU s in the shares per rank: [\d.]+, [\d.]+",
                  log)
    assert m, log[-2000:]
    calls, names, full, divided = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    assert full == calls and divided > 0, m.group(0)  # rank 1 followed every call, and took shares
    assert set(names.split(", ")) == set(sections.split(","))


def test_two_ranks_share_attribution_and_faithfulness_with_one_process_results(tmp_path):
    """Fast variant: saliency, Integrated Gradients and faithfulness (its maps and perturbation passes)."""
    sections = "saliency,integrated_gradients,faithfulness"
    one, two, log = _one_and_two(tmp_path, sections, 12)
    _assert_shared(log, sections)
    assert two == one
    assert len(two["faithfulness"]["images"]) == 4 and two["faithfulness"]["maps_reused"]["saliency"] == 4


@pytest.mark.slow
def test_two_ranks_share_every_per_image_section(tmp_path):
    sections = "saliency,smoothgrad,gradcam,integrated_gradients,occlusion,sanity,faithfulness,mistakes"
    one, two, log = _one_and_two(tmp_path, sections, 40)
    _assert_shared(log, sections)
    assert two == one
