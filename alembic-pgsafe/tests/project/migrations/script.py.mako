<%
    # Import only what the body uses: the file is born clean for ruff (no unused import).
    body = (upgrades or "") + (downgrades or "")
    wanted = [line for line, used in (("import sqlalchemy as sa", "sa." in body), ("from alembic import op", "op." in body)) if used]
    extra = imports.strip() if imports else ""
    revises = down_revision if isinstance(down_revision, str) else ", ".join(down_revision or ())

    def block(text):
        """A function body: ``pass`` where it holds only comments (or nothing)."""
        code = [line for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]
        return text if code else (text + "\n    pass" if text else "pass")

    def literal(value):
        """Python source of a revision id (or ids, or None), quoted as ruff format wants."""
        if isinstance(value, (list, tuple)):
            return "(" + ", ".join(literal(item) for item in value) + ("," if len(value) == 1 else "") + ")"
        return "None" if value is None else '"' + value + '"'
%>"""${message}

Revision ID: ${up_revision}
Revises:${" " + revises if revises else ""}
Create Date: ${create_date}
"""

from collections.abc import Sequence
% if wanted or extra:

% endif
% for line in wanted:
${line}
% endfor
% if extra:
${extra}
% endif

revision: str = ${literal(up_revision)}
down_revision: str | Sequence[str] | None = ${literal(down_revision)}
branch_labels: str | Sequence[str] | None = ${literal(branch_labels)}
depends_on: str | Sequence[str] | None = ${literal(depends_on)}


def upgrade() -> None:
    ${block(upgrades)}


def downgrade() -> None:
    ${block(downgrades)}
