"""`smcvae --help` lists every subcommand with a one-line description; each has --help."""
import pytest

from smcvae_ros.cli import build_parser, main

COMMANDS = ['demo', 'train', 'eval-table', 'eval', 'restore', 'ablate', 'export', 'build-engine', 'bag-make',
            'bag-eval', 'bag-play', 'bag-record']


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(['--help'])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for cmd in COMMANDS:
        assert f'    {cmd}' in text
    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    assert sorted(sub.choices) == sorted(COMMANDS)
    assert all(h.help for h in sub._choices_actions)  # a one-line description each


@pytest.mark.parametrize('cmd', COMMANDS)
def test_each_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, '--help'])
    assert e.value.code == 0 and 'usage: smcvae ' + cmd in capsys.readouterr().out


def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
