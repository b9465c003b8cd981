"""CASME II (Yan et al. 2014), and SynthME, which is written in the same form.

Sheet: ``CASME2-coding-20140508.xlsx`` or ``CASME2-coding-20190701.xlsx``, first sheet, header
``Subject, Filename, (blank), OnsetFrame, ApexFrame, OffsetFrame, (blank), Action Units, Estimated Emotion``
(the 2019 version adds ``Objective Classes``). Subjects ``1``..``26`` (written with or without the zero)
become ``01``..``26``; clips are ``sub01/EP02_01f/img46.jpg`` (raw) or ``reg_img46.jpg`` (Cropped release).
Quirks handled: an apex written ``/`` becomes ``<NA>``; AU cells such as ``4+L10``, ``R12``, ``1+2+4`` or a bare
number. The two sheet versions disagree on a few emotions: which one is read is recorded in
``df.attrs['annotation']``, and the MEGC2019 composite always reads the 2014 sheet.
"""

from __future__ import annotations

from merkit.data.datasets.builder import SheetBuilder


class Casme2Builder(SheetBuilder):
    """Everything CASME II needs is declared in ``casme2.yaml``; the shared steps do the rest."""


def build(spec, data_root, protocol=None, *, annotation=None, strict=True, on_problem="error"):
    """Manifest of a CASME II-form dataset (``casme2``, ``synthme``); see :func:`merkit.data.datasets.build_manifest`."""
    return Casme2Builder(spec).build(data_root, protocol, annotation=annotation, strict=strict, on_problem=on_problem)
