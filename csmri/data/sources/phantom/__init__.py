"""Synthetic LGE-cardiac MRI phantom: csmri's embedded default dataset (the paper's data are private).

Each "patient" is a seeded, deterministic 3-D stack of axial slices through a thorax: body outline with
subcutaneous fat and a muscle layer, dark lungs with small bright vessels, vertebra (bright rim, dark
core) and spinal canal, descending aorta, oesophagus, the heart (epicardial fat, nulled dark myocardium,
blood pools of the ventricles, right atrium and great vessels) and the **left atrium** (LA), whose thin
wall carries bright, irregular LGE-style enhancement (scar patches). Shapes are star-shaped regions
(ellipses with low-order Fourier boundary perturbations) whose parameters vary smoothly with ``z``.
``atrium`` chooses how the LA meets its surroundings (:data:`.render.ATRIUM_STYLES`): ``"walled"`` (the default)
rings it with a bright wall of its own; ``"open"`` nulls its healthy wall (dark, like the tissue it borders; scar
still enhances) and lets its blood continue, unlabelled, into the pulmonary veins and through the mitral valve into
the LV, so part of the label's boundary is a cut with nothing in the image to mark it, as in LGE. ``tracing`` labels
the LA as an annotator traces it, each slice's outline a smooth offset away from the true one (:mod:`.tracing`).

Modules: :mod:`.geometry` (grid, star shapes), :mod:`.anatomy` (random parameters), :mod:`.render`
(painting), :mod:`.patient` (:func:`generate_patient`), :mod:`.source` (:func:`write_phantom_dataset`,
:class:`PhantomSource`), :mod:`.tracing` (:func:`.tracing.trace_outline`), :mod:`.preview` (:func:`save_example_grid`).

Conventions
-----------
* Volumes are ``(S, H, W)`` = (slices, rows, columns), ``H == W == size`` (even, 32..1024).
* Radiological display: row 0 is anterior, column 0 is the patient's right; slice 0 is superior.
  In-plane coordinates ``x`` (columns) and ``y`` (rows) are normalised to ``[-1, 1]`` over the field of
  view, the slice position ``z = (s + 0.5) / S`` lies in ``(0, 1)``.
* Gross anatomy is defined in normalised units, so it looks the same at every ``size``. Fine detail
  (LA wall thickness and scar thickening, vessel calibre, fine texture grain, thin rims of the vertebra,
  aorta and oesophagus) is specified in pixels at 128^2
  and grows only as ``sqrt(size / 128)`` pixels, so it stays a few pixels wide at every size (as a
  real higher-resolution scan shows finer structure). Edges are anti-aliased by a one-pixel linear
  ramp of an approximate signed distance.
* ``image``: complex64, ``|image|`` normalised so the volume maximum is 1 (before noise), times
  ``exp(i * phase)`` with a smooth random phase of a few radians. ``noise_std`` is the standard
  deviation of the complex Gaussian noise in *each* of the real and imaginary parts.
* ``label``: uint8, 1 = left atrium = blood pool (cavity) **plus its wall** (everything inside the outer
  wall boundary; an open atrium's veins and mitral inflow excluded; with ``tracing``, that outline as traced),
  0 elsewhere. The LA occupies a contiguous middle run of ~50-70 % of the slices; for ``n_slices >= 3`` the first
  and the last slice never contain it.

The dataset written by :func:`write_phantom_dataset` follows :mod:`csmri.data.layout`; its ``meta.json``
adds ``n_slices_per_patient``, ``seed``, ``noise_std`` and ``label_names`` ``{"1": "left_atrium"}``.
"""

from csmri.data.sources.phantom.patient import (
    PhantomVolume,
    generate_patient,
    generate_patient_tissues,
    phantom_patient_id,
)
from csmri.data.sources.phantom.preview import save_example_grid
from csmri.data.sources.phantom.source import PhantomSource, write_phantom_dataset

__all__ = [
    "PhantomSource",
    "PhantomVolume",
    "generate_patient",
    "generate_patient_tissues",
    "phantom_patient_id",
    "save_example_grid",
    "write_phantom_dataset",
]
