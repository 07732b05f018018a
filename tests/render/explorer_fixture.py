"""A synthetic report with an explorer (no model, no torch): ``n`` images in 10 classes placed in 10 clusters,
coloured thumbnails, an attribution-style grid (an input, then its map), a neighbours grid and a unit set.
Shared by tests/render/test_explorer.py and benchmarks/bench_explorer.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from reportgen.render import render_report
from reportgen.report import (
    Explorer,
    Grid,
    GridItem,
    ImageData,
    Report,
    Section,
    Unit,
    UnitSet,
)

CLASSES = [f"class {c}" for c in "ABCDEFGHIJ"]


def _sheet(n: int, side: int, sheet: int, colours: np.ndarray) -> list[ImageData]:
    out = []
    per = sheet * sheet
    for s in range(0, n, per):
        m = min(per, n - s)
        rows = -(-m // sheet)
        a = np.zeros((rows * side, sheet * side, 3), np.uint8)
        for j in range(m):
            r, c = divmod(j, sheet)
            a[r * side:(r + 1) * side, c * side:(c + 1) * side] = colours[s + j]
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=80)
        out.append(ImageData(data=buf.getvalue(), mime="image/jpeg"))
    return out


def synthetic_report(n: int, seed: int = 0) -> Report:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    centres = rng.normal(0, 10, (10, 2))
    xy = (centres[labels] + rng.normal(0, 1, (n, 2))).astype(np.float32)
    pred = np.where(rng.random(n) < 0.9, labels, (labels + 1) % 10)
    topk = np.stack([(pred + k) % 10 for k in range(5)], 1).astype(np.int32)
    p = np.sort(rng.dirichlet(np.ones(5), n), 1)[:, ::-1].astype(np.float32)
    ids = [f"{i:012x}" for i in range(n)]
    names = [f"{CLASSES[labels[i]]}/img_{i:06d}.jpg" for i in range(n)]
    colours = (np.array([[230, 60, 60], [60, 160, 60], [60, 90, 220], [220, 180, 40], [150, 60, 200],
                         [40, 190, 190], [240, 130, 30], [120, 120, 120], [200, 80, 150], [90, 60, 30]],
                        np.uint8)[labels])
    side, sheet = (64 if n <= 5000 else 32), 32
    nn = np.stack([(np.arange(n) + k) % n for k in range(1, 7)], 1).astype(np.int32)
    ex = Explorer(ids=ids, names=names, labels=labels, topk=topk, topk_p=p, class_names=CLASSES, xy=xy,
                  sprites=_sheet(n, side, sheet, colours), thumb=side, sheet=sheet, feature_nn=nn, pixel_nn=nn[:, ::-1],
                  method="synthetic", caption=f"{n} synthetic points.",
                  mosaic=ImageData(np.full((240, 240, 3), 180, np.uint8)), mosaic_grid=10,
                  mosaic_cells=np.array([[i, i // 10, i % 10] for i in range(min(n, 100))]))
    emb = Section(id="embedding", title="Feature embedding", summary="Synthetic.", blocks=[ex])
    grid = Grid([GridItem(ImageData(np.full((48, 48, 3), 200, np.uint8), image_id=ids[0], whole=True), label="input"),
                 GridItem(ImageData(np.tile(np.arange(48, dtype=np.uint8)[None, :, None] * 5, (48, 1, 3))),
                          label="map of it")], columns=2)
    att = Section(id="saliency", title="Saliency maps", summary="Synthetic.", blocks=[grid],
                  results={"per_image": [{"image": names[0], "deletion_auc": 0.25}]})
    units = UnitSet(layer="features.3", units=[
        Unit(channel=c, mean=0.1 * c, std=1.0, peak=3.0 + c, top_ids=ids[c:c + 3], top_values=[3.0, 2.0, 1.0],
             top_classes=[CLASSES[labels[i]] for i in range(c, c + 3)],
             patches=[ImageData(np.full((24, 24, 3), 40 * (c + 1), np.uint8), pixelated=True, image_id=ids[i])
                      for i in range(c, c + 3)]) for c in range(4)])
    pat = Section(id="patches", title="Maximally activating patches", summary="Synthetic.", blocks=[units])
    return Report(title="Explorer test report", sections=[emb, att, pat])


def synthetic_report_dir(tmp: Path, n: int, theme: str = "light", single_file: bool = False) -> Path:
    out = Path(tmp) / (f"rep-{n}-{theme}" + ("-single" if single_file else ""))
    render_report(synthetic_report(n), out, theme=theme, single_file=single_file)
    return out
