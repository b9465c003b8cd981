"""The rows of each emulated release: which clips exist, their subjects, emotions and planted faults.

Counts follow ``REAL_FORMATS.md`` (the real releases' clip, subject and emotion counts), arranged so that
the MEGC2019 composite comes out as published: CASME II 145 (88/32/25) over 24 subjects, SAMM 133
(92/26/15) over 28, SMIC-HS 164 (70/51/43) over 16. Clip names, frame numbers and which subject has which
emotion are INVENTED (deterministic round robin); no real row is reproduced. ``small=True`` gives a few
clips per class over a handful of subjects, with the same named faults, for quick tests.

Faults (``ReleaseRow.fault``), as the real sheets have them:

================  ==========================================================================================
``apex_slash``    CASME II: the apex cell is ``/`` (subject 4, EP12_01f)
``apex_onset``    CASME II: apex = onset (subject 5, EP09_05f)
``apex_offset``   CASME II: apex = offset, no fall phase (four clips)
``apex_outside``  SAMM 028_4_1 (apex 1143 > offset 1134), 032_3_1 (1930 < onset 4896); CAS(ME)^3 two rows
``onset_after``   CAS(ME)^3: onset written after the offset (two rows)
``offset_zero``   CAS(ME)^3: offset written 0 (three rows)
================  ==========================================================================================
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CASME2_2014_EMOTIONS",
    "CASME3A_EMOTIONS",
    "SAMM_EMOTIONS",
    "SAMM_SUBJECTS",
    "SMIC_CLASSES",
    "SMIC_SUBJECTS",
    "ReleaseRow",
    "casme2_rows",
    "casme3a_rows",
    "samm_rows",
    "smic_hs_rows",
]

#: CASME II 2014 sheet: clips per emotion (255 over 26 subjects).
CASME2_2014_EMOTIONS = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "repression": 27,
    "surprise": 25,
    "sadness": 7,
    "fear": 2,
}
#: SAMM micro sheet v2: clips per emotion, capitalised as in the sheet (159 over 29 subjects).
SAMM_EMOTIONS = {
    "Anger": 57,
    "Other": 26,
    "Happiness": 26,
    "Surprise": 15,
    "Contempt": 12,
    "Disgust": 9,
    "Fear": 8,
    "Sadness": 6,
}
# Assumption: 29 subject ids in 006..037; which three numbers are absent is invented (028 and 032 must exist).
SAMM_SUBJECTS = tuple(n for n in range(6, 38) if n not in (27, 29, 31))
#: SMIC-HS subjects and classes (164 clips).
SMIC_SUBJECTS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20)
SMIC_CLASSES = {"negative": 70, "positive": 51, "surprise": 43}
# Assumption: the per-emotion split of the CAS(ME)^3 v2 label file is not in REAL_FORMATS.md; this one is
# invented (860 rows, lower case, "Others" capitalised in three of the others rows).
CASME3A_EMOTIONS = {"disgust": 250, "others": 170, "surprise": 169, "fear": 86, "anger": 64, "happy": 64, "sad": 57}
CASME3A_SUBJECTS = 94

_SMALL_CASME2 = {"others": 3, "disgust": 4, "happiness": 3, "repression": 3, "surprise": 3, "sadness": 1, "fear": 1}
_SMALL_SAMM = {
    "Anger": 3,
    "Other": 3,
    "Happiness": 3,
    "Surprise": 3,
    "Contempt": 3,
    "Disgust": 1,
    "Fear": 1,
    "Sadness": 1,
}
_SMALL_SMIC = {"negative": 4, "positive": 4, "surprise": 4}
_SMALL_CASME3A = {"disgust": 3, "others": 3, "surprise": 3, "fear": 2, "anger": 2, "happy": 3, "sad": 2}


@dataclass(frozen=True)
class ReleaseRow:
    """One clip of an emulated release, before timing is drawn.

    ``sample`` is the Filename cell / clip folder (CAS(ME)^3: the recording letter). ``timing`` forces
    ``(onset, true apex, offset)`` frame numbers (the SAMM faults need their published values);
    ``sheet_apex`` forces the apex the sheet writes.
    """

    subject: int
    sample: str
    emotion: str
    fault: str = ""
    timing: tuple[int, int, int] | None = None
    sheet_apex: int | None = None


def _round_robin(counts: dict[str, int], subjects: Sequence[int]) -> list[tuple[int, str]]:
    """(subject, emotion) pairs: emotions in the order of ``counts``, subjects cycling."""
    emotions = [e for e, n in counts.items() for _ in range(n)]
    return list(zip(itertools.cycle(subjects), emotions))


def casme2_rows(small: bool = False) -> list[ReleaseRow]:
    """CASME II (2014 emotions): 255 rows / 26 subjects, or a small subset over subjects 1..5.

    Subjects 25 and 26 have only others/fear/sadness clips (the composite has 24 subjects); subject 24 has
    three sadness clips (the ones the 2019 sheet relabels surprise).
    """
    counts = dict(_SMALL_CASME2 if small else CASME2_2014_EMOTIONS)
    kept_subjects = range(1, 6) if small else range(1, 25)
    all_subjects = range(1, 6) if small else range(1, 27)
    pairs = [(4, "disgust"), (5, "disgust")]  # the two clips without a usable apex (named faults)
    counts["disgust"] -= 2
    if not small:
        pairs += [(24, "sadness")] * 3
        counts["sadness"] -= 3
    kept = {e: counts.pop(e) for e in ("disgust", "repression", "happiness", "surprise")}
    pairs += _round_robin(kept, kept_subjects) + _round_robin(counts, all_subjects)
    taken: dict[int, set[int]] = {4: {12}, 5: {9}}
    rows: list[ReleaseRow] = []
    apex_offset = 0
    for i, (subject, emotion) in enumerate(pairs):
        if i == 0:
            rows.append(ReleaseRow(4, "EP12_01f", emotion, "apex_slash"))
            continue
        if i == 1:
            rows.append(ReleaseRow(5, "EP09_05f", emotion, "apex_onset"))
            continue
        used = taken.setdefault(subject, set())
        episode = next(e for e in itertools.count(1) if e not in used)
        used.add(episode)
        suffix = "f" if (subject + episode) % 3 == 0 else ""
        fault = ""
        if emotion == "happiness" and apex_offset < 4:  # four clips with apex = offset
            fault, apex_offset = "apex_offset", apex_offset + 1
        rows.append(ReleaseRow(subject, f"EP{episode:02d}_{(subject + episode) % 7 + 1:02d}{suffix}", emotion, fault))
    return rows


def casme2_2019_changes(rows: Sequence[ReleaseRow]) -> set[tuple[int, str]]:
    """The (subject, sample) clips the 2019 sheet relabels sadness -> surprise: subject 24's first three
    sadness clips (the ones :func:`casme2_rows` plants)."""
    sadness = [(r.subject, r.sample) for r in rows if r.subject == 24 and r.emotion == "sadness"]
    return set(sadness[:3])


def samm_rows(small: bool = False) -> list[ReleaseRow]:
    """SAMM: 159 rows / 29 subjects (one of them with only Other clips), or a small subset.

    028_4_1 and 032_3_1 carry the circulating copy's apexes outside onset..offset (1143 > 1134 and
    1930 < 4896); their true apexes are the public toolkit's corrections (1105, 4945).
    """
    counts = dict(_SMALL_SAMM if small else SAMM_EMOTIONS)
    subjects = (28, 32, 6, 7) if small else SAMM_SUBJECTS
    other = counts.pop("Other")
    pairs = _round_robin(counts, subjects[:-1]) + _round_robin({"Other": other}, subjects[::-1])
    seen: dict[int, int] = {}
    rows = []
    for subject, emotion in pairs:
        k = seen[subject] = seen.get(subject, 0) + 1  # k-th clip of the subject -> inducement code k
        name = f"{subject:03d}_{k}_{(subject + k) % 3 + 1}"
        if (subject, k) == (28, 4 if not small else 2):
            rows.append(ReleaseRow(subject, "028_4_1", emotion, "apex_outside", (1085, 1105, 1134), 1143))
        elif (subject, k) == (32, 3 if not small else 1):
            rows.append(ReleaseRow(subject, "032_3_1", emotion, "apex_outside", (4896, 4945, 4990), 1930))
        else:
            rows.append(ReleaseRow(subject, name, emotion))
    return rows


def smic_hs_rows(small: bool = False) -> list[ReleaseRow]:
    """SMIC-HS: 164 clips / 16 subjects (70/51/43), or a small subset; ``sample`` spelled ``s1_ne_01``."""
    counts = _SMALL_SMIC if small else SMIC_CLASSES
    subjects = SMIC_SUBJECTS[:4] if small else SMIC_SUBJECTS
    short = {"negative": "ne", "positive": "po", "surprise": "sur"}
    seen: dict[tuple[int, str], int] = {}
    rows = []
    for subject, emotion in _round_robin(counts, subjects):
        k = seen[(subject, emotion)] = seen.get((subject, emotion), 0) + 1
        rows.append(ReleaseRow(subject, f"s{subject}_{short[emotion]}_{k:02d}", emotion))
    return rows


def casme3a_rows(small: bool = False) -> list[ReleaseRow]:
    """CAS(ME)^3 part A v2: 860 rows / 94 subjects (or a small subset), three MEs per recording letter.

    Seven faulty rows: two onsets after their offsets, three offsets of 0, two apexes outside onset..offset.
    """
    counts = _SMALL_CASME3A if small else CASME3A_EMOTIONS
    subjects = range(1, 5) if small else range(1, CASME3A_SUBJECTS + 1)
    faults = ["onset_after"] * 2 + ["offset_zero"] * 3 + ["apex_outside"] * 2
    seen: dict[int, int] = {}
    rows = []
    capitalised = 0
    for i, (subject, emotion) in enumerate(_round_robin(counts, subjects)):
        k = seen[subject] = seen.get(subject, 0) + 1
        letter = "abcdefghijklmnopqrstuvwxyz"[(k - 1) // 3]
        if emotion == "others" and capitalised < 3:
            emotion, capitalised = "Others", capitalised + 1
        fault = faults.pop(0) if faults and i % 5 == 3 else ""
        rows.append(ReleaseRow(subject, letter, emotion, fault))
    return rows
