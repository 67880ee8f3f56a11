"""The README, BENCHMARKS.md and docs/ pages: every link resolves inside the repository, and
every command shown runs as written on a fresh clone."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _without_code(text: str) -> str:
    """The prose: fenced blocks and inline code hold commands, not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1 on repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_the_docs_pages_exist():
    assert {p.name for p in (ROOT / "docs").glob("*.md")} >= {"api.md", "settings.md", "deployment.md",
                                                               "how-it-works.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading_in_the_repository(page):
    broken = []
    for target in LINK.findall(_without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address, outside the repository by intent
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_relative_to(ROOT.resolve()) or not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name} links to what is not in the repository: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_use_the_venvs_python(page):
    """A bare `python app.py` fails on a fresh clone (the system python lacks the packages)."""
    bare = re.findall(r"(?<![\w/.-])python3? [\w/-]+\.py", page.read_text())
    assert not bare, f"{page.name}: use .venv/bin/python or a make target: {bare}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_points_outside_the_repository(page):
    """Issue numbers, notes, commit ids and documents that are not in the repository mean nothing
    to a reader of a clone; an upstream project's issue is cited by its full address."""
    prose = LINK.sub("", page.read_text())  # a linked reference carries its own address
    found = re.findall(r"\b(?:issue|PR|pull request)\s+#?\d+|founding document|\bnotes?\b[^.\n]*\.(?:md|txt)\b"
                       r"|\bcommit [0-9a-f]{7,40}\b", prose, re.I)
    assert not found, f"{page.name}: {found}"


def test_every_pinned_package_has_a_row_in_the_readmes_licence_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Dependencies and their licences", 1)[1].split("\n## ", 1)[0]
    named = {name.strip().lower() for row in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in row.split(",")}
    pinned = {re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower()
              for name in ("requirements.txt", "requirements-dev.txt")
              for line in (ROOT / name).read_text().splitlines() if line.strip() and line[0] not in "#-"}
    assert pinned - named == set(), "add a row to README's \"Dependencies and their licences\""


def test_the_h100_target_is_stated_once_in_benchmarks():
    """Two different H100 targets (0.5 s a panel in one place, 2.5 s a board in another) left a reader
    to guess; the figures live in BENCHMARKS' "The H100 target" and every other page links there."""
    statements = [(page.name, paragraph[:80]) for page in PAGES for paragraph in page.read_text().split("\n\n")
                  if "H100" in paragraph and re.search(r"\btargets?\b", paragraph, re.I)
                  and re.search(r"(<=|at most|within|under)\s+\**\d", paragraph)]
    assert [name for name, _ in statements] == ["BENCHMARKS.md"], statements


def test_the_history_answers_shape_is_stated_exactly():
    """docs/api.md names every key of a history row, and no other."""
    from types import SimpleNamespace

    from serializers import summary_json

    row = {"id": "b1", "title": "t", "status": "done", "created_at": "2026-01-01T00:00:00Z", "frames_total": 1,
           "frames_done": 1, "params": SimpleNamespace(preset=SimpleNamespace(label="Fast")), "thumb_frame": None,
           "thumb_version": None}
    api = (ROOT / "docs" / "api.md").read_text()
    stated = re.search(r"^\| `GET /api/storyboards` \|.*?each `\{(.*?)\}`\. \|$", api, re.M).group(1)
    assert set(re.findall(r'"(\w+)"', stated)) - {"self"} == set(summary_json(row))


def test_the_deployment_page_starts_redis_without_docker_with_the_studios_password():
    page = (ROOT / "docs" / "deployment.md").read_text()
    commands = "\n".join(re.findall(r"```sh\n(.*?)```", page, re.S))
    assert re.search(r"^redis-server .*--requirepass \"\$STORYBOARD_QUEUE_PASSWORD\"", commands, re.M)
    assert "apt-get install redis-server" in commands
    prose = " ".join(page.split())
    assert re.search(r"own `requirepass`.{0,200}on loopback.{0,60}optional", prose, re.I)  # said beside the commands
