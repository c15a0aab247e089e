"""Reading the project's Markdown documents for tests/test_docs.py: fenced blocks with their
markers, the command lines in them, headings as anchors, and relative links. Pure functions.

A marker is an HTML comment (invisible when rendered) on the line right before a fenced block:
- `<!-- runnable -->`: a shell block that runs as written;
- `<!-- runnable: serve URL [TEXT] -->`: a shell block that starts a long-running program which
  answers URL with 200 (and, if TEXT is given, a body that contains TEXT);
- `<!-- schema: NAME -->`: a JSON example of a wire message (`streetwatch.alert/1`, ...).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(runnable(?::\s*serve\s+\S+(?:\s+\S+)?)?|schema:\s*\S+)\s*-->\s*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_SEPARATORS = frozenset({"&&", "||", "|", ";", "&", "(", ")"})
_REDIRECTS = frozenset({">", ">>", "<", "2>", "&>", "<<", "<<<"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    """One fenced block: its document, the line its fence opens on, language, marker and text."""

    doc: Path
    line: int
    lang: str
    marker: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.name}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.marker is not None and self.marker.startswith("runnable")

    @property
    def serve_url(self) -> str | None:
        """The URL a `runnable: serve URL` block's program must answer, else None."""
        if self.marker is None or not self.marker.startswith("runnable:"):
            return None
        return self.marker.split()[2]

    @property
    def serve_text(self) -> str:
        """What the answer's body must contain ("" for any body)."""
        words = self.marker.split() if self.marker else []
        return words[3] if len(words) > 3 else ""

    @property
    def schema(self) -> str | None:
        if self.marker is None or not self.marker.startswith("schema:"):
            return None
        return self.marker.split(":", 1)[1].strip()


def fenced_blocks(doc: Path) -> list[Block]:
    """Every fenced block of `doc`, with the marker on the line before it (if any)."""
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    opened: tuple[int, str, str, str | None] | None = None  # (line, fence, lang, marker)
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if opened is None:
            if fence:
                previous = lines[number - 2] if number > 1 else ""
                marker = _MARKER.match(previous)
                opened = (number, fence.group(1), fence.group(2), marker.group(1) if marker else None)
                body = []
        elif fence and fence.group(1).startswith(opened[1]) and not fence.group(2):
            blocks.append(Block(doc, opened[0], opened[2], opened[3], "\n".join(body)))
            opened = None
        else:
            body.append(line)
    return blocks


def _outside_fences(doc: Path) -> Iterator[str]:
    """The lines of `doc` that are not inside a fenced block (nor a fence)."""
    inside: str | None = None
    for line in doc.read_text(encoding="utf-8").splitlines():
        fence = _FENCE.match(line)
        if inside is None and fence:
            inside = fence.group(1)
        elif inside is not None and fence and fence.group(1).startswith(inside) and not fence.group(2):
            inside = None
        elif inside is None:
            yield line


def prose(doc: Path) -> str:
    """The document without its fenced blocks and inline code (where links live)."""
    return "\n".join(_INLINE_CODE.sub("", line) for line in _outside_fences(doc))


def command_lines(block: Block) -> list[str]:
    """The command lines of a block: for shell blocks every line (continuations joined, heredoc
    bodies and comments left out), for any other block the lines written after a `$ ` prompt."""
    if block.lang not in ("bash", "sh", "shell"):
        return [line.strip()[2:] for line in block.text.splitlines() if line.strip().startswith("$ ")]
    commands: list[str] = []
    pending = ""
    terminator: str | None = None
    for line in block.text.splitlines():
        if terminator is not None:
            if line.strip() == terminator:
                terminator = None
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        heredoc = _HEREDOC.search(command)
        if heredoc:
            terminator = heredoc.group(2)
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def simple_commands(command: str) -> list[list[str]]:
    """A command line split at pipes, `&&`, `;` ...: each simple command's words, with leading
    `VAR=value` assignments and redirections (and their targets) removed."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in _SEPARATORS:
            commands.append([])
        elif token in _REDIRECTS:
            skip_next = True
        elif not (commands[-1] == [] and _ASSIGNMENT.match(token)):
            commands[-1].append(token)
    return [words for words in commands if words]


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading anchor of `doc` (a repeated heading gets -1, -2 ... as on GitHub)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in _headings(doc):
        base = slug(line)
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def _headings(doc: Path) -> list[str]:
    """Heading texts outside code (inline code kept: GitHub keeps its words in the anchor)."""
    found = (re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line) for line in _outside_fences(doc))
    return [heading.group(1) for heading in found if heading]


def relative_links(doc: Path) -> list[str]:
    """Link targets in `doc`'s prose that are not web or mail addresses."""
    return [t for t in _LINK.findall(prose(doc)) if not re.match(r"^(https?|mailto):", t)]
