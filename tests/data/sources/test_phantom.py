"""Tests of the synthetic LGE-cardiac phantom and its on-disk dataset (csmri-slices-v1)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy import ndimage

from csmri.data.layout import split_counts
from csmri.data.sources.phantom import (
    PhantomVolume,
    generate_patient,
    generate_patient_tissues,
    save_example_grid,
    write_phantom_dataset,
)

SIZE = 64
N_SLICES = 20


@pytest.fixture(scope="module")
def volumes() -> list[PhantomVolume]:
    return [generate_patient(i, size=SIZE, n_slices=N_SLICES, seed=0) for i in range(4)]


@pytest.fixture(scope="module")
def tissues() -> list[dict[str, np.ndarray]]:
    return [generate_patient_tissues(i, size=SIZE, n_slices=N_SLICES, seed=0) for i in range(4)]


def high_frequency_fraction(images: np.ndarray) -> np.ndarray:
    """Per-slice fraction of k-space energy outside the central 1/8 of the phase-encode lines (rows)."""
    axes = (-2, -1)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=axes), norm="ortho"), axes=axes)
    energy = np.abs(kspace) ** 2
    centre, half_band = images.shape[-2] // 2, images.shape[-2] // 16
    central = energy[..., centre - half_band : centre + half_band, :].sum(axis=(-2, -1))
    return 1.0 - central / energy.sum(axis=(-2, -1))


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """In-plane Gaussian blur of complex slices (S, H, W)."""
    blur = lambda part: ndimage.gaussian_filter(part, (0, sigma, sigma))  # noqa: E731
    return blur(images.real) + 1j * blur(images.imag)


# ---------------------------------------------------------------------------------------------- volume


def test_same_arguments_give_identical_volumes(volumes):
    again = generate_patient(0, size=SIZE, n_slices=N_SLICES, seed=0)
    np.testing.assert_array_equal(again.image, volumes[0].image)
    np.testing.assert_array_equal(again.label, volumes[0].label)
    assert again.patient_id == volumes[0].patient_id == "phantom_000"


def test_different_index_or_seed_gives_different_volumes(volumes):
    other_seed = generate_patient(0, size=SIZE, n_slices=N_SLICES, seed=1)
    assert not np.allclose(np.abs(volumes[0].image), np.abs(volumes[1].image), atol=1e-2)
    assert not np.array_equal(volumes[0].label, volumes[1].label)
    assert not np.allclose(np.abs(volumes[0].image), np.abs(other_seed.image), atol=1e-2)


def test_dtypes_shapes_and_normalisation(volumes):
    for volume in volumes:
        assert volume.image.dtype == np.complex64 and volume.image.shape == (N_SLICES, SIZE, SIZE)
        assert volume.label.dtype == np.uint8 and volume.label.shape == (N_SLICES, SIZE, SIZE)
        assert set(np.unique(volume.label)) <= {0, 1}
        assert np.abs(volume.image).max() == pytest.approx(1.0, abs=1e-5)
        assert np.isfinite(volume.image).all()


@pytest.mark.parametrize("size", [32, 96])
def test_other_even_sizes(size):
    volume = generate_patient(3, size=size, n_slices=6)
    assert volume.image.shape == volume.label.shape == (6, size, size)
    assert volume.label.any()


@pytest.mark.parametrize("n_slices", [3, 7, N_SLICES])
def test_label_occupies_a_contiguous_middle_run(n_slices):
    for index in range(6):
        label = generate_patient(index, size=32, n_slices=n_slices).label
        present = np.flatnonzero(label.any(axis=(1, 2)))
        assert present.size > 0
        assert np.array_equal(present, np.arange(present[0], present[-1] + 1)), "LA slices not contiguous"
        assert present[0] > 0 and present[-1] < n_slices - 1, "first/last slice must have no LA"
        if n_slices >= 10:
            assert 0.45 * n_slices <= present.size <= 0.75 * n_slices


def test_label_lies_inside_the_body(volumes, tissues):
    for volume, fractions in zip(volumes, tissues, strict=True):
        assert not (volume.label.astype(bool) & (fractions["body"] < 0.5)).any()
        assert not (volume.label.astype(bool) & (fractions["lung"] > 0.5)).any()


def test_label_is_the_atrial_cavity_plus_wall(volumes, tissues):
    for volume, fractions in zip(volumes, tissues, strict=True):
        atrium = fractions["la_wall"] + fractions["la_cavity"]
        np.testing.assert_array_equal(volume.label, (atrium >= 0.5).astype(np.uint8))


def test_atrial_wall_is_brighter_than_blood_pool_and_myocardium(volumes, tissues):
    for volume, fractions in zip(volumes, tissues, strict=True):
        magnitude = np.abs(volume.image)
        wall = magnitude[fractions["la_wall"] >= 0.75].mean()
        blood = magnitude[fractions["la_cavity"] >= 0.75].mean()
        myocardium = magnitude[fractions["myocardium"] >= 0.75].mean()
        assert wall > 1.4 * blood, (wall, blood)
        assert blood > 2.0 * myocardium, (blood, myocardium)


def test_atrial_wall_is_thin(tissues):
    """The enhanced wall is fine detail: a thin rim (1-3 px at 128^2), much smaller than the cavity."""
    fractions = generate_patient_tissues(0, size=128, n_slices=N_SLICES)
    wall, cavity = fractions["la_wall"].sum(), fractions["la_cavity"].sum()
    assert 0.15 < wall / cavity < 0.6


# ---------------------------------------------------------------------------------------------- open atrium


@pytest.fixture(scope="module")
def open_volumes() -> list[PhantomVolume]:
    return [generate_patient(i, size=SIZE, n_slices=N_SLICES, seed=0, atrium="open") for i in range(4)]


def test_open_atrium_keeps_the_anatomy_and_cuts_the_label(volumes, open_volumes):
    """Both styles draw the same patient; the open LA's inflow only ever takes pixels away from the label."""
    for walled, opened in zip(volumes, open_volumes, strict=True):
        assert not (opened.label & ~walled.label.astype(bool)).any()
        assert 0 < (walled.label.sum() - opened.label.sum()) < 0.3 * walled.label.sum()
        no_atrium = ~walled.label.any(axis=(1, 2))  # the same slices, up to the volume's normalisation to max 1
        scale = np.abs(opened.image[no_atrium]).max() / np.abs(walled.image[no_atrium]).max()
        np.testing.assert_allclose(opened.image[no_atrium], scale * walled.image[no_atrium], atol=1e-5)


def test_open_atrium_wall_is_dark_and_its_blood_runs_on_past_the_label(volumes, open_volumes):
    """The walled LA is ringed by a bright wall; the open one's healthy wall is darker than its blood, the pixels its
    label gives up are blood, and blood appears beyond the walled label where the walled image has none (the veins,
    the mitral inflow)."""
    for index, (walled, opened) in enumerate(zip(volumes, open_volumes, strict=True)):
        for style, volume in (("walled", walled), ("open", opened)):
            fractions = generate_patient_tissues(index, size=SIZE, n_slices=N_SLICES, seed=0, atrium=style)
            magnitude = np.abs(volume.image)
            wall = np.quantile(magnitude[fractions["la_wall"] >= 0.75], 0.25)  # its healthy part (scar enhances)
            blood = np.median(magnitude[fractions["la_cavity"] >= 0.75])
            assert (wall > 1.2 * blood) if style == "walled" else (wall < 0.6 * blood), (style, wall, blood)
        no_atrium = ~walled.label.any(axis=(1, 2))
        open_magnitude, walled_magnitude = np.abs(opened.image), np.abs(walled.image)
        walled_magnitude *= open_magnitude[no_atrium].max() / walled_magnitude[no_atrium].max()
        is_blood = lambda m, level=blood: np.abs(m - level) < 0.15 * level  # noqa: E731 (level: the open LA's blood)
        given_up = walled.label.astype(bool) & ~opened.label.astype(bool)
        assert is_blood(np.median(open_magnitude[given_up]))
        beyond = ~ndimage.binary_dilation(walled.label, structure=np.ones((1, 3, 3)))
        new_blood = beyond & is_blood(open_magnitude) & ~is_blood(walled_magnitude)
        lost_blood = beyond & is_blood(walled_magnitude) & ~is_blood(open_magnitude)
        assert new_blood.sum() > max(15, 5 * lost_blood.sum()), (new_blood.sum(), lost_blood.sum())


def test_image_is_genuinely_complex(volumes, tissues):
    for volume, fractions in zip(volumes, tissues, strict=True):
        inside = fractions["body"] > 0.5
        phase = np.angle(volume.image[inside])
        circular_spread = 1.0 - np.abs(np.exp(1j * phase).mean())
        assert circular_spread > 0.05, "phase is (nearly) constant"
        assert np.abs(volume.image.imag).max() > 0.1


def test_fine_detail_survives_in_k_space(volumes):
    """High-frequency energy (outside the central 1/8 of k-space lines) on LA slices at 64^2.

    Measured on seed 0: >= 0.22 for every LA slice; a Gaussian-blurred copy (sigma 1 px) <= 0.13; two flat
    ellipses at 64^2 give 0.06. The threshold 0.15 sits between, so a flat-ellipse phantom would fail.
    """
    for volume in volumes:
        slices = volume.image[volume.label.any(axis=(1, 2))]
        fraction = high_frequency_fraction(slices)
        assert fraction.min() > 0.15
        blurred = high_frequency_fraction(gaussian_blur(slices, sigma=1.0))
        assert (blurred < 0.75 * fraction).all()


def test_anatomy_scales_with_size():
    small, large = (generate_patient(5, size=size, n_slices=8) for size in (64, 128))
    np.testing.assert_array_equal(small.label.any(axis=(1, 2)), large.label.any(axis=(1, 2)))
    area_small = small.label.reshape(8, -1).mean(axis=1)
    area_large = large.label.reshape(8, -1).mean(axis=1)
    present = area_small > 0
    np.testing.assert_allclose(area_small[present], area_large[present], rtol=0.25)


def test_noise_is_complex_gaussian_with_the_given_std():
    clean = generate_patient(2, size=SIZE, n_slices=4)
    noisy = generate_patient(2, size=SIZE, n_slices=4, noise_std=0.05)
    residual = noisy.image - clean.image
    assert residual.real.std() == pytest.approx(0.05, rel=0.05)
    assert residual.imag.std() == pytest.approx(0.05, rel=0.05)
    np.testing.assert_array_equal(noisy.label, clean.label)


def test_lower_acquired_resolution_empties_outer_k_space_and_keeps_the_label():
    full = generate_patient(2, size=SIZE, n_slices=4)
    half = generate_patient(2, size=SIZE, n_slices=4, resolution=0.5)
    np.testing.assert_array_equal(half.label, full.label)
    assert np.abs(half.image).max() == pytest.approx(1.0, abs=1e-6)
    # centred orthonormal k-space of each slice, computed here with numpy
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(half.image, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    radius = np.abs(np.arange(SIZE) - SIZE // 2)
    outside = (radius[:, None] > SIZE // 4) | (radius[None, :] > SIZE // 4)  # beyond half the extent per axis
    assert np.abs(k[:, outside]).max() < 1e-5 * np.abs(k).max()
    # inside 0.8 of the band (the flat part of the window) the spectrum is the full image's, up to one scale
    k_full = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(full.image, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    flat = (radius[:, None] < 0.4 * SIZE // 2) & (radius[None, :] < 0.4 * SIZE // 2)
    scale = np.abs(k[:, flat]).sum() / np.abs(k_full[:, flat]).sum()
    np.testing.assert_allclose(k[:, flat], scale * k_full[:, flat], atol=1e-4 * np.abs(k_full).max())


# ---------------------------------------------------------------------------------------------- traced labels


def test_traced_label_moves_only_the_label_slice_by_slice(volumes):
    """An annotator's tracing changes the label (on every slice with the LA, nowhere else), never the image; the
    other random streams are untouched, so ``tracing=0`` is the default phantom."""
    traced = generate_patient(0, size=SIZE, n_slices=N_SLICES, seed=0, tracing=1.5)
    true = volumes[0]
    np.testing.assert_array_equal(traced.image, true.image)
    with_atrium = true.label.any(axis=(1, 2))
    np.testing.assert_array_equal(traced.label.any(axis=(1, 2)), with_atrium)
    differs = (traced.label != true.label).any(axis=(1, 2))
    assert differs[with_atrium].mean() > 0.8 and not differs[~with_atrium].any()
    untraced = generate_patient(0, size=SIZE, n_slices=N_SLICES, seed=0, tracing=0.0)
    np.testing.assert_array_equal(untraced.label, true.label)

    def radius_change(traced_label, true_label):  # per LA slice: how much wider the tracing is, in equivalent radius
        on = true_label.any(axis=(1, 2))
        return np.sqrt(traced_label[on].sum(axis=(1, 2))) - np.sqrt(true_label[on].sum(axis=(1, 2)))

    # each patient is traced its own way: with one tracing stream for all patients the two sequences correlate 0.997
    other = generate_patient(1, size=SIZE, n_slices=N_SLICES, seed=0, tracing=1.5)
    first, second = radius_change(traced.label, true.label), radius_change(other.label, volumes[1].label)
    n = min(len(first), len(second))
    assert np.corrcoef(first[:n], second[:n])[0, 1] < 0.9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 63},
        {"size": 30},
        {"size": 1026},
        {"n_slices": 0},
        {"noise_std": -0.1},
        {"index": -1},
        {"resolution": 0.0},
        {"resolution": 1.5},
        {"atrium": "closed"},
        {"tracing": -0.5},
        {"tracing": float("nan")},
    ],
)
def test_generate_patient_rejects_bad_arguments(kwargs):
    arguments = {"index": 0, "size": SIZE, "n_slices": 4} | kwargs
    with pytest.raises(ValueError):
        generate_patient(**arguments)


# ---------------------------------------------------------------------------------------------- splits


def test_split_counts_follow_the_paper():
    assert split_counts(37) == (24, 6, 7)
    assert split_counts(4) == (2, 1, 1)
    assert split_counts(3) == (1, 1, 1)
    for n in range(3, 120):
        train, val, test = split_counts(n)
        assert train + val + test == n and train >= 1 and val >= 1 and test >= 1


@pytest.mark.parametrize("n", [2, 1, 0])
def test_split_counts_need_three_patients(n):
    with pytest.raises(ValueError):
        split_counts(n)


# ---------------------------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return write_phantom_dataset(
        tmp_path_factory.mktemp("phantom"), n_patients=5, size=32, n_slices=4, seed=3, progress=False
    )


def test_dataset_meta(dataset_root):
    meta = json.loads((dataset_root / "meta.json").read_text())
    assert set(meta) == {
        "format",
        "source",
        "size",
        "n_slices_per_patient",
        "seed",
        "noise_std",
        "splits",
        "label_names",
        "generator",
        "written_by",
    }
    assert meta["generator"] == {"patients": 5, "size": 32, "slices": 4, "seed": 3, "noise_std": 0.0}
    assert meta["format"] == "csmri-slices-v1" and meta["source"] == "phantom"
    assert meta["size"] == [32, 32] and meta["n_slices_per_patient"] == 4
    assert meta["seed"] == 3 and meta["noise_std"] == 0.0
    assert meta["label_names"] == {"1": "left_atrium"}
    splits = meta["splits"]
    assert tuple(len(splits[name]) for name in ("train", "val", "test")) == split_counts(5)
    every = [pid for ids in splits.values() for pid in ids]
    assert sorted(every) == [f"phantom_{i:03d}" for i in range(5)], "a patient is missing or in two splits"


def test_split_assignment_is_a_seeded_shuffle(dataset_root):
    meta = json.loads((dataset_root / "meta.json").read_text())
    order = np.random.default_rng(3).permutation(5)
    n_train, n_val, _ = split_counts(5)
    expected_train = sorted(f"phantom_{i:03d}" for i in order[:n_train])
    expected_val = sorted(f"phantom_{i:03d}" for i in order[n_train : n_train + n_val])
    assert meta["splits"]["train"] == expected_train and meta["splits"]["val"] == expected_val


def test_dataset_files(dataset_root):
    meta = json.loads((dataset_root / "meta.json").read_text())
    for split, ids in meta["splits"].items():
        assert sorted(p.stem for p in (dataset_root / split).glob("*.h5")) == sorted(ids)
        for pid in ids:
            with h5py.File(dataset_root / split / f"{pid}.h5", "r") as f:
                assert f.attrs["patient_id"] == pid
                assert f["image"].dtype == np.complex64 and f["image"].shape == (4, 32, 32)
                assert f["label"].dtype == np.uint8 and f["label"].shape == (4, 32, 32)
                assert f["image"].chunks == f["label"].chunks == (1, 32, 32)
                keys = [k.decode() for k in f["keys"][()]]
                assert keys == [f"{pid}/{s:03d}" for s in range(4)]
                expected = generate_patient(int(pid.split("_")[1]), size=32, n_slices=4, seed=3)
                np.testing.assert_array_equal(f["image"][()], expected.image)
                np.testing.assert_array_equal(f["label"][()], expected.label)


def test_rewriting_a_root_leaves_no_stale_patients(tmp_path):
    for seed in (0, 1):
        root = write_phantom_dataset(tmp_path, n_patients=4, size=32, n_slices=2, seed=seed, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["seed"] == 1
    for split, ids in meta["splits"].items():
        assert sorted(p.stem for p in (root / split).glob("*.h5")) == sorted(ids)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 33}, {"size": 30}, {"size": 1026}, {"n_patients": 2}, {"n_slices": 0}],
)
def test_write_rejects_bad_arguments(tmp_path, kwargs):
    arguments = {"n_patients": 3, "size": 32, "n_slices": 2, "progress": False} | kwargs
    with pytest.raises(ValueError):
        write_phantom_dataset(tmp_path / "bad", **arguments)
    assert not (tmp_path / "bad" / "meta.json").exists()


# ---------------------------------------------------------------------------------------------- figure


def test_save_example_grid_from_volumes_and_from_root(volumes, dataset_root, tmp_path):
    png_magic = b"\x89PNG\r\n\x1a\n"
    from_volumes = save_example_grid(volumes, tmp_path / "volumes.png", n=4)
    from_root = save_example_grid(dataset_root, tmp_path / "root.png", n=3)
    for path in (from_volumes, from_root):
        assert path.read_bytes()[:8] == png_magic and path.stat().st_size > 1000


def test_phantom_is_never_written_into_a_foreign_folder(tmp_path):
    from csmri.data.sources.phantom import PhantomSource
    from csmri.errors import DatasetFolderError

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "case1.nii.gz").write_bytes(b"user data")
    with pytest.raises(DatasetFolderError, match="data=folder"):
        PhantomSource(patients=3, size=32, slices=1).prepare(scans)
    assert sorted(p.name for p in scans.iterdir()) == ["case1.nii.gz"]


def test_phantom_settings_are_recorded_and_compared(tmp_path):
    from csmri.data.sources.phantom import PhantomSource
    from csmri.errors import DataError

    root = tmp_path / "p"
    PhantomSource(patients=3, size=32, slices=1).prepare(root)
    assert json.loads((root / "meta.json").read_text())["generator"]["size"] == 32
    assert PhantomSource(patients=3, size=32, slices=1).prepare(root) == root
    with pytest.raises(DataError, match="size=32"):
        PhantomSource(patients=3, size=64, slices=1).prepare(root)
    with pytest.raises(DataError, match="atrium=None"):  # a walled phantom records no style: written before it existed
        PhantomSource(patients=3, size=32, slices=1, atrium="open").prepare(root)
    with pytest.raises(DataError, match="tracing=None"):
        PhantomSource(patients=3, size=32, slices=1, tracing=1.0).prepare(root)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_interrupted_phantom_leaves_no_dataset(tmp_path, monkeypatch):
    import csmri.data.sources.phantom.source as source

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(source, "_swap_into_place", boom)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "p", n_patients=3, size=32, n_slices=1, progress=False)
    assert not (tmp_path / "p" / "meta.json").exists()


def test_cli_writes_the_chosen_atrium_and_tracing(tmp_path, capsys):
    from csmri.app.data import main

    assert main(["phantom", "--out", str(tmp_path / "p"), "--patients", "3", "--size", "32", "--slices", "3"]) == 0
    assert "atrium" not in json.loads((tmp_path / "p" / "meta.json").read_text())["generator"]
    argv = ["phantom", "--out", str(tmp_path / "o"), "--patients", "3", "--size", "32", "--slices", "3"]
    assert main([*argv, "--atrium", "open"]) == 0
    assert json.loads((tmp_path / "o" / "meta.json").read_text())["generator"]["atrium"] == "open"
    with pytest.raises(SystemExit):
        main([*argv, "--atrium", "closed"])
    assert "invalid choice" in capsys.readouterr().err
    assert "tracing" not in json.loads((tmp_path / "p" / "meta.json").read_text())["generator"]
    assert main([*argv, "--tracing", "1.5"]) == 0
    assert json.loads((tmp_path / "o" / "meta.json").read_text())["generator"]["tracing"] == 1.5
    with pytest.raises(SystemExit):
        main([*argv, "--tracing", "-1"])
    assert "tracing" in capsys.readouterr().err
