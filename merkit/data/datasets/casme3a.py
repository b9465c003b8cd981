"""CAS(ME)^3 part A (Li et al. 2022), micro-expression labels with JPG indices.

Sheet: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, first sheet, header
``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion``. ``Subject`` is ``spNO.1``-style and
``Filename`` names the recording of a task (``a``, ``b``, ...), which can hold several micro-expressions, so
the sample id is ``<Filename>_<Onset>`` (unique within a subject) and several samples share one frame folder.
Onset/apex/offset are indices of the JPG frames of that recording. Every cell is text (``'355'``). Seven rows
of the v2 file have timing faults (an onset after its offset, offsets of 0, apexes outside onset..offset);
casme3a.yaml declares rule-based repairs for them (our assumption, applied with ``on_problem='fix'``).
"""

from __future__ import annotations

from merkit.data.datasets.builder import SheetBuilder


class Casme3ABuilder(SheetBuilder):
    """The sample id template (``sample_id`` in casme3a.yaml) adds the onset to the recording name."""


def build(spec, data_root, protocol=None, *, annotation=None, strict=True, on_problem="error"):
    """Manifest of CAS(ME)^3 part A; see :func:`merkit.data.datasets.build_manifest`."""
    return Casme3ABuilder(spec).build(data_root, protocol, annotation=annotation, strict=strict, on_problem=on_problem)
