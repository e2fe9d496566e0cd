"""Free-text index over what a responder searches for: prompts, outputs, documents, tool
arguments and results (tantivy, one index per compacted tenant-hour).

A scan of the text columns cannot answer in under a second past ~300k spans; tantivy answers
a rare term at 10M spans in milliseconds (performance.md). The index lives in the partition
directory (`hour=HH/_text/`) and is built by compaction before the directory swap, so it is
swapped in (and later retired) together with the file it covers, named in `_text/COVERS`.
It returns the matching spans themselves, so a search reads only ids and the columns it
shows from those files, never their text.
Files the index does not cover (an open hour, a late file) are scanned.

Matching is by words: a span matches when every word of the query appears in its text as a
whole word, case-insensitive. Words are runs of letters and digits, as tantivy's default
tokenizer splits them; `word_predicate` is the same rule in SQL for the files that are
scanned, and for confirming what the index returns.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TEXT_DIR = "_text"
COVERS = "COVERS"  # {"file": the Parquet file indexed, "format": FORMAT}
FORMAT = 2
# Columns indexed, and searched by query.py's text filter.
TEXT_COLUMNS = ("system_instructions", "input_messages", "output_messages", "documents",
                "tool_arguments", "tool_result", "retrieval_query")
# tantivy's default tokenizer drops tokens of 40 bytes or more (RemoveLongFilter::limit(40)):
# queries for such words are scanned. Bytes, not characters: `ü` is two.
MAX_WORD = 39
_WORD = re.compile(r"[^\W_]+")
_WRITER_HEAP = 64 * 2**20


def words(text: str) -> list[str]:
    """The query's words, lowercased, in order, without repeats."""
    return list(dict.fromkeys(_WORD.findall(text.lower())))


def row_matches(row: dict, ws: list[str]) -> bool:
    """The same rule in Python, on a row of the `spans` view (the TUI's "which span")."""
    found = set(words(" ".join(str(row.get(c) or "") for c in TEXT_COLUMNS)))
    return bool(ws) and all(w in found for w in ws)


def word_predicate(ws: list[str]) -> tuple[str, list[str]]:
    """SQL (on the raw spans columns) true when every word appears as a whole word."""
    text = "lower(concat_ws(' ', " + ", ".join(TEXT_COLUMNS) + "))"
    clauses = [f"regexp_matches({text}, ?)" for _ in ws]
    return "(" + " AND ".join(clauses) + ")", [
        r"(^|[^\pL\pN])" + re.escape(w) + r"([^\pL\pN]|$)" for w in ws]


def _schema():
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("trace", stored=True, tokenizer_name="raw")
    sb.add_text_field("span", stored=True, tokenizer_name="raw")
    sb.add_integer_field("start", stored=True, fast=True, indexed=False)
    sb.add_text_field("body", stored=False)
    return sb.build()


def build(parquet: Path, dest: Path) -> int:
    """Index the text of every span of `parquet` into directory `dest`; returns docs."""
    import tantivy

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    index = tantivy.Index(_schema(), path=str(dest))
    writer = index.writer(heap_size=_WRITER_HEAP, num_threads=1)
    docs = 0
    pf = pq.ParquetFile(parquet)
    cols = ["trace_id", "span_id", "start_time_unix_nano", *TEXT_COLUMNS]
    for batch in pf.iter_batches(batch_size=4096, columns=cols):
        present = [batch.column(c) for c in TEXT_COLUMNS]
        body = pc.binary_join_element_wise(
            *[pc.fill_null(c, "") for c in present], "\n")
        has_text = pc.greater(pc.utf8_length(body), len(TEXT_COLUMNS) - 1)
        rows = pa.RecordBatch.from_arrays(
            [batch.column("trace_id"), batch.column("span_id"),
             batch.column("start_time_unix_nano"), body], ["t", "p", "s", "b"]).filter(has_text)
        for t, sp, s, b in zip(rows.column("t").to_pylist(), rows.column("p").to_pylist(),
                               rows.column("s").to_pylist(), rows.column("b").to_pylist(),
                               strict=True):
            writer.add_document(tantivy.Document(trace=t.hex(), span=sp.hex(),
                                                 start=min(s, 2**63 - 1), body=b))
            docs += 1
    writer.commit()
    writer.wait_merging_threads()
    (dest / COVERS).write_bytes(orjson.dumps({"file": parquet.name, "format": FORMAT}))
    return docs


@dataclass
class Hits:
    traces: list[bytes]  # trace ids of matching spans, newest span first (repeats removed)
    spans: list[bytes]  # the matching spans, as trace id + span id (24 bytes)
    complete: bool  # every matching span, or only the newest `limit`
    cutoff: int  # when not complete: the oldest start among them (ns)


class TextIndexes:
    """Opened indexes, cached by partition directory and what they cover."""

    def __init__(self) -> None:
        self._open: dict[Path, tuple[str, object]] = {}

    def covered(self, part: Path) -> str | None:
        """The file name the partition's index covers, if it has a complete one."""
        try:
            covers = orjson.loads((part / TEXT_DIR / COVERS).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(covers, dict) or covers.get("format") != FORMAT:
            return None  # built by an older version: compaction builds it again
        return covers.get("file")

    def search(self, part: Path, ws: list[str], limit: int) -> Hits | None:
        """Spans of the partition's indexed file holding every word; None: no index."""
        import tantivy

        covers = self.covered(part)
        if covers is None or not ws or any(len(w.encode()) > MAX_WORD for w in ws):
            return None
        hit = self._open.get(part)
        if hit is None or hit[0] != covers:
            try:
                index = tantivy.Index.open(str(part / TEXT_DIR))
            except (OSError, ValueError):
                return None
            hit = self._open[part] = (covers, index)
        index = hit[1]
        schema = index.schema
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, tantivy.Query.term_query(schema, "body", w)) for w in ws])
        searcher = index.searcher()
        result = searcher.search(query, limit, order_by_field="start",
                                 order=tantivy.Order.Desc)
        traces, spans, oldest = [], [], 0
        for start, addr in result.hits:
            doc = searcher.doc(addr)
            trace = bytes.fromhex(doc["trace"][0])
            traces.append(trace)
            spans.append(trace + bytes.fromhex(doc["span"][0]))
            oldest = start
        complete = len(result.hits) < limit
        return Hits(list(dict.fromkeys(traces)), spans, complete, oldest)
