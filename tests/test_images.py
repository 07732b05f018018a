"""Image-set robustness: every odd format converts correctly, broken files are skipped and listed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reportgen.errors import ImageSetError
from reportgen.imageset import decode_image, discover_images
from reportgen.preprocess import Preprocessing

PRE = Preprocessing(resize=None, input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_modes_convert_to_rgb_with_the_right_colours():
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    # greyscale
    g = decode_image(_png(Image.new("L", (8, 8), 77)))
    assert g.mode == "RGB" and g.getpixel((0, 0)) == (77, 77, 77)
    # palette
    p = decode_image(_png(red.convert("P")))
    assert p.getpixel((3, 3)) == (255, 0, 0)
    # CMYK jpeg: pure cyan -> roughly (0, 255, 255)
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    c = decode_image(_png(cmyk, "JPEG", quality=95))
    r, gg, b = c.getpixel((4, 4))
    assert r < 40 and gg > 200 and b > 200
    # RGBA: fully transparent pixels composite on white, opaque keep their colour
    a = np.zeros((8, 8, 4), np.uint8)
    a[:4] = (0, 0, 255, 255)
    rgba = decode_image(_png(Image.fromarray(a, "RGBA")))
    assert rgba.getpixel((0, 0)) == (0, 0, 255) and rgba.getpixel((0, 7)) == (255, 255, 255)
    # 16-bit greyscale: full range maps to full 8-bit range
    a16 = np.zeros((8, 8), np.uint16)
    a16[:, 4:] = 65535
    i16 = decode_image(_png(Image.fromarray(a16)))
    assert i16.getpixel((0, 0)) == (0, 0, 0) and i16.getpixel((7, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    a = np.zeros((10, 20, 3), np.uint8)  # wide image, left half white
    a[:, :10] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = decode_image(_png(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (10, 20)  # now tall
    arr = np.asarray(out)
    assert arr[:8].mean() > 200 and arr[-8:].mean() < 50  # white half ends up on top


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
    ],
)
def test_broken_bytes_raise_clear_errors(payload, reason):
    with pytest.raises(ValueError, match=reason):
        decode_image(payload)


def test_truncated_file_is_an_error():
    data = _png(Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)), "JPEG")
    with pytest.raises(ValueError, match="truncated|broken|image"):
        decode_image(data[: len(data) // 2])


def test_huge_image_is_refused(monkeypatch):
    import reportgen.imageset as im

    monkeypatch.setattr(im, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match="too large"):
        decode_image(_png(Image.new("RGB", (100, 100))))


def test_bad_files_are_skipped_and_listed(tmp_path: Path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(d / "good.png")
    Image.new("L", (40, 30), 128).save(d / "grey.png")
    (d / "empty.jpg").write_bytes(b"")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good_jpeg = _png(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    (d / "truncated.jpg").write_bytes(good_jpeg[:200])
    (d / "notes.txt").write_text("ignored: not an image extension")
    s = discover_images(d, PRE, ["a", "b"])
    assert sorted(r.rel for r in s.records) == ["good.png", "grey.png"]
    skipped = {x.path: x.reason for x in s.skipped}
    assert set(skipped) == {"empty.jpg", "corrupt.png", "truncated.jpg"}
    assert "empty" in skipped["empty.jpg"]
    assert s.array(0).shape == (32, 32, 3) and s.array(0).dtype == np.uint8


def test_empty_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ImageSetError, match="empty"):
        discover_images(tmp_path, PRE, [])
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ImageSetError, match="could be read"):
        discover_images(tmp_path, PRE, [])
    with pytest.raises(ImageSetError, match="does not exist"):
        discover_images(tmp_path / "nope", PRE, [])


def test_labels_from_class_folders_match_class_names(tmp_path: Path):
    for folder in ["0_t-shirt_top", "1_trouser", "9_ankle_boot"]:
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.png")
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    s = discover_images(tmp_path, PRE, names)
    assert s.label_source == "sub-folder names"
    assert sorted(s.labels.tolist()) == [0, 1, 9]


def test_labels_from_file_names(tmp_path: Path):
    for stem in ["n01440764_tench", "n01443537_goldfish", "n99999999_goldfish"]:
        Image.new("RGB", (8, 8)).save(tmp_path / f"{stem}.png")
    s = discover_images(tmp_path, PRE, ["background", "tench, Tinca tinca", "goldfish, Carassius auratus"])
    assert s.label_source == "file names"
    assert sorted(s.labels.tolist()) == [1, 2, 2]


IMAGENET_LIKE = ["background", "tench, Tinca tinca", "spiny lobster, crawfish, crayfish", "crayfish, crawfish, crawdad",
                 "crane", "Cardigan, Cardigan Welsh corgi", "bathtub, tub", "cardigan", "crane", "tub, vat"]  # id order


def test_a_name_two_classes_share_is_decided_by_case_level_or_wordnet_id_never_guessed():
    """ImageNet's collisions: "Cardigan" the corgi vs "cardigan" the sweater (case decides), "crayfish" and "tub"
    first synonyms of one class and later ones of another (the first synonym wins), "crane" twice (the file's
    WordNet id decides, the classes being in id order)."""
    from reportgen.labels import match_file_labels, match_labels

    stems = ["n01440764_tench", "n02012849_crane", "n01985128_crayfish", "n02113186_Cardigan", "n02963159_cardigan",
             "n03126707_crane", "n04493381_tub"]
    assert match_file_labels(stems, IMAGENET_LIKE) == [1, 4, 3, 5, 7, 8, 9]  # tub: "tub, vat" names it first
    # without ids, or with ids out of class order, a shared name stays unlabelled
    assert match_file_labels(["crane", "tench"], IMAGENET_LIKE) == [None, 1]
    shuffled = ["n09999999_tench", "n01985128_crayfish", "n02012849_crane"]
    assert match_file_labels(shuffled, IMAGENET_LIKE) == [1, 3, None]
    mapping, n = match_labels(["crane", "Cardigan", "cardigan", "crayfish", "0_tench"], IMAGENET_LIKE)
    assert mapping == {"Cardigan": 5, "cardigan": 7, "crayfish": 3, "0_tench": 1} and n == 4


def test_the_shared_imagenet_files_are_labelled_in_wordnet_order(shared_dir):
    """All 500 dev images get a class, in WordNet-id order (as ImageNet's classes are): the old matching gave 3
    of them a wrong one (the corgi as the sweater, crayfish as spiny lobster, tub as bathtub)."""
    from reportgen.labels import load_labels, match_file_labels

    names = load_labels(shared_dir / "models" / "mobilenet_v2_imagenet" / "labels.txt")
    stems = sorted(p.stem for p in (shared_dir / "images" / "imagenet_dev").iterdir())
    got = match_file_labels(stems, names)
    assert None not in got and all(a < b for a, b in zip(got, got[1:]))
    assert names[got[stems.index("n02113186_Cardigan")]].startswith("Cardigan, Cardigan Welsh corgi")


def test_max_images_is_a_seeded_sample(tmp_path: Path):
    for k in range(10):
        Image.new("RGB", (8, 8), (k, k, k)).save(tmp_path / f"{k}.png")
    a = discover_images(tmp_path, PRE, [], max_images=4, seed=1)
    b = discover_images(tmp_path, PRE, [], max_images=4, seed=1)
    assert len(a) == 4 and [r.rel for r in a.records] == [r.rel for r in b.records]
    assert a.content_hash() == b.content_hash()
