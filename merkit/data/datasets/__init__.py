"""Dataset builders: annotation sheet + frames on disk -> validated manifest.

``build_manifest("casme2", "/data/CASME2", "casme2_5class")`` reads ``data_manifests/casme2.yaml`` (which file
and sheet, header, columns, layout, fps, class maps, errata, exclusions, expected counts), then the sheet,
and returns a manifest (see :mod:`merkit.data.manifest`). The yaml's ``builder:`` names the kind of release
(:data:`BUILDERS`): ``sheet`` (:mod:`.builder`; every sheet difference is declared in the yaml), ``smic_hs``
(:mod:`.smic_hs`, the folders of a release without a sheet), ``megc2019`` (:mod:`.megc2019`, the composite
and its official ground-truth file), ``flow_folder`` (:mod:`.flow_folder`). The shared steps: :mod:`.cells`,
:mod:`.faults`, :mod:`.finish`.
``$MERKIT_MANIFESTS`` points at another folder of dataset files.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike

import pandas as pd

from merkit.data.datasets import flow_folder, megc2019
from merkit.data.datasets.builder import SheetBuilder
from merkit.data.datasets.faults import DEFAULT_ON_PROBLEM, ON_PROBLEM
from merkit.data.datasets.finish import PROBLEM_COLUMNS, problems_table, write_problems
from merkit.data.datasets.megc2019 import (
    build_megc2019,
    compare_ground_truth,
    read_megc_ground_truth,
    write_megc_ground_truth,
)
from merkit.data.datasets.smic_hs import SmicHsBuilder
from merkit.data.datasets.spec import (
    DatasetSpec,
    list_spec_files,
    load_spec,
    manifests_dir,
)
from merkit.data.manifest import ManifestError, ManifestProblem
from merkit.errors import MerkitError, MerkitPermissionError

__all__ = [
    "DataReadError",
    "DEFAULT_ON_PROBLEM",
    "ON_PROBLEM",
    "PROBLEM_COLUMNS",
    "build_manifest",
    "compare_ground_truth",
    "problems_table",
    "write_problems",
    "build_megc2019",
    "list_datasets",
    "list_label_maps",
    "load_spec",
    "manifests_dir",
    "read_megc_ground_truth",
    "write_megc_ground_truth",
]


class DataReadError(MerkitPermissionError):
    """A file or folder of a dataset copy (the data root, a sheet, a clip folder) cannot be read: its
    permissions do not let this user in. The message names it."""


#: ``builder:`` key of a dataset yaml (the kind of release) -> the function that builds it.
BUILDERS: dict[str, Callable[..., pd.DataFrame]] = {
    "sheet": SheetBuilder.build_spec,
    "smic_hs": SmicHsBuilder.build_spec,
    "megc2019": megc2019.build,
    "flow_folder": flow_folder.build,
}


def list_datasets() -> list[str]:
    """Dataset keys with a file in :func:`manifests_dir` (``casme2``, ``megc2019``, ``samm``, ...)."""
    return list(list_spec_files())


def list_label_maps(dataset: str) -> list[str]:
    """The class mappings (emotion -> label) a dataset declares (``casme2`` -> ``['casme2_5class']``).

    Not to be confused with the fold protocols (LOSO, LODO, ...) of :func:`merkit.evaluation.splits.list_protocols`.
    """
    return list(load_spec(dataset).label_maps)


def build_manifest(
    dataset: str,
    data_root: str | PathLike,
    label_map: str | None = None,
    *,
    annotation: str | PathLike | None = None,
    strict: bool = True,
    on_problem: str = DEFAULT_ON_PROBLEM,
) -> pd.DataFrame:
    """Build and validate the manifest of ``dataset`` from the copy under ``data_root``.

    ``label_map`` (one of :func:`list_label_maps`) maps emotions to labels and drops the emotions it leaves
    out; without it every sample is kept and ``label`` is ``<NA>``; its name goes in ``df.attrs['label_map']``.
    ``annotation`` names the sheet when it is not where the dataset file looks (absolute, or relative to
    ``data_root``; for ``megc2019`` a mapping part -> sheet). Paths in the result are relative to ``data_root``.

    Every problem (unparsable rows, unknown emotions, apex outside onset..offset, missing frames, known
    faults, counts that differ from the expected ones) names dataset, subject and sample (and the sheet row
    where there is one). ``on_problem`` says what to do about them:

    - ``"fix"`` (default, :data:`DEFAULT_ON_PROBLEM`): apply the errata and rule-based repairs the dataset yaml
      declares (``errata:``, ``repairs:``), then report whatever is left;
    - ``"error"``: nothing is changed; every problem is reported;
    - ``"drop"``: leave out every sample with a problem (count differences are then logged, not raised).

    ``strict=True`` raises one :class:`~merkit.data.manifest.ManifestError` listing the problems left;
    ``strict=False`` returns the manifest with them in ``df.attrs['problems']``. What was fixed, dropped or
    left out by a rule is in ``df.attrs['data_problems']`` (:func:`problems_table`; :func:`write_problems`
    writes ``data_problems.csv``). A sheet that cannot be read at all (missing file, wrong sheet, no header
    row) raises in either mode; a file or folder this user may not read raises :class:`DataReadError` naming it.
    """
    spec: DatasetSpec = load_spec(dataset)
    builder = BUILDERS.get(spec.builder)
    if builder is None:
        raise ManifestError(
            [
                ManifestProblem(
                    dataset, None, None, f"{spec.file}: unknown builder {spec.builder!r}; known: {sorted(BUILDERS)}"
                )
            ]
        )
    try:
        return builder(spec, data_root, label_map, annotation=annotation, strict=strict, on_problem=on_problem)
    except MerkitError:
        raise
    except PermissionError as error:  # a folder or sheet of the copy this user may not read: name it
        raise DataReadError(
            f"{dataset}: cannot read {error.filename or data_root} ({error.strerror or 'permission denied'}); "
            "give your user read access to the dataset copy"
        ) from None
