"""Lint as ament_python packages do (flake8, pep257) and Python 3.10 compatibility for ROS 2 Humble."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# settings: setup.cfg [flake8], [pydocstyle]
SOURCES = ['smcvae_ros', 'test', 'bench', 'launch', 'scripts', 'setup.py']


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    """The tool's console entry point in this interpreter (vermin has no `python -m` form)."""
    entry = {'flake8': 'flake8.main.cli', 'pydocstyle': 'pydocstyle.cli', 'vermin': 'vermin.main'}[tool]
    code = f'import sys; from {entry} import main; sys.argv[0] = {tool!r}; sys.exit(main())'
    return subprocess.run([sys.executable, '-c', code, *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.linter
def test_flake8():
    res = run('flake8', *SOURCES)
    assert res.returncode == 0, f'flake8 found:\n{res.stdout}{res.stderr}'


@pytest.mark.linter
def test_pep257():
    res = run('pydocstyle', *SOURCES)
    assert res.returncode == 0, f'pydocstyle found:\n{res.stdout}{res.stderr}'


@pytest.mark.linter
def test_python_3_10_compatible():
    res = run('vermin', '-t=3.10-', '--no-tips', '--violations', *SOURCES)
    assert res.returncode == 0, f'vermin: needs a Python newer than 3.10:\n{res.stdout}{res.stderr}'
