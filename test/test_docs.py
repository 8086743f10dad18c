"""The user-facing documents: links and anchors resolve, README's parameter table is the code's, no diary.

Documents: README.md, CHANGELOG.md, models/README.md and docs/*.md (the generated docs/eval/ files are data,
not documents). Anchors follow GitHub's heading slugs. No ROS, no model: this runs in well under a second.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from smcvae_ros.ros import params as P

REPO = Path(__file__).resolve().parent.parent
README = REPO / 'README.md'
DOCS = sorted([README, REPO / 'CHANGELOG.md', REPO / 'models' / 'README.md', *(REPO / 'docs').glob('*.md')])
README_MAX_LINES = 450
FIRST_COMMANDS = ['bash scripts/setup.sh && .venv/bin/smcvae demo', '.venv/bin/python -m pytest test']
# history phrasing: what the documents say is the current state, decisions are rationale in docs/design.md
FORBIDDEN = re.compile(r'session \d|work session|not adopted', re.IGNORECASE)

FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
INLINE_CODE = re.compile(r'(`+)(.+?)\1')


def prose_lines(path: Path) -> list[str]:
    """The file's lines with fenced code blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for line in path.read_text(encoding='utf-8').splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append('')
        else:
            out.append('' if fenced else line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation but - and _ dropped, spaces -> -."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)          # links and images -> their text
    text = re.sub(r'<[^>]+>', '', text)                               # inline HTML
    text = text.replace('*', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, duplicates numbered -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f'{base}-{n}')
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code (link text may wrap)."""
    text = '\n'.join(INLINE_CODE.sub('', line) for line in prose_lines(path))
    return [(text.count('\n', 0, m.start(1)) + 1, m.group(1)) for m in LINK.finditer(text)]


def test_slug_rules():
    assert slug('Install on a vehicle (colcon workspace)') == 'install-on-a-vehicle-colcon-workspace'
    assert slug('Parameters (`config/restore.yaml`)') == 'parameters-configrestoreyaml'
    assert slug('TensorRT (`smcvae build-engine`, and automatically on first use)') == \
        'tensorrt-smcvae-build-engine-and-automatically-on-first-use'
    assert slug('[0.1.0] - 2026-12-01') == '010---2026-12-01'
    assert slug('`image_topics` and **QoS**') == 'image_topics-and-qos'


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_anchors_resolve(doc: Path):
    assert doc.exists(), doc
    dead = []
    for line, target in links(doc):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.IGNORECASE):   # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition('#')
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            dead.append(f'{doc.name}:{line}: {target} (no such file)')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            dead.append(f'{doc.name}:{line}: {target} (no heading with anchor #{anchor} in {dest.name})')
    assert not dead, 'dead links:\n' + '\n'.join(dead)


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_diary(doc: Path):
    hits = [f'{doc.name}:{i}: {line.strip()}' for i, line in enumerate(doc.read_text(encoding='utf-8').splitlines(), 1)
            if FORBIDDEN.search(line)]
    assert not hits, 'history phrasing (state the current behaviour; rationale goes to docs/design.md):\n' + \
        '\n'.join(hits)


def test_readme_size_and_first_commands():
    lines = README.read_text(encoding='utf-8').splitlines()
    assert len(lines) <= README_MAX_LINES, f'README.md has {len(lines)} lines (at most {README_MAX_LINES})'
    start = next(i for i, line in enumerate(lines) if line.startswith('```'))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith('```'))
    assert start < 20, 'the two commands for a fresh machine come first'
    assert [line.strip() for line in lines[start + 1:end]] == FIRST_COMMANDS    # .ci/run runs exactly these
    ci = (REPO / '.ci' / 'run').read_text()
    assert all(cmd.split(' && ')[-1] in ci for cmd in FIRST_COMMANDS)


# ----------------------------------------------------------------------------------------------------
# README's parameter table is smcvae_ros/ros/params.py's PARAMS (names, defaults, values, [restart])

def render_default(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value or "''"
    return json.dumps(value)


def render_values(p: P.Param) -> str:
    """Choices or range as README writes them; '' = the code has neither (README's text is free there)."""
    if p.choices:
        return ', '.join(p.choices)
    if p.range is not None:
        lo, hi = p.range
        return f'{lo:g} .. {hi:g}'
    return ''


def expected_row(p: P.Param) -> str:
    """The row README.md should have for a parameter (description: edit freely after the [restart] mark)."""
    restart = '' if p.tunable else '[restart] '
    return f'| `{p.name}` | `{render_default(p.default)}` | {render_values(p)} | {restart}{p.description} |'


def cells(row: str) -> list[str]:
    return [c.strip().replace('\\|', '|') for c in re.split(r'(?<!\\)\|', row.strip())[1:-1]]


def readme_parameter_rows() -> dict[str, list[str]]:
    lines = README.read_text(encoding='utf-8').splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('## Parameters'))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith('| parameter |'))
    assert cells(lines[header])[:3] == ['parameter', 'default', 'values']
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith('|'):
            break
        c = cells(line)
        rows[c[0].strip('`')] = c
    return rows


def test_readme_parameter_table_matches_code():
    rows = readme_parameter_rows()
    expected = {p.name: p for p in P.PARAMS}
    missing, extra = sorted(set(expected) - set(rows)), sorted(set(rows) - set(expected))
    hint = '\nrows as the code has them:\n' + '\n'.join(expected_row(p) for p in P.PARAMS)
    assert not missing and not extra, f'README parameters missing: {missing}, not in the code: {extra}' + hint
    assert list(rows) == [p.name for p in P.PARAMS], 'README lists the parameters in the order of params.py' + hint
    for name, p in expected.items():
        c = rows[name]
        default = c[1].strip('`')
        parsed = '' if default == "''" else yaml.safe_load(default)
        assert parsed == p.default and type(parsed) is type(p.default), \
            f'{name}: README default {c[1]!r}, code {p.default!r}' + hint
        if render_values(p):
            assert c[2] == render_values(p), f'{name}: README values {c[2]!r}, code {render_values(p)!r}' + hint
        assert c[3].startswith('[restart]') == (not p.tunable), \
            f'{name}: [restart] marks exactly the read-only parameters (tunable={p.tunable})' + hint
