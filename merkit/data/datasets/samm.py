"""SAMM (Davison et al. 2018), micro-expressions only.

Sheet: ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``: about 13 rows of notes, then the header
``Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame, Duration, Micro, Action Units,
Estimated Emotion, Objective Classes, Notes``. Subject ids are zero-padded to three digits (``006``) in the
folders but often written ``6`` in the sheet; clips are ``006/006_1_2/006_05562.jpg`` (the frame number is the
last number of the file name, not the subject prefix). In the copies that circulate two apexes lie outside
onset..offset (028_4_1, 032_3_1, in two variants): samm.yaml declares errata for them, applied with
``on_problem='fix'``; the default ``'error'`` names them.
"""

from __future__ import annotations

from merkit.data.datasets.builder import SheetBuilder


class SammBuilder(SheetBuilder):
    """SAMM needs only its declaration (samm.yaml): header search past the notes, 3-digit subject ids."""


def build(spec, data_root, protocol=None, *, annotation=None, strict=True, on_problem="error"):
    """Manifest of SAMM; see :func:`merkit.data.datasets.build_manifest`."""
    return SammBuilder(spec).build(data_root, protocol, annotation=annotation, strict=strict, on_problem=on_problem)
