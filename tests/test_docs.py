"""The docs stay true: the config reference is the schema's, every example config resolves, every relative
link in README.md and docs/*.md resolves, and nothing points outside the repository."""
import pathlib
import re

from onlinepg import config as C

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_config_reference_is_current():
    text = (ROOT / "docs" / "config.md").read_text()
    table = re.search(r"<!-- config-reference:start -->\n(.*)\n<!-- config-reference:end -->", text, re.S).group(1)
    assert table == C.reference_table(), "regenerate docs/config.md's table from onlinepg.config.reference_table()"


def test_every_example_config_resolves():
    paths = sorted((ROOT / "data" / "configs").glob("*.toml"))
    assert len(paths) >= 7
    for path in paths:
        C.resolve(C.load(path))


def test_every_experiment_spec_has_a_valid_run_config():
    paths = sorted((ROOT / "data" / "configs" / "experiments").glob("*.toml"))
    assert len(paths) >= 6
    for path in paths:
        spec = C.load(path)
        assert {"experiment", "full", "small"} <= set(spec), path.name
        C.resolve(spec.get("config", {}))


# -- links ---------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)|\b(?:src|href)=\"([^\"]+)\"")


def _prose(text):
    """Markdown without code blocks and code spans (a link inside code is an example, not a link)."""
    return _CODE.sub("", _FENCE.sub("", text))


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path):
    seen, out = {}, set()
    for line in _FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"#{1,6} (.*)", line)
        if m:
            slug = _slug(m.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"theory.md", "config.md", "output.md", "sweeps.md", "lq.md", "embedding.md", "performance.md",
            "experiments.md"} <= names


def test_every_relative_link_resolves():
    bad = []
    for doc in DOCS:
        for m in _LINK.finditer(_prose(doc.read_text())):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):        # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif not dest.is_relative_to(ROOT):
                bad.append(f"{doc.relative_to(ROOT)}: {target} (outside the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_readme_links_every_doc():
    text = (ROOT / "README.md").read_text()
    missing = [p.name for p in DOCS[1:] if f"(docs/{p.name})" not in text and p.name != "README.md"]
    assert not missing, f"README.md does not link {missing}"


_SKIP_DIRS = {".git", ".venv", ".pytest_cache", "__pycache__", "build", "dist", "runs", "sweeps", "node_modules"}
# written in two halves so that this file does not match itself
_OUTSIDE = ("../" + "shared", "shared/" + "SPEC", "SPEC" + " §")


def test_nothing_refers_outside_the_repository():
    """The mathematical contract lives in docs/theory.md: no file may point at a document users do not have."""
    bad = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if not path.is_file() or any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if path.suffix in {".png", ".npz", ".parquet", ".nbi", ".nbc", ".pyc", ".whl", ".gz"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for needle in _OUTSIDE:
            for n, line in enumerate(text.splitlines(), 1):
                if needle in line:
                    bad.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not bad, "references to a document outside the repository (use docs/theory.md):\n" + "\n".join(bad)


def test_config_keys_named_in_the_docs_exist():
    """theory.md and run.md describe the algorithms by their config keys: every `section.key` they name is real,
    and so is every value they give one (`algo.variant = "explore"`)."""
    bad = []
    for name in ("theory.md", "run.md"):
        text = (ROOT / "docs" / name).read_text()
        for m in re.finditer(r"`(task|base|algo|run)\.(\w+)(?: = \"?([\w.]+)\"?)?`", text):
            sec, key, value = m.groups()
            spec = C.SCHEMA[sec].get(key)
            if spec is None or (value and spec.choices and value not in spec.choices):
                bad.append(f"docs/{name}: {m.group(0)}")
    assert not bad, "unknown config keys or values:\n" + "\n".join(bad)
