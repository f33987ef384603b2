"""Bring your own data: :class:`FolderSource` converts a folder of scans into a prepared dataset
(:mod:`csmri.data.layout`).

Naming rules (``naming``), for a raw folder ``root``:

* ``suffix`` (default): ``<case>.<ext>`` with an optional label map ``<case><label_suffix>.<ext>`` next to
  it (``label_suffix="_label"``); a sub-folder ``<case>/`` is a DICOM series or a PNG/TIFF stack.
  ``pattern`` (a glob relative to ``root``, default ``*``) selects the image entries, e.g. ACDC's
  ``**/patient*_frame[0-9][0-9].nii.gz``.
* ``parallel``: ``<image_dir>/<case>.<ext>`` and ``<label_dir>/<case>.<ext>`` (``images/``, ``labels/``).
* ``case_dirs``: ``<case>/<image_name>`` and ``<case>/<label_name>`` at any depth (LA-2018's
  ``<case>/lgemri.nrrd`` + ``<case>/laendo.nrrd``); the case is the folder's name.

Each case becomes ``<layout>/<split>/<case>.h5`` with per-slice keys ``"<case>/<slice:03d>"`` where
``slice`` is the index along the slicing axis of the raw volume (stable under ``slices`` and dropped empty
slices). Per case: read (:mod:`csmri.data.scan_files`), check, move the slicing ``axis`` first, keep the
``slices`` range, k-space to image (``domain="kspace"``: centred k-space, ``csmri.physics.ifft2c``), swap
the in-plane axes (``transpose``), fit to ``size`` (:func:`csmri.data.transforms.fit_to_size`), add a
synthetic phase to real data (``synthetic_phase``), normalise each slice to max magnitude 1, drop all-zero
slices (``drop_empty``). The label map becomes a binary uint8 mask of the structure of interest (values in
``structure``; default: label > 0), fitted with nearest-neighbour interpolation. In-plane, csmri
undersamples rows: the phase-encode direction must be H (dim -2) after ``transpose``.

Splits are by patient (``patient_regex`` groups cases into patients, e.g. ACDC's ED/ES frames), by ratio
(seeded; default the paper's 24/6/7, :func:`csmri.data.layout.split_indices`) or by explicit lists.
Bad inputs raise :class:`csmri.errors.BadInputError` naming the file, or are skipped with a warning
and counted in the summary when ``skip_bad=True``.

Modules: :mod:`.options` (:class:`FolderOptions`, the options and their validation), :mod:`.discovery` (finding
cases), :mod:`.convert` (one case to slices), :mod:`.summary` (the preparation summary), :mod:`.source`
(:class:`FolderSource`: discover, convert, split, write). The presets of ``conf/data`` as sources:
:func:`csmri.config.data_source` (``named_source`` here is the same function, kept for existing code).
"""

from csmri.config import data_source as named_source
from csmri.data.sources.folder.options import FolderOptions
from csmri.data.sources.folder.source import FolderSource
from csmri.data.sources.folder.summary import format_summary, summarise_preparation

__all__ = ["FolderOptions", "FolderSource", "format_summary", "named_source", "summarise_preparation"]
