"""SMIC-HS (Li et al. 2013), the 100 fps high-speed part of SMIC: built from its folders, not from a sheet.

The 164-clip release has no per-clip annotation sheet: the class is the folder. A clip is
``<root>/s1/micro/negative/s1_ne_01/image106522.bmp`` (also seen: ``s01/.../s01_ne_01/``, ``reg_image…`` frames
in cropped copies, ``SMIC_all_cropped/HS/…``). For each clip folder:

- class = the class folder (``negative``, ``positive``, ``surprise``; any other name is an error naming it);
- onset / offset = the first / last frame number on disk;
- apex: not annotated. Estimated as the middle frame on disk (``numbers[len // 2]``), flagged
  ``apex_estimated`` in the manifest and described in ``attrs['apex_method']`` (an assumption: the clips
  are cut around the expression, so the middle is a neutral guess, not a measurement);
- ids: ``s1`` / ``s01`` and ``s1_ne_01`` / ``s01_ne_01`` all become the MEGC2019 form, subject ``s01`` and
  sample ``s01_ne_01``, so a copy with either spelling gives the same manifest (paths keep the spelling on disk).

``SMIC-HS-E_annotation.xlsx`` describes the *extended* long clips (SMIC-E, other ids): it is never read
here; it is the dataset ``smic_e`` (``data_manifests/smic_e.yaml``, a sheet).
"""

from __future__ import annotations

import re
from os import PathLike
from pathlib import Path
from typing import Any

from merkit.data.datasets.builder import SheetBuilder
from merkit.data.datasets.cells import SMIC_CLIP_NAME as _CLIP_FOLDER
from merkit.data.datasets.cells import canonical_sample, canonical_subject
from merkit.data.io import ClipReadError, list_frames
from merkit.data.manifest import ManifestProblem

__all__ = ["APEX_METHOD", "SmicHsBuilder", "canonical_sample", "canonical_subject"]

_SUBJECT_FOLDER = re.compile(r"s(\d{1,2})")
APEX_METHOD = "middle frame on disk (numbers[len // 2]); SMIC-HS annotates no apex: an estimate, not a label"


class SmicHsBuilder(SheetBuilder):
    """Walks ``<root>/<subject>/micro/<class>/<clip>/`` (``layout`` in smic_hs.yaml) instead of reading a sheet."""

    def find_root(self, data_root: Path) -> str | None:
        """The first layout root (cropped ones first) holding any ``<subject>/<micro>/<class>/<clip>`` folder."""
        micro = str(self.layout.get("micro_folder", "micro"))
        for root in self.search_roots():
            base = data_root / root if root else data_root
            if base.is_dir() and any(base.glob(f"s*/{micro}/*/*")):
                return root
        return None

    def check_annotation(self, annotation: str | PathLike | None) -> None:
        if annotation is not None:
            raise self.error(
                f"SMIC-HS has no annotation sheet (the class is the folder); annotation={str(annotation)!r} cannot be "
                "used. SMIC-HS-E_annotation.xlsx describes the long SMIC-E clips: build dataset 'smic_e' for it"
            )

    def read_records(
        self, data_root: Path, annotation: str | PathLike | None
    ) -> tuple[list[dict[str, Any]], list[ManifestProblem], str, dict[str, Any]]:
        """The clips found by :meth:`walk` under the root :meth:`find_root` chose (no sheet)."""
        root = self.find_root(data_root)
        micro = str(self.layout.get("micro_folder", "micro"))
        if root is None:
            roots = [str(r) or "." for r in (self.layout.get("roots") or [""])]
            raise self.error(f"no SMIC-HS clip folders (s1/{micro}/negative/s1_ne_01/) under {data_root} in {roots}")
        self.chosen_root = root
        base = data_root / root if root else data_root
        classes = {str(e).lower() for e in self.spec.emotions}
        records, problems = self.walk(base, root, micro, classes)
        for record in records:
            record["cropped"] = self.is_cropped_root(root)
        return (
            records,
            problems,
            f"{self.key} built from the folders under {base}",
            {"annotation": None, "apex_method": APEX_METHOD},
        )

    def walk(
        self, base: Path, root: str, micro: str, classes: set[str]
    ) -> tuple[list[dict[str, Any]], list[ManifestProblem]]:
        """One record per clip folder, and a problem per folder that does not fit the layout."""
        records: list[dict[str, Any]] = []
        problems: list[ManifestProblem] = []
        fps = float(self.spec.raw["fps"])
        for subject_dir in sorted(p for p in base.iterdir() if p.is_dir() and _SUBJECT_FOLDER.fullmatch(p.name)):
            n = int(_SUBJECT_FOLDER.fullmatch(subject_dir.name).group(1))
            subject = canonical_subject(n)
            micro_dir = subject_dir / micro
            if not micro_dir.is_dir():
                continue
            for class_dir in sorted(p for p in micro_dir.iterdir() if p.is_dir()):
                emotion = class_dir.name.lower()
                if emotion not in classes:
                    clips = sorted(p.name for p in class_dir.iterdir() if p.is_dir()) or [None]
                    for clip in clips:
                        problems.append(
                            ManifestProblem(
                                self.key,
                                subject,
                                clip and canonical_sample(clip),
                                (
                                    f"class folder {class_dir} has an unknown name {class_dir.name!r} "
                                    "(SMIC-HS classes: "
                                    f"{', '.join(sorted(classes))}): clip {clip} cannot be labelled"
                                ),
                                "emotion",
                            )
                        )
                    continue
                for clip_dir in sorted(p for p in class_dir.iterdir() if p.is_dir()):
                    sample = canonical_sample(clip_dir.name)
                    where = clip_dir
                    match = _CLIP_FOLDER.fullmatch(clip_dir.name)
                    if match is None or int(match.group(1)) != n:
                        problems.append(
                            ManifestProblem(
                                self.key,
                                subject,
                                sample,
                                (
                                    f"clip folder {clip_dir} is not named s{n}_<class>_<number> like the folder of "
                                    f"subject {subject_dir.name}"
                                ),
                                "sample",
                            )
                        )
                        continue
                    try:
                        numbers = [number for number, _ in list_frames(clip_dir)]
                    except ClipReadError as error:
                        problems.append(ManifestProblem(self.key, subject, sample, f"{where}: {error}", "frames"))
                        continue
                    if not numbers:
                        problems.append(
                            ManifestProblem(self.key, subject, sample, f"no frames in {clip_dir}", "frames")
                        )
                        continue
                    relative = clip_dir.relative_to(base).as_posix()
                    records.append(
                        {
                            "dataset": self.key,
                            "subject": subject,
                            "sample": sample,
                            "path": f"{root}/{relative}" if root else relative,
                            "onset": numbers[0],
                            "apex": numbers[len(numbers) // 2],
                            "offset": numbers[-1],
                            "fps": fps,
                            "emotion": emotion,
                            "label": None,
                            "action_units": (),
                            "apex_estimated": True,
                            "_where": str(where),
                        }
                    )
        # One order whatever the spelling on disk (s1, s11, s2 sort differently from s01, s02, s11).
        records.sort(key=lambda r: (r["subject"], r["sample"]))
        return records, problems

    def resolve_paths(self, records: list[dict[str, Any]], data_root: Path) -> str:
        """Paths were found by the walk (under the root :meth:`find_root` chose)."""
        return getattr(self, "chosen_root", "")
