"""SQL shapes: what groups together for N+1 detection, what stays apart, and what it costs."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchguard.fingerprint import MAX_INPUT_CHARS, MAX_SQL_CHARS, Shape, ShapeCache, shape

PROPERTY = settings(database=None, max_examples=300, deadline=None)


def same(a: str, b: str) -> bool:
    return shape(a).fingerprint == shape(b).fingerprint


class TestShape:
    def test_fields(self) -> None:
        """A shape carries fingerprint, normalized SQL, operation and tables."""
        result = shape("SELECT id FROM invoice WHERE customer_id = 42")
        assert result == Shape(
            fingerprint=result.fingerprint,
            sql="SELECT id FROM invoice WHERE customer_id = ?",
            operation="SELECT",
            tables=("invoice",),
            truncated=False,
        )

    def test_fingerprint_is_blake2b_of_the_lowercased_shape(self) -> None:
        """The fingerprint is 16 hex digits of BLAKE2b over the lowercased shape."""
        expected = hashlib.blake2b(
            b"select id from invoice where customer_id = ?", digest_size=8
        ).hexdigest()
        assert shape("SELECT id FROM invoice WHERE customer_id = 42").fingerprint == expected
        assert len(expected) == 16

    def test_stable_across_processes(self) -> None:
        """Two interpreters with different hash seeds agree on the fingerprint."""
        code = (
            "from launchguard.fingerprint import shape; "
            "print(shape('SELECT a FROM t WHERE b = 1').fingerprint)"
        )
        outputs = set()
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            outputs.add(done.stdout.strip())
        assert outputs == {shape("SELECT a FROM t WHERE b = 1").fingerprint}

    def test_keyword_case_does_not_matter(self) -> None:
        """select/SELECT and in/IN give one fingerprint; the first spelling is kept as sql."""
        upper = shape("SELECT id FROM invoice WHERE id IN (1, 2)")
        lower = shape("select id from invoice where id in (3)")
        assert upper.fingerprint == lower.fingerprint
        assert lower.sql == "select id from invoice where id in (?)"

    def test_quoted_identifier_case_collapses(self) -> None:
        """Documented: "User" and "user" share a fingerprint."""
        assert same('SELECT * FROM "User"', 'SELECT * FROM "user"')

    def test_shape_is_hashable_and_frozen(self) -> None:
        """Shapes are frozen value objects usable as dict keys."""
        result = shape("SELECT 1")
        assert {result: 1}[shape("SELECT 2")] == 1
        with pytest.raises(AttributeError):
            result.sql = "x"  # type: ignore[misc]

    def test_bytes_are_decoded(self) -> None:
        """A driver handing over bytes gets the same shape as for the text."""
        assert shape(b"SELECT 1 FROM t").fingerprint == shape("SELECT 2 FROM t").fingerprint  # type: ignore[arg-type]


class TestComments:
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT a FROM t /* comment */",
            "SELECT a FROM t /*controller='index',"
            "traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
            "/* leading */ SELECT a FROM t",
            "SELECT a -- trailing\nFROM t",
            "SELECT a FROM t -- to the end",
            "SELECT a/**/FROM t",
        ],
    )
    def test_comments_are_dropped(self, sql: str) -> None:
        """Block, sqlcommenter and line comments do not change the shape."""
        assert shape(sql).sql == "SELECT a FROM t"

    def test_unterminated_block_comment_runs_to_the_end(self) -> None:
        """An unterminated /* swallows the rest of the statement."""
        assert shape("SELECT a FROM t /* oops WHERE b = 1").sql == "SELECT a FROM t"

    def test_comment_markers_inside_strings_are_literals(self) -> None:
        """'--' and '/*' inside a string are part of the literal, not comments."""
        assert shape("SELECT a FROM t WHERE b = '-- x' AND c = '/* y'").sql == (
            "SELECT a FROM t WHERE b = ? AND c = ?"
        )


class TestLiterals:
    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            ("SELECT 'it''s'", "SELECT ?"),
            ("SELECT E'it\\'s', 'b'", "SELECT ?, ?"),
            ("SELECT N'x', X'ff', B'101', U&'d\\0061t'", "SELECT ?, ?, ?, U&?"),
            ("SELECT $$ it's $$, $fn$ body $$ $fn$", "SELECT ?, ?"),
            ("SELECT 1, 2.5, .5, 1e10, 1.5E-3, 0xFF", "SELECT ?, ?, ?, ?, ?, ?"),
            ("SELECT TRUE, false, NULL", "SELECT ?, ?, NULL"),
            ("SELECT a FROM t WHERE b IS NULL", "SELECT a FROM t WHERE b IS NULL"),
            ("SELECT a FROM t WHERE b = -5 AND c > -1.5", "SELECT a FROM t WHERE b = ? AND c > ?"),
            ("SELECT a - 1 FROM t", "SELECT a - ? FROM t"),
        ],
    )
    def test_literals_become_placeholders(self, sql: str, expected: str) -> None:
        """Strings, numbers and booleans become ?, NULL stays."""
        assert shape(sql).sql == expected

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT table1.col_2 FROM table1",
            'SELECT "t3"."c4" FROM "t3"',
            "SELECT col$1, x2y FROM t5",
            'SELECT "true", is_false FROM "2024_sales"',
        ],
    )
    def test_identifiers_keep_their_digits(self, sql: str) -> None:
        """Digits and words inside identifiers are not literals."""
        assert shape(sql).sql == sql

    def test_unterminated_string_runs_to_the_end(self) -> None:
        """An unterminated quote swallows the rest of the statement."""
        assert shape("SELECT a FROM t WHERE b = 'oops AND c = 1").sql == (
            "SELECT a FROM t WHERE b = ?"
        )

    def test_whitespace_collapses(self) -> None:
        """Runs of whitespace, newlines and a trailing semicolon do not matter."""
        assert shape("  SELECT a,\n\tb\r\nFROM   t ;  ").sql == "SELECT a, b FROM t"


class TestPlaceholders:
    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT a FROM t WHERE b = %s AND c = %s",
            "SELECT a FROM t WHERE b = %(b)s AND c = %(c_1)s",
            "SELECT a FROM t WHERE b = %b AND c = %t",
            "SELECT a FROM t WHERE b = $1 AND c = $2",
            "SELECT a FROM t WHERE b = ? AND c = ?",
            "SELECT a FROM t WHERE b = ?1 AND c = ?2",
            "SELECT a FROM t WHERE b = :b AND c = :c",
            "SELECT a FROM t WHERE b = :1 AND c = :2",
            "SELECT a FROM t WHERE b = 7 AND c = 'x'",
        ],
    )
    def test_every_paramstyle_gives_one_shape(self, sql: str) -> None:
        """pyformat, format, numeric, qmark, named, and inline literals agree."""
        assert shape(sql).sql == "SELECT a FROM t WHERE b = ? AND c = ?"

    def test_postgres_casts_are_not_placeholders(self) -> None:
        """'::int' is a cast and stays; ':name' right after is still a placeholder."""
        assert shape("SELECT a::int, b::text[] FROM t WHERE c = :c::int").sql == (
            "SELECT a::int, b::text[] FROM t WHERE c = ?::int"
        )

    def test_percent_operators_stay(self) -> None:
        """Modulo and escaped %% are operators, not placeholders."""
        assert shape("SELECT a % 2, b %% 3 FROM t").sql == "SELECT a % ?, b %% ? FROM t"

    def test_unexpanded_postcompile(self) -> None:
        """SQLAlchemy's __[POSTCOMPILE_x] is the same shape as its expanded IN list."""
        assert same(
            "SELECT a FROM t WHERE id IN (__[POSTCOMPILE_id_1])",
            "SELECT a FROM t WHERE id IN (?, ?, ?)",
        )


class TestLists:
    @pytest.mark.parametrize("count", [1, 2, 3, 17, 1000])
    def test_in_list_length_does_not_matter(self, count: int) -> None:
        """IN lists of any length collapse to IN (?)."""
        items = ", ".join(str(i) for i in range(count))
        assert shape(f"SELECT a FROM t WHERE b IN ({items})").sql == (
            "SELECT a FROM t WHERE b IN (?)"
        )

    def test_in_list_of_placeholders_with_casts(self) -> None:
        """IN ($1::INTEGER, $2::INTEGER) collapses to IN (?::INTEGER)."""
        assert shape("SELECT a FROM t WHERE b IN ($1::INTEGER, $2::INTEGER)").sql == (
            "SELECT a FROM t WHERE b IN (?::INTEGER)"
        )

    def test_not_in_and_tuple_in(self) -> None:
        """NOT IN and row-value IN lists collapse too."""
        assert shape("SELECT a FROM t WHERE b NOT IN (1,2) AND (c, d) IN ((1, 2), (3, 4))").sql == (
            "SELECT a FROM t WHERE b NOT IN (?) AND (c, d) IN ((?, ?))"
        )

    def test_in_subquery_is_structure(self) -> None:
        """IN (SELECT ...) is not a list and differs from IN (?)."""
        assert not same(
            "SELECT a FROM t WHERE b IN (SELECT c FROM u)", "SELECT a FROM t WHERE b IN (1)"
        )

    @pytest.mark.parametrize("rows", [1, 2, 5, 100])
    def test_values_row_count_does_not_matter(self, rows: int) -> None:
        """Multi-row VALUES collapse to one row."""
        values = ", ".join(f"({i}, 'n{i}', now())" for i in range(rows))
        assert shape(f"INSERT INTO t (a, b, c) VALUES {values}").sql == (
            "INSERT INTO t (a, b, c) VALUES (?, ?, now())"
        )

    def test_any_array(self) -> None:
        """ANY(ARRAY[?, ?]) collapses to ANY(ARRAY[?])."""
        assert shape("SELECT a FROM t WHERE b = ANY(ARRAY[1, 2, 3])").sql == (
            "SELECT a FROM t WHERE b = ANY(ARRAY[?])"
        )

    def test_function_arguments_are_not_collapsed(self) -> None:
        """Only IN lists, VALUES rows and arrays collapse, not argument lists."""
        assert not same("SELECT coalesce(a, 1) FROM t", "SELECT coalesce(a, 1, 2) FROM t")


SQLALCHEMY_SQLITE = (
    "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
    "WHERE ? = invoice.customer_id"
)
DJANGO_BY_FK = (
    'SELECT "billing_customer"."id", "billing_customer"."name" FROM "billing_customer" '
    'WHERE "billing_customer"."id" = %s LIMIT 21'
)


class TestOrmStatements:
    """Statements captured from real ORMs and drivers (SQLAlchemy 2.1, Django 5.2)."""

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param(
                SQLALCHEMY_SQLITE,
                "SELECT invoice.id, invoice.customer_id, invoice.amount FROM invoice "
                "WHERE 17 = invoice.customer_id",
                id="sqlalchemy-lazy-load",
            ),
            pytest.param(
                "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
                "WHERE invoice.id IN (?, ?, ?)",
                "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
                "WHERE invoice.id IN (?)",
                id="sqlalchemy-sqlite-expanded-in",
            ),
            pytest.param(
                "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
                "WHERE invoice.id IN (%(id_1_1)s::INTEGER, %(id_1_2)s::INTEGER, "
                "%(id_1_3)s::INTEGER)",
                "SELECT invoice.id, invoice.customer_id, invoice.amount \nFROM invoice \n"
                "WHERE invoice.id IN (%(id_1_1)s::INTEGER)",
                id="sqlalchemy-psycopg-expanded-in",
            ),
            pytest.param(
                "SELECT invoice.id, invoice.customer_id, invoice.note \nFROM invoice \n"
                "WHERE invoice.id IN ($2::INTEGER, $3::INTEGER, $4::INTEGER) "
                "AND invoice.customer_id = $1::INTEGER",
                "SELECT invoice.id, invoice.customer_id, invoice.note \nFROM invoice \n"
                "WHERE invoice.id IN ($2::INTEGER) AND invoice.customer_id = $1::INTEGER",
                id="sqlalchemy-asyncpg-expanded-in",
            ),
            pytest.param(
                "INSERT INTO invoice (customer_id, note) SELECT p0::INTEGER, p1::VARCHAR FROM "
                "(VALUES (%(customer_id__0)s::INTEGER, %(note__0)s::VARCHAR, 0), "
                "(%(customer_id__1)s::INTEGER, %(note__1)s::VARCHAR, 1), "
                "(%(customer_id__2)s::INTEGER, %(note__2)s::VARCHAR, 2)) "
                "AS imp_sen(p0, p1, sen_counter) ORDER BY sen_counter "
                "RETURNING invoice.id, invoice.id AS id__1",
                "INSERT INTO invoice (customer_id, note) SELECT p0::INTEGER, p1::VARCHAR FROM "
                "(VALUES (%(customer_id__0)s::INTEGER, %(note__0)s::VARCHAR, 0)) "
                "AS imp_sen(p0, p1, sen_counter) ORDER BY sen_counter "
                "RETURNING invoice.id, invoice.id AS id__1",
                id="sqlalchemy-insertmanyvalues-batch-sizes",
            ),
            pytest.param(
                "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class WHERE "
                "pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR, $2::VARCHAR, $3::VARCHAR])",
                "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class WHERE "
                "pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR])",
                id="sqlalchemy-any-array",
            ),
            pytest.param(
                DJANGO_BY_FK,
                DJANGO_BY_FK.replace("LIMIT 21", "LIMIT 1"),
                id="django-get-limit",
            ),
            pytest.param(
                'SELECT "billing_invoice"."id", "billing_invoice"."customer_id" FROM '
                '"billing_invoice" WHERE "billing_invoice"."id" IN (%s, %s, %s)',
                'SELECT "billing_invoice"."id", "billing_invoice"."customer_id" FROM '
                '"billing_invoice" WHERE "billing_invoice"."id" IN (%s)',
                id="django-in-list",
            ),
            pytest.param(
                'INSERT INTO "billing_invoice" ("customer_id", "amount") VALUES (%s, %s), '
                '(%s, %s), (%s, %s) RETURNING "billing_invoice"."id"',
                'INSERT INTO "billing_invoice" ("customer_id", "amount") VALUES (%s, %s) '
                'RETURNING "billing_invoice"."id"',
                id="django-bulk-create",
            ),
            pytest.param(
                "SELECT id FROM invoice WHERE customer_id = %(customer_id)s",
                "SELECT id FROM invoice WHERE customer_id = %s",
                id="psycopg-named-vs-positional",
            ),
            pytest.param(
                "SELECT id FROM invoice WHERE customer_id = $1 AND status = ANY($2::text[])",
                "SELECT id FROM invoice WHERE customer_id = $7 AND status = ANY($8::text[])",
                id="asyncpg",
            ),
            pytest.param(
                "SELECT id FROM invoice WHERE customer_id = :customer_id",
                "SELECT id FROM invoice WHERE customer_id = ?",
                id="sqlite-named-vs-qmark",
            ),
            pytest.param('SAVEPOINT "s139625763580800_x1"', 'SAVEPOINT "s140_x2"', id="savepoint"),
        ],
    )
    def test_same_shape(self, first: str, second: str) -> None:
        """Two executions of one ORM statement share a fingerprint."""
        assert shape(first).fingerprint == shape(second).fingerprint

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param(
                SQLALCHEMY_SQLITE,
                SQLALCHEMY_SQLITE.replace("FROM invoice", "FROM invoice2"),
                id="table",
            ),
            pytest.param(
                SQLALCHEMY_SQLITE,
                SQLALCHEMY_SQLITE.replace("invoice.amount", "invoice.total"),
                id="column",
            ),
            pytest.param(DJANGO_BY_FK, DJANGO_BY_FK.replace(" LIMIT 21", ""), id="limit-clause"),
            pytest.param(DJANGO_BY_FK, DJANGO_BY_FK.replace("= %s", "IN (%s)"), id="eq-vs-in"),
            pytest.param(
                "SELECT a FROM t WHERE b = ?",
                "SELECT a FROM t WHERE b = ? AND c = ?",
                id="extra-condition",
            ),
            pytest.param(
                "SELECT a FROM t WHERE b IS NULL", "SELECT a FROM t WHERE b = ?", id="is-null"
            ),
            pytest.param("SELECT a FROM t1", "SELECT a FROM t2", id="digit-in-table"),
            pytest.param('SELECT "c1" FROM t', 'SELECT "c2" FROM t', id="digit-in-quoted"),
            pytest.param(
                "SELECT a FROM t ORDER BY a", "SELECT a FROM t ORDER BY a DESC", id="order"
            ),
            pytest.param('SAVEPOINT "s1_x1"', 'RELEASE SAVEPOINT "s1_x1"', id="savepoint-release"),
            pytest.param("SELECT a::int FROM t", "SELECT a::text FROM t", id="cast"),
        ],
    )
    def test_different_shape(self, first: str, second: str) -> None:
        """Other tables, columns or structure give other fingerprints."""
        assert shape(first).fingerprint != shape(second).fingerprint


class TestSavepoints:
    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            ('SAVEPOINT "s139625763580800_x1"', "SAVEPOINT ?"),
            ("SAVEPOINT sa_savepoint_12", "SAVEPOINT ?"),
            ('RELEASE SAVEPOINT "s1_x9"', "RELEASE SAVEPOINT ?"),
            ("release sp_3", "release ?"),
            ("ROLLBACK TO SAVEPOINT sa_savepoint_2", "ROLLBACK TO SAVEPOINT ?"),
        ],
    )
    def test_savepoint_names_are_dropped(self, sql: str, expected: str) -> None:
        """Each savepoint statement kind has one shape whatever the name."""
        assert shape(sql).sql == expected
        assert shape(sql).operation == "OTHER"


class TestOperation:
    @pytest.mark.parametrize(
        ("sql", "operation"),
        [
            ("SELECT 1", "SELECT"),
            ("  select a from t", "SELECT"),
            ("/* tag */ SELECT a FROM t", "SELECT"),
            ("(SELECT a FROM t) UNION (SELECT a FROM u)", "SELECT"),
            ("INSERT INTO t (a) VALUES (1)", "INSERT"),
            ("UPDATE t SET a = 1", "UPDATE"),
            ("DELETE FROM t", "DELETE"),
            ("WITH x AS (SELECT a FROM t) SELECT * FROM x", "SELECT"),
            (
                "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n FROM x) SELECT n FROM x",
                "SELECT",
            ),
            ("WITH x AS (SELECT a FROM t) INSERT INTO u SELECT * FROM x", "INSERT"),
            ("WITH x AS (SELECT a FROM t) UPDATE u SET b = 1", "UPDATE"),
            ("WITH x AS (DELETE FROM t RETURNING a) DELETE FROM u", "DELETE"),
            ("WITH x AS (SELECT a FROM t", "WITH"),
            ("BEGIN", "OTHER"),
            ("SET search_path TO public", "OTHER"),
            ("", "OTHER"),
        ],
    )
    def test_operation(self, sql: str, operation: str) -> None:
        """The first keyword, or for WITH the main statement's keyword."""
        assert shape(sql).operation == operation


class TestTables:
    @pytest.mark.parametrize(
        ("sql", "tables"),
        [
            ('SELECT * FROM "public"."Invoice"', ("public.invoice",)),
            (
                "SELECT * FROM public.invoice i JOIN customer c ON c.id = i.customer_id",
                ("public.invoice", "customer"),
            ),
            ("SELECT * FROM `shop`.`order`", ("shop.order",)),
            ("INSERT INTO t(a, b) VALUES (1, 2)", ("t",)),
            ("UPDATE t SET a = (SELECT max(b) FROM u)", ("t", "u")),
            ("DELETE FROM t WHERE id IN (SELECT id FROM u)", ("t", "u")),
            ("SELECT EXTRACT(YEAR FROM created) FROM t", ("t",)),
            ("SELECT a FROM t WHERE b IS DISTINCT FROM c", ("t",)),
            ("SELECT a FROM t FOR UPDATE OF t SKIP LOCKED", ("t",)),
            ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2", ("t",)),
            ("SELECT * FROM generate_series(1, 3)", ()),
            ("SELECT * FROM (SELECT a FROM t) AS x", ("t",)),
            ("SELECT 1", ()),
        ],
    )
    def test_tables(self, sql: str, tables: tuple[str, ...]) -> None:
        """Tables after FROM / JOIN / INTO / UPDATE, lowercased and unquoted."""
        assert shape(sql).tables == tables

    def test_at_most_eight_tables(self) -> None:
        """At most eight distinct tables are listed."""
        sql = "SELECT * FROM t0 " + " ".join(f"JOIN t{i} ON true" for i in range(1, 20))
        assert shape(sql).tables == tuple(f"t{i}" for i in range(8))


ADVERSARIAL = {
    "unterminated-quotes": "'" * 1_000_000,
    "unterminated-comment": "SELECT /*" + "x" * 1_000_000,
    "comment-openers": "/*" * 500_000,
    "dollar-quote-openers": "".join(f"$t{i}$ " for i in range(100_000)).ljust(1_000_000),
    "deep-parens": "(" * 1_000_000,
    "in-list-100k": "SELECT a FROM t WHERE b IN (" + ", ".join(["%s"] * 100_000) + ")",
    "numbers": "1," * 500_000,
    "pyformat-openers": "%(" * 500_000,
    "e-string-escapes": "E'\\" * 333_333,
    "values-openers": "values (" * 125_000,
    "keywords": "select a from b join c " * 43_000,
    "random-text": "".join(chr(random.Random(1).randint(0, 0x10FFFF) & 0xD7FF) for _ in range(1000))
    * 1000,
    "random-bytes": random.Random(2).randbytes(1_000_000).decode("utf-8", "surrogateescape"),
    "random-sql-chars": "".join(
        random.Random(3).choice("'\"`$%:?()-/*,.0123456789 abcEN\n[]") for _ in range(1_000_000)
    ),
}


class TestLimits:
    @pytest.mark.parametrize("name", sorted(ADVERSARIAL))
    def test_adversarial_megabyte_is_fast(self, name: str) -> None:
        """1 MB of hostile input is shaped in well under 2 s, without raising."""
        text = ADVERSARIAL[name]
        started = time.perf_counter()
        result = shape(text)
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"
        assert result.truncated
        assert len(result.sql) <= MAX_SQL_CHARS

    def test_long_input_reads_a_prefix(self) -> None:
        """Past MAX_INPUT_CHARS only the prefix counts, and the shape says so."""
        head = "SELECT a FROM t WHERE b IN (" + "1, " * (MAX_INPUT_CHARS // 3)
        long_one, longer = shape(head + "2)"), shape(head + "3, 4, 5) AND c = 1")
        assert long_one.truncated
        assert longer.truncated
        assert long_one.fingerprint == longer.fingerprint
        assert not shape("SELECT a FROM t").truncated

    def test_truncated_shape_differs_from_its_prefix(self) -> None:
        """A truncated statement does not share a fingerprint with its prefix on its own."""
        text = "SELECT a FROM t WHERE b = 'x' " + " " * MAX_INPUT_CHARS
        assert shape(text).fingerprint != shape(text[:MAX_INPUT_CHARS]).fingerprint

    def test_sql_is_cut_to_a_thousand_characters(self) -> None:
        """Shape.sql is at most 1,000 characters and ends in an ellipsis when cut."""
        columns = ", ".join(f"column_{i}" for i in range(500))
        result = shape(f"SELECT {columns} FROM t")
        assert len(result.sql) == MAX_SQL_CHARS
        assert result.sql.endswith("…")
        assert not result.truncated


literal = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=20),
)


def render(value: object) -> str:
    """Render a Python value as a SQL literal, the way a careless caller would inline it."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class TestProperties:
    @PROPERTY
    @given(st.text())
    def test_never_raises_and_is_deterministic(self, text: str) -> None:
        """Any text gets a shape; the same text always the same one."""
        first = shape(text)
        assert first == shape(text)
        assert len(first.fingerprint) == 16
        assert int(first.fingerprint, 16) >= 0
        assert len(first.sql) <= MAX_SQL_CHARS
        assert len(first.tables) <= 8
        assert first.operation in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "OTHER"}

    @PROPERTY
    @given(st.binary(max_size=200))
    def test_never_raises_on_decoded_bytes(self, data: bytes) -> None:
        """Random bytes decoded with surrogateescape still get a shape."""
        shape(data.decode("utf-8", "surrogateescape"))

    @PROPERTY
    @given(
        st.text(alphabet="'\"`$%:?()-/*,.0123456789 aEeNs\n[];", max_size=80),
    )
    def test_sql_punctuation_soup(self, text: str) -> None:
        """Text made of SQL's special characters never breaks the normalizer."""
        assert shape(text) == shape(text)

    @PROPERTY
    @given(literal, st.lists(literal, min_size=1, max_size=12))
    def test_literal_values_do_not_matter(self, value: object, items: list[object]) -> None:
        """Any inline literal values give the placeholder statement's fingerprint."""
        inline = (
            f"SELECT a FROM t WHERE b = {render(value)} "
            f"AND c IN ({', '.join(render(item) for item in items)})"
        )
        assert (
            shape(inline).fingerprint
            == shape("SELECT a FROM t WHERE b = %s AND c IN (%s)").fingerprint
        )

    @PROPERTY
    @given(st.lists(st.tuples(literal, literal), min_size=1, max_size=8))
    def test_values_rows_do_not_matter(self, rows: list[tuple[object, object]]) -> None:
        """Any number of inline VALUES rows gives the one-row statement's fingerprint."""
        values = ", ".join(f"({render(a)}, {render(b)})" for a, b in rows)
        assert (
            shape(f"INSERT INTO t (a, b) VALUES {values}").fingerprint
            == shape("INSERT INTO t (a, b) VALUES ($1, $2)").fingerprint
        )


class TestShapeCache:
    def test_hit_returns_the_cached_shape(self) -> None:
        """The second lookup of one string returns the very same object."""
        cache = ShapeCache()
        first = cache.get("SELECT 1")
        assert cache.get("SELECT 1") is first
        assert first == shape("SELECT 1")
        assert len(cache) == 1

    def test_bounded_after_100k_distinct_statements(self) -> None:
        """100k distinct statements never push the cache past max_entries."""
        cache = ShapeCache(max_entries=1000)
        largest = 0
        for i in range(100_000):
            cache.get(f"SELECT a FROM t{i}")
            largest = max(largest, len(cache))
        assert largest <= 1000
        assert len(cache) > 0

    def test_eviction_keeps_the_newest(self) -> None:
        """When full, the older half goes and the latest statement stays."""
        cache = ShapeCache(max_entries=4)
        for i in range(5):
            cache.get(f"SELECT {i} FROM t{i}")
        assert len(cache) == 3
        newest = cache.get("SELECT 4 FROM t4")
        assert cache.get("SELECT 4 FROM t4") is newest

    def test_bounded_in_characters(self) -> None:
        """Long statements evict by total size; one over an eighth of the budget is not kept."""
        cache = ShapeCache(max_entries=1000, max_chars=80_000)
        for i in range(200):
            cache.get(f"SELECT {i} FROM t WHERE a = '{'x' * 5000}'")
        assert len(cache) <= 16
        huge = "SELECT a FROM t WHERE b = '" + "x" * 20_000 + "'"
        before = len(cache)
        assert cache.get(huge).sql == "SELECT a FROM t WHERE b = ?"
        assert len(cache) == before

    def test_rejects_nonsense_sizes(self) -> None:
        """A cache that could hold nothing is refused at construction."""
        with pytest.raises(ValueError, match="max_entries"):
            ShapeCache(0)
        with pytest.raises(ValueError, match="max_chars"):
            ShapeCache(max_chars=0)

    def test_threads_share_one_cache(self) -> None:
        """Concurrent lookups and evictions neither raise nor break the bound."""
        cache = ShapeCache(max_entries=64)
        errors: list[BaseException] = []

        def hammer(offset: int) -> None:
            try:
                for i in range(5_000):
                    sql = f"SELECT a FROM t{(i * 7 + offset) % 500}"
                    assert cache.get(sql).tables == (sql.rsplit(" ", 1)[1],)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(cache) <= 64
