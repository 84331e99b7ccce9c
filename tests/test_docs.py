"""The docs: the site builds strictly from freshly generated reference pages, and the README's links resolve."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)


@pytest.mark.e2e
def test_reference_pages_generate_and_the_site_builds_strictly(tmp_path):
    """`make docs` in a scratch copy: docs/gen_reference.py writes the reference pages from the code, then
    `mkdocs build --strict` (every warning an error: broken links, anchors, pages missing from the nav)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("reference"))
    shutil.copytree(ROOT / "docs" / "reference", docs / "reference",
                    ignore=shutil.ignore_patterns("cli.md", "settings.md", "api.md", "config.md"))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DREAMOPS_")},
           "DREAMOPS_HOME": str(tmp_path / "home"), "NO_MKDOCS_2_WARNING": "1"}

    gen = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--docs", str(docs)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    for name, expect in (("cli.md", "## dreamops train"), ("settings.md", "`DREAMOPS_HOME`"),
                         ("api.md", "/api/v1/training/trigger"), ("config.md", "`cma.temperature`")):
        assert expect in (docs / "reference" / name).read_text(), name

    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"),
                            "--site-dir", str(site)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    for page in ("index.html", "reference/cli.html", "reference/api.html", "results/index.html"):
        assert (site / page).is_file(), page
    assert not (tmp_path / "home").exists(), "generating the reference must not open the stores"


def test_every_relative_link_in_the_readme_points_at_an_existing_file():
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold commands, not links
    targets = [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert missing == [], f"README links to files that do not exist: {missing}"
