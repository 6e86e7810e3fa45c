"""The phantom and the image_folder dataset (PNG 8/16-bit, class folders, CSV, DICOM)."""

import csv

import numpy as np
import pytest
import torch
from ganforge_plugins.image_folder import image_folder, read_image
from ganforge_plugins.phantom import FINDINGS, phantom, render_phantoms
from PIL import Image

from ganforge.errors import DataError
from ganforge.export import write_dataset


def test_phantom_is_deterministic_and_index_stable():
    a, la = render_phantoms(12, 32, seed=5)
    b, lb = render_phantoms(12, 32, seed=5)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _ = render_phantoms(12, 32, seed=6)
    assert not torch.equal(a, c)
    tail, tail_labels = render_phantoms(4, 32, seed=5, start=8)  # image i depends on (seed, i) only
    assert torch.equal(tail, a[8:]) and torch.equal(tail_labels, la[8:])
    assert a.dtype == torch.uint8 and a.shape == (12, 1, 32, 32)


def test_phantom_resolutions_and_channels():
    for resolution in (8, 64, 256):
        images, labels = render_phantoms(2, resolution)
        assert images.shape == (2, 1, resolution, resolution)
    rgb = phantom(size=3, seed=0, prevalence=0.5, resolution=16, image_channels=3)
    assert rgb.images.shape == (3, 3, 16, 16)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    assert "PHANTOM" in rgb.description and rgb.label_names == FINDINGS
    with pytest.raises(ValueError, match="power of two"):
        render_phantoms(1, 48)


def test_phantom_findings_are_independent_multi_labels():
    _, labels = render_phantoms(2000, 8, seed=1, prevalence=0.25)
    rates = labels.mean(0)
    assert torch.all((rates > 0.2) & (rates < 0.3))
    both = (labels[:, 0] * labels[:, 1]).mean()
    assert abs(both - rates[0] * rates[1]) < 0.02  # independence
    assert (labels.sum(1) >= 2).any() and (labels.sum(1) == 0).any()


def _heart_row_brightness(images, labels, column_slice):
    rows = slice(int(0.62 * 64), int(0.7 * 64))  # just above the diaphragm, where the heart sits
    region = images[:, 0, rows, column_slice].float().mean((1, 2))
    return region


def test_cardiomegaly_widens_the_heart_shadow():
    images, labels = render_phantoms(600, 64, seed=2)
    # The heart grows towards the image right, over the left lung: measure brightness there.
    region = _heart_row_brightness(images, labels, slice(40, 46))
    cardio, normal = labels[:, 0] == 1, labels[:, 0] == 0
    assert region[cardio].mean() > region[normal].mean() + 15


def test_effusion_and_nodule_brighten_the_lungs():
    images, labels = render_phantoms(600, 64, seed=4)
    lungs = images[:, 0, 20:48, 10:54].float().mean((1, 2))
    for index in (1, 2):  # Effusion, Lung_Opacity: large dense regions
        assert lungs[labels[:, index] == 1].mean() > lungs[labels[:, index] == 0].mean() + 1.0
    peak = images[:, 0, 8:48, 8:56].float().amax((1, 2))
    assert peak[labels[:, 3] == 1].mean() > peak[labels[:, 3] == 0].mean()


def test_phantom_export_reads_back_through_image_folder(tmp_path):
    data = phantom(size=20, seed=3, prevalence=0.4, resolution=32, image_channels=1)
    write_dataset(data, tmp_path, prefix="phantom")
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert rows[0].keys() == {"Image Index", "Finding Labels"}
    assert any("|" in r["Finding Labels"] for r in rows) and any(r["Finding Labels"] == "No Finding" for r in rows)
    assert "PHANTOM" in (tmp_path / "README.txt").read_text()
    back = image_folder(root=str(tmp_path), labels_csv="labels.csv", classes=FINDINGS, resolution=32, image_channels=1)
    assert torch.equal(back.images, data.images)  # same size: lossless round trip
    assert torch.equal(back.labels, data.labels)
    assert back.label_names == FINDINGS


def test_a_seeded_sample_decodes_only_the_drawn_images_with_their_names(tmp_path):
    data = phantom(size=20, seed=3, prevalence=0.4, resolution=16, image_channels=1)
    write_dataset(data, tmp_path, prefix="phantom")
    params = {"root": str(tmp_path / "images"), "labels_csv": str(tmp_path / "labels.csv"), "cache": False}
    full = image_folder(**params, resolution=16, image_channels=1)
    assert full.names == [f"phantom_{i:06d}.png" for i in range(20)]
    drawn = image_folder(**params, sample=6, seed=4, resolution=16, image_channels=1)
    again = image_folder(**params, sample=6, seed=4, resolution=16, image_channels=1)
    other = image_folder(**params, sample=6, seed=5, resolution=16, image_channels=1)
    assert drawn.names == again.names != other.names and len(set(drawn.names)) == 6
    rows = [full.names.index(name) for name in drawn.names]
    assert torch.equal(drawn.images, full.images[rows]) and torch.equal(drawn.labels, full.labels[rows])
    assert "6 images" in drawn.description


def test_class_folders_like_covid_radiography(tmp_path):
    for cls, value in (("COVID", 200), ("Normal", 50), ("Viral Pneumonia", 120)):
        (tmp_path / cls / "images").mkdir(parents=True)
        (tmp_path / cls / "masks").mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 30), value, np.uint8)).save(tmp_path / cls / "images" / f"{cls}-{i}.png")
            Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / cls / "masks" / f"{cls}-{i}.png")
    data = image_folder(root=str(tmp_path), resolution=8, image_channels=1)
    assert data.images.shape == (9, 1, 8, 8)  # masks skipped
    assert data.label_names == ["COVID", "Normal", "Viral Pneumonia"]
    assert data.labels.sum(0).tolist() == [3, 3, 3]
    covid = image_folder(root=str(tmp_path), classes=["COVID"], resolution=8, image_channels=1)
    assert covid.images.shape[0] == 3 and int(covid.images.float().mean()) == 200
    with pytest.raises(DataError, match="no class folder \\['COVD'\\]"):
        image_folder(root=str(tmp_path), classes=["COVD"], resolution=8, image_channels=1)


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode.startswith("I;16")
    image = read_image(tmp_path / "ramp16.png", 64, 1)
    np.testing.assert_allclose(image[0].astype(float), ramp / 65535 * 255, atol=1.0)


def test_rgb_png_to_gray_and_gray_to_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "green.png")
    gray = read_image(tmp_path / "green.png", 16, 1)
    assert gray.shape == (1, 16, 16) and abs(int(gray.mean()) - round(0.587 * 255)) <= 1
    Image.fromarray(np.full((16, 16), 77, np.uint8)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png", 8, 3).shape == (3, 8, 8)


def test_non_square_is_centre_cropped(tmp_path):
    wide = np.zeros((10, 30), np.uint8)
    wide[:, 10:20] = 255  # only the centre square is white
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert read_image(tmp_path / "wide.png", 10, 1).min() == 255
    assert read_image(tmp_path / "wide.png", 10, 1, fit="stretch").min() == 0


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        image_folder(root=str(tmp_path), resolution=8, image_channels=1)
    with pytest.raises(DataError, match="dataset folder not found"):
        image_folder(root=str(tmp_path / "missing"), resolution=8, image_channels=1)


def test_csv_errors_name_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("Image Index,Finding Labels\nb.png,Nodule\n")
    with pytest.raises(DataError, match="labels.csv: image 'b.png' is listed but not found"):
        image_folder(root=str(tmp_path), labels_csv="labels.csv", resolution=8, image_channels=1)
    (tmp_path / "labels.csv").write_text("name,labels\na.png,Nodule\n")
    with pytest.raises(DataError, match="no column 'Image Index'"):
        image_folder(root=str(tmp_path), labels_csv="labels.csv", resolution=8, image_channels=1)


def test_dicom_chest_radiograph_monochrome1():
    """pydicom-data's RG1_UNCR.dcm: 1955×1841 PA chest, 15 bits stored, MONOCHROME1."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns, ds.BitsStored, ds.PhotometricInterpretation) == (1955, 1841, 15, "MONOCHROME1")
    image = read_image(type(__import__("pathlib").Path())(path), 64, 1)
    assert image.shape == (1, 64, 64) and image.dtype == np.uint8

    # Independent pipeline: window, invert, crop centre square, area-average down to 8×8.
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(float)
    display = 1 - (windowed - windowed.min()) / (windowed.max() - windowed.min())
    side = min(display.shape)
    top, left = (display.shape[0] - side) // 2, (display.shape[1] - side) // 2
    square = display[top : top + side, left : left + side]
    block = side // 8
    coarse = square[: block * 8, : block * 8].reshape(8, block, 8, block).mean((1, 3)) * 255
    ours = image[0].astype(float).reshape(8, 8, 8, 8).mean((1, 3))
    assert np.abs(ours - coarse).mean() < 6  # same picture: inversion and window applied
    # Inversion check: the mediastinum (centre column) is brighter than the lungs beside it.
    assert ours[3:6, 3:5].mean() > ours[3:6, 1].mean()
