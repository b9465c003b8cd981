"""Published results to read a run against, each with the protocol it was obtained under.

These numbers come from the papers (and the MEGC2019 overview), NOT from this kit: different preprocessing,
splits of the composite and model selection make them only loosely comparable with a kit run, and several
published pipelines chose epochs on the held-out subjects (see merkit.training.fold). They are transcribed by hand:
check them against the cited paper before quoting them. A kit run on SynthME is not comparable with them at
all (a different, synthetic dataset): they are shown to give the scale of real-data scores.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PUBLISHED", "published_results"]

# method, dataset/protocol, classes, uf1, uar, source
PUBLISHED: tuple[tuple[str, str, str, float, float, str], ...] = (
    (
        "LBP-TOP (MEGC2019 baseline)",
        "MEGC2019 composite, LOSO (68 subjects)",
        "3 (neg/pos/sur)",
        0.5882,
        0.5785,
        "See et al., MEGC 2019 challenge overview, FG 2019",
    ),
    (
        "Bi-WOOF",
        "MEGC2019 composite, LOSO (68 subjects)",
        "3 (neg/pos/sur)",
        0.6296,
        0.6227,
        "as reported by Liong et al., STSTNet, FG 2019",
    ),
    (
        "Off-ApexNet",
        "MEGC2019 composite, LOSO (68 subjects)",
        "3 (neg/pos/sur)",
        0.7196,
        0.7096,
        "as reported by Liong et al., STSTNet, FG 2019",
    ),
    (
        "Dual-Inception",
        "MEGC2019 composite, LOSO (68 subjects)",
        "3 (neg/pos/sur)",
        0.7322,
        0.7278,
        "Zhou et al., FG 2019",
    ),
    ("STSTNet", "MEGC2019 composite, LOSO (68 subjects)", "3 (neg/pos/sur)", 0.7353, 0.7605, "Liong et al., FG 2019"),
    ("EMR", "MEGC2019 composite, LOSO (68 subjects)", "3 (neg/pos/sur)", 0.7885, 0.7824, "Liu et al., FG 2019"),
)


def published_results() -> pd.DataFrame:
    """The published numbers as a table (method, protocol, classes, uf1, uar, source), labelled as such."""
    table = pd.DataFrame(PUBLISHED, columns=["method", "protocol", "classes", "uf1", "uar", "source"])
    table.attrs["note"] = "published numbers from the papers, not computed by this kit"
    return table
