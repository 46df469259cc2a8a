"""The argument parser of every command: a bad flag is one line, with a near-miss suggestion.

argparse prints the whole usage and then the error; here the error is one line
(``convdrop compare: error: argument --optimizer: invalid choice 'adam' (choose from
'sgd', 'adamw'); did you mean 'adamw'?``) and ``--help`` is named for the rest, as for
every other user error. Light on purpose: ``convdrop --help`` imports it.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from convdrop.errors import did_you_mean

__all__ = ["OneLineParser", "one_line_error"]

EXIT_USER_ERROR = 2  # as argparse
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (?P<args>.*)")


def _choices(text: str) -> list[str]:
    """``"'sgd', 'adamw'"`` (3.12+ quotes them) or ``"sgd, adamw"`` as a list."""
    return [part.strip().strip("'") for part in text.split(",") if part.strip()]


def one_line_error(message: str, flags: list[str]) -> str:
    """argparse's message with a "did you mean" where a choice or flag is close."""
    choice = _INVALID_CHOICE.search(message)
    if choice:
        options = _choices(choice["choices"])
        head = message[:choice.start()]
        return (f"{head}invalid choice {choice['value']!r} (choose from {choice['choices']})"
                f"{did_you_mean(choice['value'], options)}")
    unknown = _UNRECOGNIZED.search(message)
    if unknown:
        first = unknown["args"].split()[0].split("=")[0]
        if not first.startswith("--"):
            return message
        close = did_you_mean(first[2:], [flag[2:] for flag in flags])  # not on the dashes
        return message + close.replace("mean '", "mean '--")
    return message


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, then exit 2."""

    def long_flags(self) -> list[str]:
        """This parser's ``--flags`` and its subcommands' (argparse reports a stray flag at
        the top, which does not know the subcommand)."""
        flags = [flag for flag in self._option_string_actions if flag.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += [f for f in sub._option_string_actions if f.startswith("--")]
        return list(dict.fromkeys(flags))

    def error(self, message: str) -> NoReturn:
        line = one_line_error(message, self.long_flags())
        sys.stderr.write(f"{self.prog}: error: {line} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)
