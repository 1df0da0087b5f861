"""Where a statement gets its shape: SQL normalization for grouping a request's queries.

The same statement with other literal values, placeholder styles, IN-list lengths or VALUES row
counts gets the same :class:`Shape` (and so the same ``fingerprint``); another table, column or
structure gets another one::

    from launchguard.fingerprint import ShapeCache, shape

    a = shape("SELECT id FROM invoice WHERE customer_id = 42 AND id IN (1, 2, 3)")
    b = shape("select id from invoice where customer_id = %s and id in (%s)")
    assert a.fingerprint == b.fingerprint
    a.sql         # 'SELECT id FROM invoice WHERE customer_id = ? AND id IN (?)'
    a.operation   # 'SELECT'
    a.tables      # ('invoice',)

    shapes = ShapeCache()        # bounded; a hit is one dict lookup
    shapes.get(raw_sql).fingerprint

Rules, in order:

1. Comments go: ``/* ... */`` (sqlcommenter tags included; not nested, an unterminated one runs
   to the end) and ``-- ...``. Each becomes one space.
2. Literals become ``?``: strings (``'...'`` with ``''``, ``E'...'`` with backslash escapes,
   ``N''``/``X''``/``B''``, dollar quotes ``$$...$$``/``$tag$...$tag$``; an unterminated one runs
   to the end; ``U&'...'`` keeps its prefix, ``U&?``), numbers (ints, decimals, exponents,
   ``0x..``; never digits inside an identifier such as ``table1`` or ``"t3"``),
   ``TRUE``/``FALSE``. ``NULL`` stays (``IS NULL`` is structure). A minus sign right after
   ``=``, ``<``, ``>``, ``(`` or ``,`` folds into the literal, so ``x = -5`` and ``x = 5`` agree.
3. Placeholders become ``?``: ``%s``, ``%(name)s`` (and psycopg's ``%b``/``%t``), ``$1``,
   ``:name``, ``:1``, ``?``, ``?1`` and SQLAlchemy's unexpanded ``__[POSTCOMPILE_x]``. The
   PostgreSQL cast ``::int`` is not a placeholder.
4. Whitespace collapses to one space; no space after ``(``/``[`` or before ``)``/``]``; commas
   are written ``, ``; a trailing ``;`` goes.
5. Lists collapse: ``IN (?, ?, ?)`` to ``IN (?)``, ``IN ((?, ?), (?, ?))`` to ``IN ((?, ?))``,
   ``VALUES (?, ?), (?, ?)`` to ``VALUES (?, ?)`` (identical rows, one level of nested
   parentheses inside a row), ``ARRAY[?, ?]`` to ``ARRAY[?]``.
6. ``SAVEPOINT x``, ``RELEASE [SAVEPOINT] x`` and ``ROLLBACK TO [SAVEPOINT] x`` lose the name:
   one shape each.

The fingerprint is the first 8 bytes of BLAKE2b over the normalized text **lowercased**, as 16
hex digits: the same in every process and Python run. Keyword case never matters; the price is
that quoted identifiers differing only in case (``"User"`` and ``"user"``) share a fingerprint.
``Shape.sql`` keeps the first-seen spelling and is cut to 1,000 characters (ending in ``…``).

Only the first 65,536 characters of a statement are read, so the cost of one shape is bounded
whatever arrives; a longer statement's shape has ``truncated=True`` and its fingerprint covers
that prefix (and differs from the fingerprint of the prefix on its own). Everything runs in
linear time: a few regular expressions without nested ambiguous repetition, one scanning loop,
unterminated quotes and comments consumed to the end in one step.

``operation`` is the first keyword (``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, otherwise
``OTHER``); for a statement starting with ``WITH`` it is the main statement's keyword (the first
one outside the CTEs' parentheses), so a ``WITH ... SELECT`` counts as a ``SELECT``; ``WITH`` is
left only when no main statement is found (e.g. a truncated statement). ``tables`` is best effort:
the first name after each FROM / JOIN / INTO / statement-leading UPDATE (not ``FROM a, b``'s
``b``, not ``USING``), skipping subqueries, table functions, ``EXTRACT(... FROM x)``, ``IS
DISTINCT FROM``, ``FOR UPDATE`` and ``DO UPDATE``.

Not handled, on purpose: MySQL's ``#`` comments (``#`` is an operator in PostgreSQL) and
backslash escapes in plain ``'...'`` strings (MySQL's default; standard SQL has none), nested
``/* /* */ */`` comments. None of these can make the normalizer slow or raise; at worst two
statements that differ only there get different shapes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

__all__ = ["MAX_INPUT_CHARS", "MAX_SQL_CHARS", "Shape", "ShapeCache", "shape"]

MAX_INPUT_CHARS = 65_536
"""Characters of a statement that are read; the rest is ignored (``Shape.truncated``)."""

MAX_SQL_CHARS = 1_000
"""Longest ``Shape.sql`` (a longer one is cut and ends in ``…``)."""

_MAX_TABLES = 8


@dataclass(frozen=True, slots=True)
class Shape:
    """The normalized form of one SQL statement."""

    fingerprint: str
    """16 hex digits, stable across processes; equal for statements of the same shape."""
    sql: str
    """The normalized statement (literals and placeholders as ``?``), at most 1,000 characters."""
    operation: str
    """``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, ``WITH`` or ``OTHER``."""
    tables: tuple[str, ...]
    """Tables after FROM / JOIN / INTO / UPDATE, lowercased, unquoted, schema kept, at most 8."""
    truncated: bool = False
    """True when the statement was longer than :data:`MAX_INPUT_CHARS` and only a prefix counts."""


# ------------------------------------------------------------------------------ tokenizer
#
# One ``match`` per literal: the ``code`` group runs over everything kept as it is (words, so
# digits inside identifiers are never numbers; quoted identifiers; punctuation), then one
# alternative names the literal, placeholder or comment that stops it. The pattern cannot fail
# (every part is optional), so the engine never backtracks into ``code``; each alternative is a
# single repeated class or an "unrolled loop" whose pieces start with different characters, and
# quotes or comments without an end consume the rest of the text in that one attempt. Rare cases
# are settled in Python where the match stops: a one-letter string prefix (``E'``, ``N'``...),
# ``?1``, ``.5``.

_TOKEN = re.compile(
    r"""
    (?P<code>(?:
        [^"`%$:'/\-\d]+
        |(?<=\w)[\d$]+
        |"[^"]*(?:""[^"]*)*"?
        |`[^`]*(?:``[^`]*)*`?
        |::+|:(?!\w)
        |%%|%(?![sbt(])
        |-(?!-)|/(?!\*)
    )*)
    (?:
        (?P<num>0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
        |(?P<ph>%(?:\([^()]*\))?[sbt]|\$\d+|:(?:[^\W\d]\w*|\d+))
        |(?P<str>'[^']*(?:''[^']*)*'?)
        |(?P<lc>--[^\n]*)
        |(?P<bc>/\*)
        |(?P<dq>\$(?:[^\W\d]\w*)?\$)
    )?
    """,
    re.VERBOSE,
)
_ESTRING = re.compile(r"'[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*'?")
_BOOL_OR_POSTCOMPILE = re.compile(
    r"(?<![\w$\"`])(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])(?![\w$\"`])|__\[POSTCOMPILE_\w+\]"
)

_UNARY_MINUS = re.compile(r"(?<=[=<>(,])( ?)-\?")
# ``[Ii][Nn](?<![\w$]..)``: "in" as a whole word, written so the engine can skip to an "i".
_ELEMENT = r"(\?(?:::\w+(?:\[\])*)?)"  # a placeholder, maybe with a PostgreSQL cast
_ROW = r"\((?:[^()]|\([^()]*\))*\)"  # parentheses, at most one level nested inside
_IN_LIST = re.compile(r"([Ii][Nn](?<![\w$]..) ?\()" + _ELEMENT + r"(?:, \2)+\)", re.DOTALL)
_IN_ROWS = re.compile(r"([Ii][Nn](?<![\w$]..) ?\()(" + _ROW + r")(?:, \2)+\)", re.DOTALL)
_VALUES_ROWS = re.compile(r"([Vv](?<![\w$].)(?i:alues) ?)(" + _ROW + r")(?:, \2)+", re.DOTALL)
_ARRAY = re.compile(r"([Aa](?<![\w$].)(?i:rray) ?\[)" + _ELEMENT + r"(?:, \2)+\]", re.DOTALL)
_SAVEPOINT = re.compile(
    r"((?:savepoint|release(?: savepoint)?|rollback(?: work| transaction)? to(?: savepoint)?) )"
    r"\S.*",
    re.DOTALL,
)

# Statement structure, on the lowercased shape: parentheses, quoted identifiers (skipped, and
# quick to skip), and the keywords that matter.
_SCAN = re.compile(r'"[^"]*"?|`[^`]*`?|[()]|\b(select|insert|update|delete|from|join|into|with)\b')
_NAME_PART = r'(?:"[^"]*"|`[^`]*`|[^\W\d][\w$]*)'
_NAME_PARTS = re.compile(_NAME_PART)
_NAME = re.compile(
    r" ?(?:only |lateral )?(" + _NAME_PART + r"(?: ?\. ?" + _NAME_PART + r")*)( ?\()?"
)
_NOT_TABLES = frozenset({"select", "values", "set", "where", "default", "lateral", "only"})
_OPERATIONS = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}
_FIRST_WORD = re.compile(r"[( ]*([a-z]+)")


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _literals(text: str) -> str:
    """Rules 1-3: drop comments, turn literals and placeholders into ``?``."""
    out: list[str] = []
    append = out.append
    match = _TOKEN.match
    pos = 0
    end = len(text)
    while pos < end:
        m = match(text, pos)
        if m is None:  # cannot happen: every part of the pattern is optional
            break
        code_end = m.end(1)
        if code_end > pos:
            append(text[pos:code_end])
        kind = m.lastgroup
        if kind == "code":  # stopped at a character no alternative takes (a lone "$"): keep it
            if code_end < end:
                append(text[code_end])
            pos = code_end + 1
            continue
        pos = m.end()
        if kind == "num" or kind == "str":
            # The character just before may belong to this literal: ?1, .5, E'..', N'..'.
            if code_end > m.start():
                prev = text[code_end - 1]
                if prev == "?" and kind == "num":
                    continue
                if prev in ".EeNnXxBb" and (code_end < 2 or not _is_word(text[code_end - 2])):
                    if kind == "num" and prev == ".":
                        out[-1] = out[-1][:-1]
                    elif kind == "str" and prev != ".":
                        out[-1] = out[-1][:-1]
                        if prev in "Ee":  # backslash escapes: find the end again
                            escaped = _ESTRING.match(text, code_end)
                            if escaped is not None:
                                pos = escaped.end()
            append("?")
        elif kind == "bc":
            close = text.find("*/", pos)
            pos = end if close < 0 else close + 2
            append(" ")
        elif kind == "lc":
            append(" ")
        elif kind == "dq":
            close = text.find(m.group(kind), pos)
            pos = end if close < 0 else close + (pos - code_end)
            append("?")
        else:
            append("?")
    result = "".join(out)
    low = result.lower()
    if "true" in low or "false" in low or "__[postcompile_" in low:
        result = _BOOL_OR_POSTCOMPILE.sub("?", result)
    return result


def _structure(sql: str) -> str:
    """Rules 4-6 on text whose literals are already ``?``."""
    sql = " ".join(sql.split()).rstrip(" ;")
    low = sql.lower()
    if low[:1] in ("s", "r"):
        m = _SAVEPOINT.fullmatch(low)
        if m is not None:
            return sql[: m.end(1)] + "?"
    if "( " in sql or "[ " in sql:
        sql = sql.replace("( ", "(").replace("[ ", "[")
    if " )" in sql or " ]" in sql:
        sql = sql.replace(" )", ")").replace(" ]", "]")
    if "-?" in sql:
        sql = _UNARY_MINUS.sub(r"\1?", sql)
    if "," in sql:
        sql = sql.replace(" ,", ",").replace(", ", ",").replace(",", ", ")
        if "in" in low:
            sql = _IN_LIST.sub(r"\1\2)", sql)
            if "), (" in sql:
                sql = _IN_ROWS.sub(r"\1\2)", sql)
        if "values" in low and "), (" in sql:
            sql = _VALUES_ROWS.sub(r"\1\2", sql)
        if "array" in low:
            sql = _ARRAY.sub(r"\1\2]", sql)
    return sql


def _unquote(name: str) -> str:
    """``"Public" . "invoice"`` -> ``public.invoice`` (the name is already lowercased)."""
    return ".".join(p[1:-1] if p[0] in '"`' else p for p in _NAME_PARTS.findall(name))


def _analyse(sql: str) -> tuple[str, tuple[str, ...]]:
    """The statement's operation and its tables, from one pass over the normalized text."""
    first = _FIRST_WORD.match(sql)
    first_word = first.group(1) if first is not None else ""
    operation = _OPERATIONS.get(first_word, "WITH" if first_word == "with" else "OTHER")
    main_pending = first_word == "with"
    # The statement keyword seen so far at each parenthesis depth (None before the first).
    stmts: list[str | None] = [None]
    tables: list[str] = []
    for m in _SCAN.finditer(sql):
        piece = m.group()
        if piece == "(":
            stmts.append(None)
            continue
        if piece == ")":
            if len(stmts) > 1:
                stmts.pop()
            continue
        keyword = m.group(1)
        if keyword is None:  # a quoted identifier
            continue
        stmt = stmts[-1]
        if keyword in ("select", "insert", "delete"):
            stmts[-1] = keyword
            if main_pending and len(stmts) == 1:
                operation = _OPERATIONS[keyword]
                main_pending = False
            continue
        if keyword == "with":
            continue
        if keyword == "update":
            if stmt is not None:  # FOR UPDATE, DO UPDATE, ON DUPLICATE KEY UPDATE
                continue
            stmts[-1] = keyword
            if main_pending and len(stmts) == 1:
                operation = "UPDATE"
                main_pending = False
        elif keyword in ("from", "join"):
            if stmt not in ("select", "delete", "update"):  # EXTRACT(YEAR FROM x)
                continue
            if keyword == "from" and sql[max(0, m.start() - 9) : m.start()] == "distinct ":
                continue  # IS DISTINCT FROM
        if len(tables) >= _MAX_TABLES:
            continue
        name = _NAME.match(sql, m.end())
        if name is None or (name.group(2) is not None and keyword != "into"):
            continue  # a subquery or a table function
        table = _unquote(name.group(1))
        if table and table not in _NOT_TABLES and table not in tables:
            tables.append(table)
    return operation, tuple(tables)


def shape(sql: str) -> Shape:
    """Normalize one statement (pure, uncached; see the module docstring for the rules)."""
    if not isinstance(sql, str):  # bytes or a driver's SQL object: best effort, never raise
        sql = sql.decode("utf-8", "replace") if isinstance(sql, bytes | bytearray) else str(sql)
    truncated = len(sql) > MAX_INPUT_CHARS
    if truncated:
        sql = sql[:MAX_INPUT_CHARS]
    normalized = _structure(_literals(sql))
    low = normalized.lower()
    key = low + "\x00…" if truncated else low
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    operation, tables = _analyse(low)
    if len(normalized) > MAX_SQL_CHARS:
        normalized = normalized[: MAX_SQL_CHARS - 1] + "…"
    return Shape(digest, normalized, operation, tables, truncated)


class ShapeCache:
    """:func:`shape` behind a bounded dict keyed by the raw SQL string.

    A hit is one dict lookup. Memory stays bounded whatever SQL arrives: at most
    ``max_entries`` statements and ``max_chars`` characters of SQL are kept; past either, the
    older half (in insertion order) is dropped. A statement longer than an eighth of
    ``max_chars`` is shaped every time and never stored. Safe to share between threads.
    """

    __slots__ = ("_chars", "_lock", "_max_chars", "_max_entries", "_max_sql", "_shapes")

    def __init__(self, max_entries: int = 4096, *, max_chars: int = 4_194_304) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        if max_chars < 8:
            raise ValueError(f"max_chars must be at least 8, got {max_chars!r}")
        self._shapes: dict[str, Shape] = {}
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._max_sql = max_chars // 8
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, sql: str) -> Shape:
        """The shape of ``sql``, computed once per distinct string."""
        try:
            return self._shapes[sql]
        except KeyError:
            return self._miss(sql)

    def _miss(self, sql: str) -> Shape:
        result = shape(sql)
        size = len(sql)
        if size > self._max_sql:
            return result
        with self._lock:
            shapes = self._shapes
            if sql in shapes:  # another thread got there first
                return shapes[sql]
            if len(shapes) >= self._max_entries or self._chars + size > self._max_chars:
                self._evict()
            shapes[sql] = result
            self._chars += size
        return result

    def _evict(self) -> None:
        """Drop the older half: keep at most half the entries and half the characters."""
        shapes = self._shapes
        keep_entries = self._max_entries // 2
        keep_chars = self._max_chars // 2
        chars = self._chars
        drop = []
        count = len(shapes)
        for old in shapes:
            if count <= keep_entries and chars <= keep_chars:
                break
            drop.append(old)
            count -= 1
            chars -= len(old)
        for old in drop:
            del shapes[old]
        self._chars = chars

    def __len__(self) -> int:
        return len(self._shapes)
