"""The docs tell the truth about the code: docs/methods.md covers every registered estimator, every `docs/methods.md §N`
cited in the repository names a section that exists, and no doc or test holds a path of one machine."""

import re
from pathlib import Path

import pytest

from analysis.report import _store_name
from passk_exp.estimators import REGISTRY

REPO = Path(__file__).resolve().parents[1]
METHODS = REPO / "docs" / "methods.md"
CITATION = re.compile(r"docs/methods\.md §(\d+)(?:[–-]§(\d+))?")
# Absolute paths that exist on one machine only (a home, root's home, this project's work tree, a scratch store).
MACHINE_PATH = re.compile(r"(?<![\w.$])/(?:work|home|root)/|sqlite:////tmp/")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt"}


def _text_files(*roots: str):
    for root in roots:
        path = REPO / root
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        yield from (p for p in files if p.resolve() != Path(__file__).resolve())


def _sections() -> set[int]:
    return {int(m) for m in re.findall(r"^## (\d+)\. ", METHODS.read_text(encoding="utf-8"), flags=re.M)}


def test_methods_doc_has_a_formula_for_every_registered_estimator():
    text = METHODS.read_text(encoding="utf-8")
    missing = [name for name in sorted(REGISTRY) if f"**{name}**" not in text and f"`{name}`" not in text]
    assert not missing, f"docs/methods.md does not document {missing}"


def test_every_cited_section_of_the_methods_doc_exists():
    sections = _sections()
    assert set(range(12)) <= sections
    bad = []
    for path in _text_files("passk_exp", "tests", "conf", "sweeps", "docs", "bench", "analysis", "README.md"):
        for m in CITATION.finditer(path.read_text(encoding="utf-8")):
            cited = {int(g) for g in m.groups() if g is not None}
            if not cited <= sections:
                bad.append(f"{path.relative_to(REPO)}: {m.group(0)}")
    assert not bad, bad


@pytest.mark.parametrize("root", ["README.md", "docs", "tests", "bench", "sweeps", "conf"])
def test_no_doc_or_test_holds_a_path_of_one_machine(root):
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}"
        for path in _text_files(root)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not hits, hits


def test_reports_name_a_local_store_by_its_file_only():
    assert _store_name("sqlite:////some/where/mlflow.db") == "the sqlite store `mlflow.db`"
    assert _store_name("http://host:5000") == "`http://host:5000`"
