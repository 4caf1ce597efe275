"""Image I/O (every Pillow mode -> float32 RGB [3,H,W] in [0,1]) and data sets."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semcom.data import (
    SKIMAGE_SAMPLES,
    ImageFolder,
    ImageReadError,
    RepeatedCrops,
    SampleImages,
    cache_images,
    collate_images,
    get_dataset,
    image_size,
    image_sizes,
    list_datasets,
    load_image,
    load_images,
    save_image,
    split_dataset,
    to_uint8,
)
from semcom.paths import MissingResourceError


# ------------------------------------------------------------------ helpers
def write_png16(path: Path, arr: np.ndarray, trns: tuple[int, ...] | None = None) -> Path:
    """Write a 16-bit PNG (gray, gray+alpha, RGB or RGBA) by hand: Pillow cannot."""
    arr = np.asarray(arr, dtype=">u2")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
    if trns is not None:
        data += chunk(b"tRNS", struct.pack(f">{len(trns)}H", *trns))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def rgb8(h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def check_image(x: torch.Tensor, h: int, w: int) -> None:
    assert x.dtype == torch.float32
    assert tuple(x.shape) == (3, h, w)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def as_hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy().astype(np.float64)


# -------------------------------------------------------------- load_image: modes
def test_rgb_png_exact(tmp_path):
    a = rgb8()
    Image.fromarray(a).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    check_image(x, 6, 5)
    np.testing.assert_array_equal(to_uint8(x).permute(1, 2, 0).numpy(), a)
    np.testing.assert_allclose(as_hwc(x), a / 255.0, atol=1e-7)


def test_grayscale_replicated(tmp_path):
    g = rgb8()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    check_image(x, 6, 5)
    for c in range(3):
        np.testing.assert_allclose(x[c].numpy(), g / 255.0, atol=1e-7)


def test_bilevel(tmp_path):
    img = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    img.save(tmp_path / "b.png")
    x = load_image(tmp_path / "b.png")
    check_image(x, 2, 2)
    np.testing.assert_array_equal(x[0].numpy(), [[0, 1], [1, 0]])


def test_palette(tmp_path):
    a = rgb8()
    img = Image.fromarray(a).quantize(colors=16)
    assert img.mode == "P"
    img.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    check_image(x, 6, 5)
    expected = np.asarray(img.convert("RGB")) / 255.0
    np.testing.assert_allclose(as_hwc(x), expected, atol=1e-7)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    img.putdata([0, 1, 2])
    img.info["transparency"] = 1  # colour index 1 (green) is fully transparent
    img.save(tmp_path / "pt.png", transparency=1)
    assert "transparency" in Image.open(tmp_path / "pt.png").info
    x = load_image(tmp_path / "pt.png")
    check_image(x, 1, 3)
    np.testing.assert_allclose(as_hwc(x)[0], [[1, 0, 0], [1, 1, 1], [0, 0, 1]], atol=1e-7)


def test_la_composited_on_white(tmp_path):
    la = np.array([[[0, 255], [0, 0], [100, 128]]], dtype=np.uint8)  # 1x3, (L, A)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    x = load_image(tmp_path / "la.png")
    check_image(x, 1, 3)
    a = 128 / 255
    expected = [0.0, 1.0, 100 / 255 * a + (1 - a)]
    for c in range(3):
        np.testing.assert_allclose(x[c, 0].numpy(), expected, atol=1e-6)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.array(
        [[[10, 20, 30, 255], [10, 20, 30, 0], [200, 100, 0, 51]]], dtype=np.uint8
    )  # opaque, transparent, 20 % alpha
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    x = load_image(tmp_path / "rgba.png")
    check_image(x, 1, 3)
    a = 51 / 255
    expected = [
        [10 / 255, 20 / 255, 30 / 255],
        [1.0, 1.0, 1.0],
        [200 / 255 * a + 1 - a, 100 / 255 * a + 1 - a, 1 - a],
    ]
    np.testing.assert_allclose(as_hwc(x)[0], expected, atol=1e-6)


def test_gray16_full_precision(tmp_path):
    g = np.array([[0, 32768, 65535, 1000, 257]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = load_image(tmp_path / "g16.png")
    check_image(x, 1, 5)
    np.testing.assert_allclose(x[:, 0].numpy(), np.tile(g[0] / 65535.0, (3, 1)), atol=1e-7)
    assert float(x[0, 0, 2]) == 1.0
    assert abs(float(x[0, 0, 1]) - 0.5) < 1e-4


def test_gray16_handwritten_png(tmp_path):
    g = np.array([[0, 32768], [65535, 12345]], dtype=np.uint16)
    x = load_image(write_png16(tmp_path / "g16.png", g))
    check_image(x, 2, 2)
    np.testing.assert_allclose(x[1].numpy(), g / 65535.0, atol=1e-7)


def test_rgb16_full_precision(tmp_path):
    # Pillow cannot write 16-bit RGB PNGs, so the file is written by hand.
    a = np.array(
        [[[0, 32768, 65535], [1, 256, 65534]], [[258, 1000, 40000], [65535, 65535, 65535]]]
    )
    x = load_image(write_png16(tmp_path / "rgb16.png", a))
    check_image(x, 2, 2)
    # full precision: the low byte matters (1 and 256 differ, 65534 != 65535)
    np.testing.assert_array_equal(np.round(as_hwc(x) * 65535).astype(int), a)
    assert float(x[0, 0, 0]) == 0.0 and float(x[2, 0, 0]) == 1.0
    assert abs(float(x[1, 0, 0]) - 0.5) < 1e-4


def test_rgba16_composited(tmp_path):
    a = np.array([[[0, 32768, 65535, 65535], [0, 0, 0, 0], [0, 0, 0, 32768]]])
    x = load_image(write_png16(tmp_path / "rgba16.png", a))
    check_image(x, 1, 3)
    alpha = 32768 / 65535
    np.testing.assert_allclose(
        as_hwc(x)[0], [[0, 32768 / 65535, 1], [1, 1, 1], [1 - alpha] * 3], atol=1e-6
    )


def test_rgb16_with_trns_key_is_white(tmp_path):
    a = np.array([[[1, 2, 3], [4, 5, 6]]])
    x = load_image(write_png16(tmp_path / "t16.png", a, trns=(4, 5, 6)))
    np.testing.assert_allclose(as_hwc(x)[0, 1], [1, 1, 1])
    np.testing.assert_allclose(as_hwc(x)[0, 0] * 65535, [1, 2, 3], atol=1e-3)


def test_la16_does_not_crash(tmp_path):
    a = np.array([[[65535, 0], [0, 65535]]])  # transparent white-ish, opaque black
    x = load_image(write_png16(tmp_path / "la16.png", a))
    check_image(x, 1, 2)
    np.testing.assert_allclose(x[:, 0].numpy(), [[1, 0]] * 3, atol=1e-6)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif", ".webp", ".ppm", ".gif"])
def test_other_formats(tmp_path, ext):
    a = rgb8(8, 9)
    p = tmp_path / f"a{ext}"
    Image.fromarray(a).save(p)
    x = load_image(p)
    check_image(x, 8, 9)
    if ext in (".bmp", ".tif", ".ppm"):  # lossless
        np.testing.assert_array_equal(to_uint8(x).permute(1, 2, 0).numpy(), a)
    else:
        expected = np.asarray(Image.open(p).convert("RGB")) / 255.0
        np.testing.assert_allclose(as_hwc(x), expected, atol=1e-7)


def test_tiff_16bit_gray(tmp_path):
    g = np.array([[0, 65535], [32768, 1]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g.tif")
    x = load_image(tmp_path / "g.tif")
    np.testing.assert_allclose(x[0].numpy(), g / 65535.0, atol=1e-7)


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    img.save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    x = load_image(tmp_path / "cmyk.jpg")
    check_image(x, 8, 8)
    mean = x.mean(dim=(1, 2))
    assert mean[0] > 0.9 and mean[1] < 0.1 and mean[2] < 0.1


def test_exif_orientation_applied(tmp_path):
    a = rgb8(4, 6)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "o.jpg")
    check_image(x, 6, 4)
    # the pixels are the stored ones turned 90 degrees clockwise (JPEG at quality 100: a few
    # levels of loss and chroma subsampling), not merely a transposed shape
    stored = np.asarray(Image.open(tmp_path / "o.jpg").convert("RGB"), dtype=np.float64)
    got = as_hwc(x) * 255
    assert np.abs(got - np.rot90(stored, k=-1)).mean() < 1.0
    assert np.abs(got - np.rot90(stored, k=1)).mean() > 20.0


def test_image_size_is_load_images_shape_from_the_header(tmp_path, monkeypatch):
    Image.fromarray(rgb8(4, 6)).save(tmp_path / "a.png")
    img = Image.fromarray(rgb8(4, 6))
    exif = img.getexif()
    exif[0x0112] = 6  # shown turned: 6 high, 4 wide
    img.save(tmp_path / "b.jpg", exif=exif)
    write_png16(tmp_path / "c.png", np.zeros((3, 5, 3)))
    expected = [tuple(load_image(tmp_path / n).shape[-2:]) for n in ("a.png", "b.jpg", "c.png")]
    assert expected == [(4, 6), (6, 4), (3, 5)]
    assert [image_size(tmp_path / n) for n in ("a.png", "b.jpg", "c.png")] == expected
    # from the headers alone: the data set never decodes a readable file for its sizes
    ds = ImageFolder(tmp_path)

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr("semcom.data.io.load_image", no_decoding)
    monkeypatch.setattr("semcom.data.datasets.load_image", no_decoding)
    assert [ds.image_size(i) for i in range(3)] == expected
    # through the wrappers training uses (a held-out part, repeated crops)
    sub = torch.utils.data.Subset(ds, [2, 0])
    assert image_sizes(sub) == [expected[2], expected[0]]
    assert image_sizes(RepeatedCrops(torch.utils.data.Subset(sub, [1]), 2)) == [expected[0]]
    monkeypatch.undo()
    # an unreadable file fails like load_image, naming it
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        image_size(tmp_path / "bad.png")
    # the bundled photos (no files) and a cached item report their decoded shape
    samples = SampleImages(names=["coins"])
    assert samples.image_size(0) == tuple(samples.image(0).shape[-2:]) == (303, 384)
    ds.cache([1])
    assert ds.image_size(1) == (6, 4)


@pytest.mark.parametrize("orientation", [5, 7])
def test_image_size_of_transposed_orientations(tmp_path: Path, orientation: int) -> None:
    """EXIF orientations 5 (transpose) and 7 (transverse) swap the sides like 6 and 8."""
    img = Image.fromarray(rgb8(4, 6))
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", exif=exif)
    assert tuple(load_image(tmp_path / "o.jpg").shape[-2:]) == (6, 4)
    assert image_size(tmp_path / "o.jpg") == (6, 4)


def test_save_jpeg_defaults_to_quality_95(tmp_path: Path) -> None:
    """``save_image`` writes JPEGs at quality 95 unless told otherwise (Pillow's own default
    is 75): the quantisation tables are those of quality 95."""
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    save_image(x, tmp_path / "a.jpg")
    arr = to_uint8(x).permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(tmp_path / "q95.jpg", quality=95)
    with Image.open(tmp_path / "a.jpg") as a, Image.open(tmp_path / "q95.jpg") as b:
        assert a.quantization == b.quantization
    save_image(x, tmp_path / "b.jpg", quality=50)
    with Image.open(tmp_path / "b.jpg") as c, Image.open(tmp_path / "q95.jpg") as b:
        assert c.quantization != b.quantization


# -------------------------------------------------------------- load_image: errors
def _assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)
    assert "not found" in str(e.value)


def test_empty_file(tmp_path):
    p = tmp_path / "zero.png"
    p.write_bytes(b"")
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)
    assert "empty" in str(e.value)


def test_text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nworld\n")
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)


def test_text_file_with_image_extension(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("not a jpeg")
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file(tmp_path, ext):
    src = tmp_path / f"full{ext}"
    Image.fromarray(rgb8(64, 64)).save(src)
    p = tmp_path / f"cut{ext}"
    p.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)


def test_corrupt_header(tmp_path):
    p = tmp_path / "bad.png"
    Image.fromarray(rgb8()).save(p)
    data = bytearray(p.read_bytes())
    data[20:40] = b"\xff" * 20  # smash IHDR
    p.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    _assert_one_line_naming(e, p)


def test_directory(tmp_path):
    with pytest.raises(ImageReadError) as e:
        load_image(tmp_path)
    _assert_one_line_naming(e, tmp_path)


def test_image_read_error_is_value_error():
    assert issubclass(ImageReadError, ValueError)


# -------------------------------------------------------------- save_image / to_uint8
def test_to_uint8_rounding():
    x = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 127.5 / 255 - 1e-4, 1.0, 2.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 0, 0, 1, 127, 255, 255, 0]
    assert to_uint8(x).dtype == torch.uint8
    k = torch.arange(256, dtype=torch.float32) / 255
    assert to_uint8(k).tolist() == list(range(256))
    assert to_uint8(np.array([0.5])).tolist() == [128]


def test_save_round_trip_exact(tmp_path):
    a = rgb8(7, 11)
    x = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    for ext in (".png", ".bmp", ".tif"):
        p = save_image(x, tmp_path / "sub" / f"r{ext}")
        assert p.exists()
        assert torch.equal(load_image(p), x)
    # batch of one and gray accepted
    save_image(x[None], tmp_path / "b.png")
    assert torch.equal(load_image(tmp_path / "b.png"), x)
    save_image(x[:1], tmp_path / "g.png")
    assert torch.equal(load_image(tmp_path / "g.png"), x[:1].expand(3, -1, -1))


def test_save_atomic_no_temp_left(tmp_path):
    x = torch.rand(3, 4, 4)
    save_image(x, tmp_path / "a.png")
    save_image(x, tmp_path / "a.png")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    save_image(torch.zeros(3, 4, 4), p)
    before = p.read_bytes()

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError):
        save_image(torch.ones(3, 4, 4), p)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.png"]


def test_every_atomic_writer_uses_the_umask_and_leaves_no_temp(tmp_path):
    # results, training checkpoints, latent caches, weights and images all go through
    # semcom.paths.atomic_path: the usual file mode (not mkstemp's 0600) and nothing left over
    from semcom.diffusion.latents import save_latents
    from semcom.metrics.lpips import save_safetensors_atomic
    from semcom.paths import atomic_path, atomic_write_json

    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "r" / "results.json", {"a": 1}, indent=1)
        atomic_write_json(tmp_path / "card.json", {"b": 2})
        save_latents([torch.zeros(2, 3, 3)], tmp_path / "lat.safetensors", {})
        save_safetensors_atomic({"w": torch.ones(2)}, tmp_path / "w.safetensors")
        save_image(torch.rand(3, 4, 4), tmp_path / "x.png")
    finally:
        os.umask(old)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["card.json", "lat.safetensors", "r/results.json", "w.safetensors", "x.png"]
    for f in files:
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o640, f
    # an error inside the block keeps the old file and removes the temporary one
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "card.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "card.json").read_text().startswith("{")
    assert len(list(tmp_path.iterdir())) == 5


def test_atomic_write_files_is_all_or_nothing(tmp_path, monkeypatch):
    """semcom.paths.atomic_write_files (checkpoints, zoo entries): a failure while writing any
    file leaves every destination as it was; on success the renames run in the given order."""
    import semcom.paths as paths

    a, b, c = tmp_path / "model.safetensors", tmp_path / "state.pt", tmp_path / "card.json"
    for p in (a, b, c):
        p.write_bytes(b"old " + p.name.encode())
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):  # the third file's write fails (e.g. disk full)
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(paths.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        paths.atomic_write_files({a: b"new a", b: b"new b", c: b"new c"})
    assert [p.read_bytes() for p in (a, b, c)] == [b"old model.safetensors", b"old state.pt",
                                                    b"old card.json"]  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == ["card.json", "model.safetensors", "state.pt"]
    monkeypatch.setattr(paths.os, "fsync", real_fsync)
    order = []
    real_replace = os.replace
    monkeypatch.setattr(paths.os, "replace", lambda s, d: (order.append(Path(d).name),
                                                           real_replace(s, d)))  # fmt: skip
    paths.atomic_write_files({a: b"new a", b: b"new b", c: b"new c"})
    assert order == ["model.safetensors", "state.pt", "card.json"]
    assert [p.read_bytes() for p in (a, b, c)] == [b"new a", b"new b", b"new c"]
    assert sorted(os.listdir(tmp_path)) == ["card.json", "model.safetensors", "state.pt"]


def test_atomic_write_files_holds_ctrl_c_during_its_renames(tmp_path, monkeypatch):
    """Ctrl-C after the first rename used to remove the other files' finished temporary copies
    (weights new, state old: a run no resume could repair). It is now held until every file is
    renamed, then raised; a crash between renames leaves the rest complete as temporary files."""
    import signal

    import semcom.paths as paths

    files = [tmp_path / n for n in ("model.safetensors", "state.pt", "card.json")]
    for p in files:
        p.write_bytes(b"old")
    real_replace = os.replace
    done = []

    def replace_then_ctrl_c(src, dst):
        real_replace(src, dst)
        done.append(Path(dst).name)
        if len(done) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(paths.os, "replace", replace_then_ctrl_c)
    # Python's own Ctrl-C handler (a job a shell starts in the background ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            paths.atomic_write_files({p: b"new " + p.name.encode() for p in files})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == ["model.safetensors", "state.pt", "card.json"]
    assert [p.read_bytes() for p in files] == [b"new " + p.name.encode() for p in files]
    assert sorted(os.listdir(tmp_path)) == ["card.json", "model.safetensors", "state.pt"]

    def replace_then_crash(src, dst):
        if Path(dst).name != "model.safetensors":
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace_then_crash)
    with pytest.raises(OSError, match="Input/output"):
        paths.atomic_write_files({p: b"newer " + p.name.encode() for p in files})
    assert [p.read_bytes() for p in files] == [b"newer model.safetensors", b"new state.pt",
                                                b"new card.json"]  # fmt: skip
    for name in ("state.pt", "card.json"):  # complete, for finish_torn_checkpoint
        (tmp,) = tmp_path.glob(f".{name}.*.tmp")
        assert tmp.read_bytes() == b"newer " + name.encode()


def test_save_errors(tmp_path):
    with pytest.raises(ValueError, match="single image"):
        save_image(torch.rand(2, 3, 4, 4), tmp_path / "a.png")
    with pytest.raises(ValueError, match="shape"):
        save_image(torch.rand(4, 4), tmp_path / "a.png")
    with pytest.raises(ValueError, match="extension"):
        save_image(torch.rand(3, 4, 4), tmp_path / "a.xyz")


# -------------------------------------------------------------- ImageFolder
@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(rgb8(40, 50, 1)).save(root / "b.png")
    Image.fromarray(rgb8(30, 30, 2)).save(root / "a.jpg")
    Image.fromarray(rgb8(20, 12, 3)).save(root / "sub" / "c.bmp")
    Image.fromarray(rgb8(20, 12, 4)).save(root / ".hidden" / "d.png")
    Image.fromarray(rgb8(20, 12, 4)).save(root / ".e.png")
    (root / "readme.txt").write_text("not an image")
    return root


def test_folder_listing(folder):
    ds = ImageFolder(folder)
    assert len(ds) == 3
    assert ds.names == ["a.jpg", "b.png", "sub/c.bmp"]
    check_image(ds[1], 40, 50)
    check_image(ds[-1], 20, 12)
    with pytest.raises(IndexError):
        ds[3]
    assert "n=3" in repr(ds)


def test_folder_follows_links_but_not_loops(folder, tmp_path):
    """A link back to a folder above (``ln -s .. up``) made the listing descend until the OS
    refused (OSError: too many levels of symbolic links): the folder could not be used."""
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(rgb8(8, 8, 5)).save(other / "f.png")
    (folder / "sub" / "up").symlink_to("..")
    (folder / "sub" / "top").symlink_to(folder)
    (folder / "linked").symlink_to(other)  # not a loop: followed as before
    ds = ImageFolder(folder)
    assert ds.names == ["a.jpg", "b.png", "linked/f.png", "sub/c.bmp"]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolder(tmp_path / "empty")


def test_several_roots(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(rgb8(8, 8)).save(other / "z.png")
    ds = ImageFolder([other, folder])
    assert ds.names == ["other/z.png", "imgs/a.jpg", "imgs/b.png", "imgs/sub/c.bmp"]


def test_random_crops_seeded(folder):
    ds = ImageFolder(folder, crop=16, seed=3)
    a = [ds[i] for i in range(len(ds))]
    for x in a:
        check_image(x, 16, 16)
    again = ImageFolder(folder, crop=16, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, [again[i] for i in range(3)], strict=True))
    ds.set_epoch(1)
    b = [ds[i] for i in range(len(ds))]
    assert not all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    ds.set_epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(a, [ds[i] for i in range(3)], strict=True))
    other_seed = ImageFolder(folder, crop=16, seed=4)
    assert not all(torch.equal(x, other_seed[i]) for i, x in enumerate(a))
    with pytest.raises(ValueError):
        ds.set_epoch(-1)


def _window_of(x: torch.Tensor, full: torch.Tensor) -> bool:
    h, w = x.shape[-2:]
    return any(
        torch.equal(full[:, t : t + h, s : s + w], x)
        or torch.equal(full[:, t : t + h, s : s + w].flip(-1), x)
        for t in range(full.shape[1] - h + 1)
        for s in range(full.shape[2] - w + 1)
    )


def test_repeated_crops(folder):
    ds = ImageFolder(folder, crop=8, flip=True, seed=3)
    # repeats=1 is the data set itself, item for item, in every epoch
    one = RepeatedCrops(ds, 1)
    for epoch in (0, 2):
        one.set_epoch(epoch)
        assert len(one) == 3 and all(torch.equal(one[i], ds[i]) for i in range(3))
    rep = RepeatedCrops(ds, 4)
    rep.set_epoch(0)
    assert len(rep) == 12 and ds.epoch == 0
    items = [rep[i] for i in range(12)]
    assert all(torch.equal(items[i], ds[i]) for i in range(3))  # repeat 0: the plain items
    for k, name in enumerate(ds.names):  # every repeat is a window of its own image ...
        full = load_image(folder / name)
        assert all(_window_of(items[k + 3 * r], full) for r in range(4))
    # ... with its own draw (b.png is 40 x 50: 4 crops of 8 x 8 practically never coincide)
    assert len({items[1 + 3 * r].numpy().tobytes() for r in range(4)}) == 4
    assert torch.equal(rep[-1], items[11])  # negative indices, deterministic
    rep.set_epoch(1)  # forwarded: fresh crops
    assert ds.epoch == 1 and not torch.equal(rep[4], items[4])
    with pytest.raises(IndexError):
        rep[12]
    with pytest.raises(ValueError, match="repeats"):
        RepeatedCrops(ds, 0)
    with pytest.raises(TypeError, match="ImageDataset"):
        RepeatedCrops(torch.utils.data.TensorDataset(torch.zeros(2)), 2)


def test_repeated_crops_through_subsets(folder):
    ds = ImageFolder(folder, crop=8, seed=0)
    sub = torch.utils.data.Subset(torch.utils.data.Subset(ds, [2, 0, 1]), [1, 2])  # a.jpg, b.png
    rep = RepeatedCrops(sub, 2)
    assert len(rep) == 4
    assert torch.equal(rep[0], ds[0]) and torch.equal(rep[1], ds[1])
    assert _window_of(rep[2], load_image(folder / "a.jpg"))
    assert _window_of(rep[3], load_image(folder / "b.png"))


def test_cache_keeps_every_item(folder, monkeypatch):
    plain = ImageFolder(folder, crop=8, flip=True, seed=1)
    cached = ImageFolder(folder, crop=8, flip=True, seed=1)
    assert cached.cache() is cached and cached.n_cached == 3
    reads = []
    monkeypatch.setattr(cached, "_read", lambda i: reads.append(i))  # no file is read again
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        assert all(torch.equal(plain[i], cached[i]) for i in range(3))
    rep_plain, rep_cached = RepeatedCrops(plain, 3), RepeatedCrops(cached, 3)
    assert all(torch.equal(rep_plain[i], rep_cached[i]) for i in range(9))
    assert reads == []
    # whole images: equal, and never the cached tensor itself
    whole = ImageFolder(folder).cache()
    x = whole[1]
    assert torch.equal(x, load_image(folder / "b.png"))
    x.zero_()
    assert torch.equal(whole[1], load_image(folder / "b.png"))
    with pytest.raises(IndexError):
        whole.cache([5])


@pytest.mark.parametrize(
    "kw",
    [
        {},  # the whole image: the item would be the cached tensor itself
        {"crop": (30, 30), "random_crop": False},  # a crop of the whole of a.jpg: a view of it
        {"crop": 8, "flip": True},  # windows, flipped or not
        {"crop": 48},  # padded (b.png is 40 x 50)
    ],
)
def test_cached_items_are_the_same_and_never_share_the_cache(folder, kw):
    """Items of a cached image are cut from the cached tensor itself (no copy of the whole
    image first): they equal the items read from the files, bit for bit, in every case of
    :meth:`ImageDataset.transform`, also through :class:`RepeatedCrops`, and writing into one
    changes neither the cache nor a later item."""
    plain, cached = ImageFolder(folder, seed=3, **kw), ImageFolder(folder, seed=3, **kw).cache()
    for ds_plain, ds_cached in (
        (plain, cached),
        (RepeatedCrops(plain, 2), RepeatedCrops(cached, 2)),
    ):
        for i in range(len(ds_plain)):
            want, got = ds_plain[i], ds_cached[i]
            assert torch.equal(got, want)
            got.fill_(-1.0)
            assert torch.equal(ds_cached[i], want)
    for i in range(3):
        assert torch.equal(cached._cached[i], load_image(folder / plain.names[i]))


def test_cache_images_decodes_only_the_selected_images(folder):
    ds = ImageFolder(folder, crop=8)
    sub = torch.utils.data.Subset(torch.utils.data.Subset(ds, [2, 0, 1]), [1, 2])  # a, b
    assert cache_images(RepeatedCrops(sub, 4)) == 2
    assert sorted(ds._cached) == [0, 1] and ds.n_cached == 2
    ds.cache([1, 2])  # adds the missing one only
    assert ds.n_cached == 3
    other = ImageFolder(folder, crop=8)  # a Subset of repeats: item 4 of 2 x 3 is image 1
    assert cache_images(torch.utils.data.Subset(RepeatedCrops(other, 2), [4])) == 1
    assert sorted(other._cached) == [1]
    with pytest.raises(TypeError, match="ImageDataset"):
        RepeatedCrops(RepeatedCrops(other, 2), 2)
    with pytest.raises(TypeError, match="ImageDataset"):
        cache_images(torch.utils.data.TensorDataset(torch.zeros(2)))


def test_crop_is_a_window_of_the_image(folder):
    ds = ImageFolder(folder, crop=(10, 20), seed=0)
    full = load_image(folder / "b.png")
    x = ds[1]
    check_image(x, 10, 20)
    found = any(
        torch.equal(full[:, t : t + 10, s : s + 20], x)
        for t in range(full.shape[1] - 9)
        for s in range(full.shape[2] - 19)
    )
    assert found


def test_centre_crop(folder):
    ds = ImageFolder(folder, crop=10, random_crop=False)
    full = load_image(folder / "b.png")  # 40 x 50
    assert torch.equal(ds[1], full[:, 15:25, 20:30])


def test_small_image_padded_by_reflection(folder):
    # sub/c.bmp is 20 x 12; crop 24 x 24 pads it (centred) by reflection
    ds = ImageFolder(folder, crop=24, random_crop=False)
    full = load_image(folder / "sub" / "c.bmp")
    x = ds[2]
    check_image(x, 24, 24)
    assert torch.equal(x[:, 2:22, 6:18], full)
    assert torch.equal(x[:, 2:22, 5], full[:, :, 1])  # reflect: mirror without the edge
    ds_const = ImageFolder(folder, crop=24, random_crop=False, pad_mode="constant")
    assert float(ds_const[2][:, 0, 0].abs().sum()) == 0.0


def test_tiny_image_falls_back_to_replicate(tmp_path):
    Image.fromarray(rgb8(2, 3)).save(tmp_path / "t.png")
    ds = ImageFolder(tmp_path, crop=16)
    x = ds[0]
    check_image(x, 16, 16)


def test_centre_pad_and_crop_put_the_odd_pixel_last(tmp_path: Path) -> None:
    """With an odd difference the centre window starts at ``floor((H - h)/2)`` and padding puts
    the odd pixel at the bottom / right."""
    Image.fromarray(rgb8(5, 7)).save(tmp_path / "a.png")
    full = load_image(tmp_path / "a.png")
    crop = ImageFolder(tmp_path, crop=(2, 2), random_crop=False)[0]
    assert torch.equal(crop, full[:, 1:3, 2:4])
    pad = ImageFolder(tmp_path, crop=(8, 10), random_crop=False, pad_mode="constant")[0]
    assert torch.equal(pad[:, 1:6, 1:8], full)
    assert torch.equal(pad, torch.nn.functional.pad(full, (1, 2, 1, 2)))


def test_padding_as_large_as_the_image_replicates(tmp_path: Path) -> None:
    """Reflection needs a padding smaller than the side: a 3x3 image is reflected up to 7x7
    (padding 2) and replicated up to 9x9 (padding 3)."""
    Image.fromarray(rgb8(3, 3)).save(tmp_path / "t.png")
    full = load_image(tmp_path / "t.png")[None]
    x7 = ImageFolder(tmp_path, crop=7, random_crop=False)[0]
    assert torch.equal(x7, torch.nn.functional.pad(full, (2, 2, 2, 2), mode="reflect")[0])
    x9 = ImageFolder(tmp_path, crop=9, random_crop=False)[0]
    assert torch.equal(x9, torch.nn.functional.pad(full, (3, 3, 3, 3), mode="replicate")[0])


def test_item_randomness_is_seeded_by_seed_epoch_index(tmp_path: Path) -> None:
    """Item ``i`` of epoch ``e`` draws from ``default_rng(SeedSequence([seed, e, i]))``: the
    crop's top, then its left, then the flip (probability 1/2); every window occurs."""
    Image.fromarray(rgb8(9, 11)).save(tmp_path / "a.png")
    full = load_image(tmp_path / "a.png")
    ds = ImageFolder(tmp_path, crop=(4, 5), flip=True, seed=7)
    rep = RepeatedCrops(ds, 200)  # one image: repeat r is transformed as item r
    windows, flips = set(), 0
    for epoch in (0, 3):
        rep.set_epoch(epoch)
        for r in range(len(rep)):
            rng = np.random.default_rng(np.random.SeedSequence([7, epoch, r]))
            top, left = int(rng.integers(0, 6)), int(rng.integers(0, 7))
            want = full[:, top : top + 4, left : left + 5]
            flip = bool(rng.random() < 0.5)
            assert torch.equal(rep[r], want.flip(-1) if flip else want)
            windows.add((top, left))
            flips += flip
    assert windows == {(t, s) for t in range(6) for s in range(7)}
    assert abs(flips / 400 - 0.5) < 0.1  # 4 standard deviations


def test_flip_deterministic(folder):
    ds = ImageFolder(folder, crop=None, flip=True, seed=0)
    full = load_image(folder / "b.png")
    flips = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        x = ds[1]
        assert torch.equal(x, full) or torch.equal(x, full.flip(-1))
        flips.append(torch.equal(x, full.flip(-1)))
    assert any(flips) and not all(flips)


def test_collate(folder):
    ds = ImageFolder(folder, crop=8)
    assert collate_images([ds[0], ds[1]]).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="different sizes"):
        collate_images([ImageFolder(folder)[0], ImageFolder(folder)[1]])


def test_dataloader_workers_agree(folder):
    """Random crops depend on (seed, epoch, index) only: two worker processes give the items
    the main process gives."""
    ds = ImageFolder(folder, crop=8, seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False, num_workers=2)
    got = torch.cat(list(loader))
    assert torch.equal(got, torch.stack([ds[i] for i in range(3)]))


def test_bad_arguments(folder):
    with pytest.raises(ValueError):
        ImageFolder(folder, crop=0)
    with pytest.raises(ValueError):
        ImageFolder(folder, pad_mode="wrap")
    with pytest.raises(ValueError):
        ImageFolder(folder, seed=-1)


def test_load_images(folder):
    assert len(load_images(folder)) == 3
    assert len(load_images(folder, limit=2)) == 2
    assert len(load_images(folder / "b.png")) == 1
    assert len(load_images([folder / "b.png", folder / "a.jpg"], limit=1)) == 1
    assert len(load_images(ImageFolder(folder), limit=10)) == 3


# -------------------------------------------------------------- split
def test_split_deterministic_and_disjoint(folder):
    ds = list(range(50))
    tr, va = split_dataset(ds, val_fraction=0.2, seed=1)
    tr2, va2 = split_dataset(ds, val_fraction=0.2, seed=1)
    assert tr.indices == tr2.indices and va.indices == va2.indices
    assert len(va) == 10 and len(tr) == 40
    assert set(tr.indices).isdisjoint(va.indices)
    assert sorted(tr.indices + va.indices) == ds
    assert tr.indices == sorted(tr.indices)
    _, va3 = split_dataset(ds, val_fraction=0.2, seed=2)
    assert va3.indices != va.indices
    _, one = split_dataset(list(range(3)), val_fraction=0.01)
    assert len(one) == 1
    _, nv = split_dataset(ds, n_val=7)
    assert len(nv) == 7
    with pytest.raises(ValueError, match="leaves none to train on"):  # 0.99 of 6 rounds to 6
        split_dataset(list(range(6)), val_fraction=0.99)
    with pytest.raises(ValueError):
        split_dataset(ds, val_fraction=1.5)
    with pytest.raises(ValueError):
        split_dataset(ds, val_fraction=0.1, n_val=3)
    with pytest.raises(ValueError):
        split_dataset(ds, n_val=51)


def test_split_default_holds_out_a_tenth_in_order() -> None:
    """Without a fraction or a count a tenth is held out; both parts keep the original order."""
    tr, va = split_dataset(list(range(50)), seed=3)
    assert len(va) == 5 and len(tr) == 45
    assert va.indices == sorted(va.indices) and tr.indices == sorted(tr.indices)


# -------------------------------------------------------------- named data sets
def test_list_datasets():
    names = list_datasets()
    for n in ("kodak", "cifar10-test", "cifar10-train", "bsds500-train", "bsds500-val", "samples"):
        assert names.get(n)


@pytest.mark.parametrize(
    ("name", "n", "hw"),
    [
        ("kodak", 24, {(512, 768), (768, 512)}),
        ("cifar10-test", 10000, {(32, 32)}),
        ("cifar10-train", 50000, {(32, 32)}),
        ("bsds500-train", 400, {(321, 481), (481, 321)}),
        ("bsds500-val", 100, {(321, 481), (481, 321)}),
    ],
)
def test_named_datasets(data_root, name, n, hw):
    ds = get_dataset(name)
    assert len(ds) == n
    assert ds.name == name
    x = ds[0]
    assert x.dtype == torch.float32 and x.shape[0] == 3
    assert tuple(x.shape[1:]) in hw
    assert len(set(ds.paths)) == n


def test_split_keyword(data_root):
    assert len(get_dataset("cifar10", split="test")) == 10000
    assert len(get_dataset("CIFAR10-Test", crop=8)) == 10000
    ds = get_dataset("bsds500-train", crop=64, seed=1)
    check_image(ds[399], 64, 64)


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"unknown data set 'nope'.*kodak.*nor a folder"):
        get_dataset("nope")


def test_a_folder_of_images_is_a_data_set(tmp_path, monkeypatch):
    """A folder of one's own opens as a data set named by its absolute path (the same folder
    from another working directory is the same data set); a named set wins over a folder of
    its name; caches name either by a file-name-safe tag (a named set's as before)."""
    from semcom.data import dataset_name, file_tag

    photos = tmp_path / "My photos"
    (photos / "sub").mkdir(parents=True)
    for i, rel in enumerate(("a.png", "sub/b.png")):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(photos / rel)
    monkeypatch.chdir(tmp_path)
    ds = get_dataset("My photos", crop=16)
    assert ds.names == ["a.png", "sub/b.png"] and ds[1].shape == (3, 16, 16)
    assert ds.name == dataset_name("My photos") == str(photos.resolve())
    monkeypatch.chdir(photos)
    assert dataset_name(".") == dataset_name("../My photos") == ds.name
    assert dataset_name("KODAK") == "kodak" and file_tag("kodak") == "kodak"
    assert file_tag("bsds500-train") == "bsds500-train"
    assert "/" not in file_tag(ds.name) and file_tag(ds.name).endswith("My_photos")
    (photos / "kodak").mkdir()  # a folder named like a named data set: the named one
    assert dataset_name("kodak") == "kodak"
    assert dataset_name("~nosuchuser-semcom/x") == "~nosuchuser-semcom/x"  # no traceback
    with pytest.raises(ValueError, match="nor a folder"):
        get_dataset("~nosuchuser-semcom/x")
    with pytest.raises(ValueError, match="nor a folder"):
        get_dataset(str(photos), split="test")  # no splits of a folder


def test_a_folder_data_set_given_as_a_path(tmp_path):
    """``get_dataset`` takes a folder as a :class:`~pathlib.Path` as it takes its text (a
    Path raised ``AttributeError: 'PosixPath' object has no attribute 'lower'``)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(rgb8(20, 24, 1)).save(photos / "a.png")
    ds = get_dataset(photos, crop=16)
    assert ds.names == ["a.png"] and ds.name == get_dataset(str(photos)).name
    assert torch.equal(ds[0], get_dataset(str(photos), crop=16)[0])


def test_what_names_a_folder_data_set_and_its_cache_tag(tmp_path, monkeypatch):
    """``~`` is the home folder; a file or an empty name is no folder (an empty name is not
    the working directory); a long path's cache tag keeps its end (the folder's own name),
    and a name of separators only still gives a tag."""
    from semcom.data import dataset_name, file_tag

    photos = tmp_path / "home" / "photos"
    photos.mkdir(parents=True)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(photos / "a.png")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(photos)
    assert dataset_name("~/photos") == str(photos.resolve())
    assert get_dataset("~/photos").names == ["a.png"]
    assert dataset_name("") == ""
    assert dataset_name("a.png") == "a.png"
    with pytest.raises(ValueError, match="nor a folder"):
        get_dataset("a.png")
    tag = file_tag("/" + "x" * 100 + "/My photos")
    assert len(tag) == 80 and tag.endswith("x_My_photos")
    assert file_tag("///") == "_"


def test_missing_data_root_names_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("SEMCOM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(MissingResourceError, match="SEMCOM_DATA"):
        get_dataset("kodak")
    monkeypatch.setenv("SEMCOM_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(MissingResourceError, match="SEMCOM_DATA"):
        get_dataset("kodak")


def test_resources_resolve_env_then_cache(monkeypatch, tmp_path):
    """``$SEMCOM_WEIGHTS`` / ``$SEMCOM_DATA`` first, then the user cache; a miss names every
    path tried (and, for weights without a download, the variable)."""
    from semcom.paths import data_path, weights_path

    env, cache = tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("SEMCOM_WEIGHTS", str(env))
    monkeypatch.setenv("SEMCOM_DATA", str(env))
    for kind in ("weights", "data"):
        (cache / "semcom" / kind).mkdir(parents=True)
        (cache / "semcom" / kind / "a.bin").write_bytes(b"cache")
    assert weights_path("a.bin", download=False) == cache / "semcom" / "weights" / "a.bin"
    assert data_path("a.bin") == cache / "semcom" / "data" / "a.bin"
    env.mkdir()
    (env / "a.bin").write_bytes(b"env")
    assert weights_path("a.bin", download=False) == env / "a.bin"
    assert data_path("a.bin") == env / "a.bin"
    with pytest.raises(MissingResourceError, match=r"SEMCOM_WEIGHTS.*tried: .*env/b\.bin, .*xdg"):
        weights_path("b.bin", download=False)
    with pytest.raises(MissingResourceError, match=r"SEMCOM_DATA.*tried: .*env/b\.bin, .*xdg"):
        data_path("b.bin")


def test_samples_without_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("SEMCOM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ds = get_dataset("samples", crop=32, random_crop=False)
    assert isinstance(ds, SampleImages)
    assert len(ds) == len(SKIMAGE_SAMPLES) == 6
    assert ds.names == list(SKIMAGE_SAMPLES)
    for i in range(len(ds)):
        check_image(ds[i], 32, 32)
    full = SampleImages()[SKIMAGE_SAMPLES.index("camera")]  # grayscale -> 3 equal channels
    assert torch.equal(full[0], full[1]) and torch.equal(full[1], full[2])


def test_to_uint8_keeps_8bit_and_refuses_0_255_floats(tmp_path):
    """An 8-bit tensor came back white (its values clamped to 1, then times 255), and a 0..255
    float image was saved white without a word."""
    from semcom.data.io import save_image, to_uint8

    u = to_uint8(torch.tensor([0.0, 0.2, 1.0]))
    assert u.tolist() == [0, 51, 255] and torch.equal(to_uint8(u), u)
    with pytest.raises(ValueError, match="divide by 255"):
        to_uint8(torch.tensor([0.0, 128.0]))
    with pytest.raises(ValueError, match="divide by 255"):
        save_image(torch.full((3, 4, 4), 200.0), tmp_path / "a.png")
    with pytest.raises(ValueError, match="float images in"):
        to_uint8(torch.tensor([0, 1], dtype=torch.int64))
    assert to_uint8(torch.tensor([1.04, -0.02])).tolist() == [255, 0]  # an overshoot: clamped
    # a [-1, 1] image was saved with its lower half of values black, without a word
    x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match=r"\[-1, 1\] images: map them with \(x \+ 1\) / 2"):
        save_image(x, tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()
    assert to_uint8(torch.tensor([-0.5, 0.5])).tolist() == [0, 128]  # the edge: clamped


def test_crop_must_be_positive_integers():
    from semcom.data import get_dataset

    assert get_dataset("samples", crop=(16, 24))[0].shape == (3, 16, 24)
    for bad in (32.0, 0, (3, 4, 5), True):  # 32.0 failed with "'float' is not iterable"
        with pytest.raises(ValueError, match="crop must be a positive integer N or a pair"):
            get_dataset("samples", crop=bad)
