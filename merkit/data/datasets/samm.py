"""SAMM (Davison et al. 2018), micro-expressions only.

Sheet: ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``: about 13 rows of notes, then the header
``Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Micro, Action Units,
Estimated Emotion, Objective Classes, Notes``. Subject ids are zero-padded to three digits (``006``) in the
folders but often written ``6`` in the sheet; clips are ``006/006_1_2/006_05562.jpg`` (the frame number is the
last number of the file name, not the subject prefix). In some copies an apex lies outside onset..offset:
validation reports it (build with ``strict=False`` to get the manifest and the report).
"""

from __future__ import annotations

from merkit.data.datasets.builder import SheetBuilder


class SammBuilder(SheetBuilder):
    """SAMM needs only its declaration (samm.yaml): header search past the notes, 3-digit subject ids."""


def build(spec, data_root, protocol=None, *, annotation=None, strict=True):
    """Manifest of SAMM; see :func:`merkit.data.datasets.build_manifest`."""
    return SammBuilder(spec).build(data_root, protocol, annotation=annotation, strict=strict)
