"""SMIC-E (the extended SMIC-HS clips), read from ``SMIC-HS-E_annotation.xlsx``, sheet ``HS``.

``Subject, Filename, (blank), OnsetF, OffsetF, ..., Emotion``: onset/offset of each micro-expression inside a
long clip, three emotions, no apex. 157 rows (162 in a variant), other clip ids than the 164 SMIC-HS clips,
some of which it lacks: it is a dataset of its own and never the SMIC-HS manifest (which is built from the
SMIC-HS folders, :mod:`.smic_hs`). Ids are written ``s1``/``s01`` and become ``s01`` / ``s01_…`` as in SMIC-HS.
"""

from __future__ import annotations

from typing import Any

from merkit.data.datasets.builder import SheetBuilder
from merkit.data.datasets.smic_hs import canonical_sample


class SmicEBuilder(SheetBuilder):
    """The shared sheet steps; clip ids in the MEGC2019 spelling (``s1_ne_01`` -> ``s01_ne_01``)."""

    def sample_id(self, fields: Any) -> str:
        return canonical_sample(super().sample_id(fields))


def build(spec, data_root, protocol=None, *, annotation=None, strict=True, on_problem="error"):
    """Manifest of SMIC-E; see :func:`merkit.data.datasets.build_manifest`."""
    return SmicEBuilder(spec).build(data_root, protocol, annotation=annotation, strict=strict, on_problem=on_problem)
