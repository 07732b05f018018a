"""A report of every block kind with hostile strings in every field (no torch): the renderer tests' sample
(test_render.py, test_accessibility.py)."""

from __future__ import annotations

import io

import numpy as np

from reportgen.report import (
    OVERVIEW, Figure, Grid, GridItem, Group, ImageData, ImagesInfo, KeyValues, Note, Reference, Report, Row,
    RunInfo, Section, SkippedImage, Table,
)

XSS = "<img src=x onerror=alert(1)>"
REF = Reference("Matthew D. Zeiler, Rob Fergus", "Visualizing and Understanding Convolutional Networks", "ECCV", 2014,
                "https://arxiv.org/abs/1311.2901")
BAD_REF = Reference("Evil Author", "A paper with a javascript link", "Nowhere", 2020, "javascript:alert(1)")



def _matplotlib_png() -> ImageData:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1, 2], [0, 1, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return ImageData(data=buf.getvalue(), mime="image/png")


def make_report() -> Report:
    rng = np.random.default_rng(0)
    filt = [rng.integers(0, 256, (3, 3, 3), dtype=np.uint8) for _ in range(6)]
    same = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20"/></svg>'
    card = Section(id="card", title="Model card", summary="Headline numbers. Read them first.", placement=OVERVIEW)
    card.add(KeyValues([("Top-1", "91 %"), (XSS, XSS), ("conf", 0.51234)], title="Accuracy"))
    main = Section(
        id="filters", title="Filters " + XSS, summary="First sentence. Second sentence with " + XSS,
        references=[REF, BAD_REF], wall_time_s=1.25, params={"layer": "features.0", "xss": XSS, "list": [1, 2]},
    )
    main.add(
        Figure(_matplotlib_png(), caption="A plot " + XSS, alt=XSS, title="Plot"),
        Figure(ImageData(same.copy(), pixelated=True), caption="tiny"),
        Figure(ImageData(same.copy(), display_width=200), caption="same pixels again (written once)"),
        Figure(ImageData(rgba), caption="rgba"),
        Figure(ImageData(data=svg, mime="image/svg+xml"), caption="svg"),
        Grid([GridItem(ImageData(f, pixelated=True), label=f"{k} {XSS}", sublabel="s", tone="bad" if k == 1 else "ok")
              for k, f in enumerate(filt)], columns=3, title="Grid", caption="grid caption"),
        Grid([GridItem(ImageData(f)) for f in filt[:2]]),  # no cell_width / columns
        Table(["class", "n", "score"], [[XSS, 3, 0.5], ["b", 10, float("nan")], ["c", np.int64(7), np.float32(1e-5)]],
              title="Tab", numeric=[1], highlight={0: "bad", 2: "<script>"}),
        Note("info " + XSS), Note("careful\n\nsecond paragraph", kind="warning"), Note("broken", kind="error"),
        Row([Figure(ImageData(filt[0], pixelated=True)), Note("side")], caption="row caption"),
        Group("Group " + XSS, [Group("Nested", [Note("deep")], description="d")], description="desc " + XSS),
    )
    failed = Section(id="bad/../../sect!on", title="Broken technique", summary="Fails.",
                     error="RuntimeError: boom " + XSS, traceback="Traceback (most recent call last):\n  x\n" + XSS)
    cached = Section(id="cached", title="Cached one", cached=True, wall_time_s=75.0, summary="From the cache.")
    return Report(
        title="Report " + XSS,
        sections=[card, main, failed, cached],
        skipped_images=[SkippedImage(f"folder/{XSS}.jpg", "cannot identify image file " + XSS)],
        meta=RunInfo(
            model={"spec": "tiny:" + XSS, "kind": "module", "weights": None, "notes": [XSS]},
            model_hash="ab" * 32, num_classes=4, preprocessing_text="centre-crop 32x32",
            images=ImagesInfo(folder="imgs/" + XSS, count=12, skipped=1, labels_from="sub-folder names"),
            config={"preset": "minimal", "general": {"seed": 0, "layer": XSS, "batch_size": 4}},
            device="cpu (2 cores)", versions={"reportgen": "0.1.0", "python": "3.11"},
            generated="2025-01-01 00:00:00 UTC", total_time_s=3.5, command="reportgen build " + XSS,
        ),
    )
