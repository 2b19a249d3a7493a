"""``alembic-pgsafe lint``: the linter's command line, as teams know it from other linters.

    alembic-pgsafe lint [ALEMBIC_INI] [--format text|json|github] [--since REV]
    alembic-pgsafe lint --list-rules
    alembic-pgsafe lint --explain RULE

Settings, in ``pyproject.toml`` beside alembic.ini (the command line wins)::

    [tool.alembic-pgsafe.lint]
    since = "3f2a9c1d7e42"          # judge only the revisions after this one (a baseline)
    ignore = ["json-column"]        # rules not reported at all, the toolkit's or squawk's
    severity = { truncate = "warning" }   # reported, but the exit status stays 0
    metadata = "my_service.models:Base"   # the models: names checked against their convention

Exit status: 0 when no finding is an error (warnings are printed), 1 when one is (or the
history has two heads), 2 when lint cannot run (squawk missing, ``--since`` names no revision,
a rule ``--explain`` does not know, an invalid setting).
"""

import argparse
import importlib
import json
import os
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from pydantic import BaseModel, Field, ValidationError

from alembic_pgsafe.helpers import TOOLKIT_RULES, WHOLE_TABLE_DML
from alembic_pgsafe.history import heads_message
from alembic_pgsafe.lint import FIXES, Finding, lint, squawk_binary
from alembic_pgsafe.settings import PROJECT_ROOT, PYPROJECT_TABLE

__all__ = ["RULES", "LintSettings", "Reported", "lint_settings", "main"]

Severity = Literal["error", "warning"]
RULES: dict[str, str] = {
    WHOLE_TABLE_DML: "an UPDATE or DELETE of a whole table in one statement: one long"
    " transaction, its row locks held to the end, a burst of WAL",
    "dml-after-ddl": "rows changed in the transaction that also changed the table's definition:"
    " the DDL's lock is held for the whole data change",
    "dynamic-sql": "SQL that cannot be checked (a DO block, EXECUTE): nothing says what it locks",
    "vacuum-full": "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
    "cluster": "CLUSTER rewrites the table under ACCESS EXCLUSIVE",
    "lock-table": "LOCK TABLE holds a lock for the rest of the transaction",
    "truncate": "TRUNCATE takes ACCESS EXCLUSIVE and empties the table for every release",
    "json-column": "a json column: no equality operator (DISTINCT, UNION, GROUP BY fail), no"
    " index; jsonb is what to use",
    "exclusion-constraint": "an exclusion constraint added to a table that has rows: no NOT"
    " VALID, so reads and writes wait while every row is checked",
    "rename-enum-value": "a renamed enum value: the running release's writes of the old value fail",
    "rename-schema": "a renamed schema: every query naming the old one fails at once",
    "table-rewrite": "a form of ALTER TABLE that rewrites the table under ACCESS EXCLUSIVE",
    "value-to-write": "a revision make revision wrote with a value still to be written",
    "cannot-render": "a revision whose offline SQL cannot be rendered, so nothing checks it",
    "naming-convention": "an index or constraint named against the models' naming convention"
    " (the metadata setting names the models): autogenerate then renames or drops it",
}
"""The toolkit's own rules; squawk's are listed by ``--list-rules`` where the toolkit adds its
fix to squawk's (the others are squawk's as its documentation says them)."""
assert set(RULES) == TOOLKIT_RULES, "every toolkit rule needs a line here"  # noqa: S101


class LintSettings(BaseModel):
    """``[tool.alembic-pgsafe.lint]`` of pyproject.toml."""

    model_config = {"extra": "forbid"}

    since: str | None = None
    """Judge only the revisions after this one: an existing history is not re-judged."""
    ignore: list[str] = Field(default_factory=list)
    """Rules not reported at all."""
    severity: dict[str, Severity] = Field(default_factory=dict)
    """Per rule: ``error`` (the default; the exit status is 1) or ``warning``."""
    metadata: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")
    """``module:attribute`` of the models' ``MetaData`` (or of the declarative base that holds
    it): its naming convention is what the naming-convention rule checks names against."""


SEPARATORS = {"os": re.escape(os.pathsep), "space": " ", "newline": "\n", "colon": ":"}
SEPARATORS |= {"semicolon": ";", "comma": ","}
"""alembic.ini's ``path_separator`` choices; without one, Alembic splits on spaces and commas."""


def naming_convention(alembic_ini: Path, metadata: str | None) -> dict[str, Any] | None:
    """The naming convention of the ``metadata`` setting's MetaData, imported as env.py
    imports the models: with alembic.ini's ``prepend_sys_path`` (and its folder) on the path."""
    if metadata is None:
        return None
    module_name, _, attributes = metadata.partition(":")
    config = Config(alembic_ini)
    prepended = config.get_alembic_option("prepend_sys_path") or ""
    separator = SEPARATORS.get(config.get_alembic_option("path_separator") or "", r"[\s,]+")
    for path in [str(alembic_ini.parent), *re.split(separator, prepended)]:
        if path.strip() and path.strip() not in sys.path:
            sys.path.insert(0, path.strip())
    try:
        found: Any = importlib.import_module(module_name)
        for attribute in attributes.split("."):
            found = getattr(found, attribute)
    except (ImportError, AttributeError) as exc:
        msg = f"[tool.alembic-pgsafe.lint] metadata = {metadata!r} cannot be imported: {exc}"
        raise ValueError(msg) from exc
    found = getattr(found, "metadata", found)
    if not isinstance(found, sa.MetaData):
        msg = f"[tool.alembic-pgsafe.lint] metadata = {metadata!r} is not a MetaData"
        raise ValueError(msg)
    return dict(found.naming_convention)


def lint_settings(root: Path) -> LintSettings:
    """The ``[tool.alembic-pgsafe.lint]`` table of ``root``'s pyproject.toml, if any."""
    try:
        with (root / "pyproject.toml").open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        return LintSettings()
    except tomllib.TOMLDecodeError as exc:
        msg = f"pyproject.toml is not valid TOML: {exc}"
        raise ValueError(msg) from None
    table: Any = document
    for key in (*PYPROJECT_TABLE, "lint"):
        table = table.get(key, {}) if isinstance(table, dict) else {}
    return LintSettings.model_validate(table)


@dataclass(frozen=True)
class Reported:
    finding: Finding
    severity: Severity

    def as_json(self) -> dict[str, Any]:
        fix = self.finding.fix
        return {
            "file": self.finding.revision_file,
            "direction": self.finding.direction,
            "rule": self.finding.rule,
            "severity": self.severity,
            "message": self.finding.message,
            "statement": self.finding.statement,
            "fix": fix.advice,
            "helper": fix.helper,
            "section": fix.section,
        }

    def text(self) -> str:
        report = self.finding.report()
        return report if self.severity == "error" else f"warning: {report}"

    def github(self) -> str:
        """A GitHub Actions workflow command: an annotation on the revision's file."""
        finding = self.finding
        title = f"{finding.rule} ({finding.direction})"
        message = f"{finding.message}. Statement: {finding.statement}. Fix: {finding.fix}"
        where = f"file={_property(finding.revision_file)},title={_property(title)}"
        return f"::{self.severity} {where}::{_data(message)}"


def _data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(value: str) -> str:
    return _data(value).replace(":", "%3A").replace(",", "%2C")


def judged_files(script: ScriptDirectory, since: str, root: Path) -> set[str]:
    """The revision files after ``since`` (relative to ``root``, as findings name them)."""
    try:
        newer = list(script.iterate_revisions("heads", since))
    except (CommandError, RevisionError) as exc:
        msg = f"--since {since}: {exc}"
        raise ValueError(msg) from None
    files = set()
    for revision in newer:
        if revision.revision == since:
            continue
        path = Path(str(revision.path)).resolve()
        try:
            files.add(str(path.relative_to(root.resolve())))
        except ValueError:
            files.add(str(path))
    return files


def list_rules() -> str:
    lines = ["The toolkit's rules (squawk's rules apply too: https://squawkhq.com/docs/rules):"]
    lines += [f"  {rule}: {summary}" for rule, summary in sorted(RULES.items())]
    lines.append("squawk's rules the toolkit gives its own fix for:")
    lines += [f"  {rule}" for rule in sorted(set(FIXES) - set(RULES))]
    return "\n".join(lines)


def explain(rule: str) -> str:
    if rule not in FIXES:
        known = "alembic-pgsafe lint --list-rules"
        msg = f"--explain {rule}: no such rule of the toolkit's or with its fix ({known})"
        raise ValueError(msg)
    fix = FIXES[rule]
    what = RULES.get(rule, "squawk's rule (its documentation says why)")
    helper = f"\nThe toolkit's helper: {fix.helper}" if fix.helper else ""
    return f"{rule}: {what}.\nFix: {fix.advice}.\nPlaybook: section '{fix.section}'.{helper}"


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe lint",
        description="Check every revision's upgrade and downgrade SQL (rendered offline, no"
        " database) with squawk and the toolkit's rules; each finding says why and the fix.",
        epilog="Settings: [tool.alembic-pgsafe.lint] in pyproject.toml (since, ignore, severity,"
        " metadata)."
        " Exit status: 0 no error, 1 errors found (or two heads), 2 lint cannot run.",
    )
    parser.add_argument(
        "alembic_ini",
        nargs="?",
        type=Path,
        default=PROJECT_ROOT / "alembic.ini",
        help="the project's alembic.ini (default: the one in the working directory)",
    )
    parser.add_argument("--format", choices=("text", "json", "github"), default="text")
    parser.add_argument("--since", metavar="REV", help="judge only the revisions after REV")
    parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    parser.add_argument("--explain", metavar="RULE", help="what RULE means and its fix")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    options = _arguments(argv)
    try:
        if options.list_rules:
            print(list_rules())
            return 0
        if options.explain:
            print(explain(options.explain))
            return 0
        return _lint(options)
    except ValueError as exc:  # pydantic's ValidationError is one too
        line = _one_line(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
        print(f"lint: {line}", file=sys.stderr)
        return 2


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors]
    return "[tool.alembic-pgsafe.lint] in pyproject.toml: " + "; ".join(parts)


def _lint(options: argparse.Namespace) -> int:
    alembic_ini: Path = options.alembic_ini.resolve()
    root = alembic_ini.parent
    settings = lint_settings(root)
    squawk = squawk_binary()
    if squawk is None:
        msg = "squawk is not installed: install alembic-pgsafe[lint] (squawk-cli and pglast)"
        raise ValueError(msg)
    script = ScriptDirectory.from_config(Config(alembic_ini))
    if several := heads_message(script, root):
        print(f"lint: {several}")
        return 1
    since = options.since or settings.since
    judged = judged_files(script, since, root) if since else None
    naming = naming_convention(alembic_ini, settings.metadata)
    findings, checked = lint(alembic_ini, squawk, naming=naming)
    reported = [
        Reported(finding, settings.severity.get(finding.rule, "error"))
        for finding in findings
        if finding.rule not in settings.ignore
        and (judged is None or finding.revision_file in judged)
    ]
    errors = sum(1 for item in reported if item.severity == "error")
    if options.format == "json":
        document = {
            "checked": checked,
            "since": since,
            "errors": errors,
            "warnings": len(reported) - errors,
            "findings": [item.as_json() for item in reported],
        }
        print(json.dumps(document, indent=2))
    else:
        for item in reported:
            print(item.github() if options.format == "github" else item.text())
        scope = f"{len(judged)} of {checked}" if judged is not None else f"{checked}"
        warnings = f", {len(reported) - errors} warnings" if len(reported) > errors else ""
        print(
            f"Found {errors} issues in {scope} files{warnings} (upgrades and downgrades; squawk"
            f" and the toolkit's {len(TOOLKIT_RULES)} rules)"
        )
    return 1 if errors else 0
