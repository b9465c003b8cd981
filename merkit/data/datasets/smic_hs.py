"""SMIC-HS (Li et al. 2013), the 100 fps high-speed part of SMIC.

Sheet: ``SMIC-HS-E_annotation.xlsx``, sheet ``HS``: ``Subject, Filename, (blank), OnsetF, OffsetF, ..., Emotion``;
three emotions (negative, positive, surprise) and no apex (``apex`` is ``<NA>``). Subject ids are written ``s1``
in some places and ``s01`` in others; the manifest uses ``s01``. Clip folders are
``s1/micro/negative/s1_ne_01/image106522.bmp``; the builder tries ``s1`` then ``s01`` for the subject folder.
"""

from __future__ import annotations

from merkit.data.datasets.builder import SheetBuilder


class SmicHsBuilder(SheetBuilder):
    """The folder path holds the emotion (``micro/negative/``): the layout template uses ``{emotion}``."""


def build(spec, data_root, protocol=None, *, annotation=None, strict=True):
    """Manifest of SMIC-HS; see :func:`merkit.data.datasets.build_manifest`."""
    return SmicHsBuilder(spec).build(data_root, protocol, annotation=annotation, strict=strict)
