"""The write-ahead log: group commit, torn tails, corruption, rotation, and fsyncgate."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from aitrail.store.wal import WAL, Position, WALCorrupt, WALFailed, encode_record, iter_records


def segment(directory: Path, n: int) -> Path:
    return directory / f"{n:08d}.wal"


def payloads(k: int) -> list[bytes]:
    """Records of different lengths, so no two share an end offset by accident."""
    return [f"record {i} ".encode() * (i % 4 + 1) for i in range(k)]


def write_log(directory: Path, records: list[bytes],
              segment_bytes: int = 1 << 20) -> list[Position]:
    wal = WAL(directory, segment_bytes=segment_bytes)
    assert wal.open() == []
    ends = [wal.append(p) for p in records]
    wal.close()
    return ends


@pytest.mark.parametrize("segment_bytes", [1 << 20, 700], ids=["one-segment", "rotating"])
def test_concurrent_appends_are_all_durable_and_read_back_in_log_order(tmp_path, segment_bytes):
    threads, per_thread = 8, 40
    wal = WAL(tmp_path / "wal", segment_bytes=segment_bytes)
    wal.open()
    got: dict[bytes, Position] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            start.wait()
            mine = []
            for i in range(per_thread):
                p = f"thread {t} record {i}".encode()
                mine.append((p, wal.append(p)))
            got.update(mine)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert wal.failed is None
    assert len(got) == threads * per_thread
    assert len(set(got.values())) == threads * per_thread  # every record its own position
    assert wal.synced >= max(got.values())

    back = list(iter_records(tmp_path / "wal"))
    wal.close()
    # The log holds exactly what was acknowledged, each record at the position its append
    # returned, in position order, and each thread's records in the order it wrote them.
    assert {p: end for end, p in back} == got
    assert [end for end, _ in back] == sorted(got.values())
    for t in range(threads):
        mine = [p for _, p in back if p.startswith(f"thread {t} ".encode())]
        assert mine == [f"thread {t} record {i}".encode() for i in range(per_thread)]
    if segment_bytes < 1 << 20:
        assert len({end.segment for end, _ in back}) > 3


def test_a_torn_last_record_is_cut_off_at_every_byte_and_appends_continue(tmp_path):
    records = payloads(6)
    ends = write_log(tmp_path / "orig", records)
    whole = segment(tmp_path / "orig", 1).read_bytes()
    last_start = ends[-2].offset
    assert ends[-1].offset == len(whole)

    for cut in range(last_start, len(whole)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        segment(d, 1).write_bytes(whole[:cut])
        wal = WAL(d)
        recovered = wal.open()
        assert [p for _, p in recovered] == records[:-1], f"cut at byte {cut}"
        assert [end for end, _ in recovered] == ends[:-1]
        assert segment(d, 1).stat().st_size == last_start, f"cut at byte {cut}"
        new = wal.append(b"after recovery")
        wal.close()
        assert new == Position(1, last_start + len(encode_record(b"after recovery")))
        assert [p for _, p in iter_records(d)] == [*records[:-1], b"after recovery"]
        shutil.rmtree(d)


def test_a_tail_of_zeros_is_a_torn_write_not_corruption(tmp_path):
    # After a power loss the file size may cover blocks whose data never reached the disk.
    records = payloads(4)
    ends = write_log(tmp_path / "wal", records)
    path = segment(tmp_path / "wal", 1)
    data = path.read_bytes()
    path.write_bytes(data[:ends[-2].offset] + bytes(len(data) - ends[-2].offset))
    wal = WAL(tmp_path / "wal")
    assert [p for _, p in wal.open()] == records[:-1]
    wal.close()
    assert path.stat().st_size == ends[-2].offset


def test_a_damaged_record_before_the_tail_refuses_to_open_at_every_byte(tmp_path):
    records = payloads(5)
    ends = write_log(tmp_path / "orig", records)
    path = segment(tmp_path / "orig", 1)
    whole = path.read_bytes()
    start, end = ends[1].offset, ends[2].offset  # the third record, two more after it

    for i in range(start, end):
        damaged = bytearray(whole)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(WALCorrupt, match=re.escape(str(path)) + f".* at byte {start};"):
            WAL(tmp_path / "orig").open()
        assert path.read_bytes() == bytes(damaged), f"byte {i}: the damaged log was modified"


def test_damage_in_a_segment_before_the_last_refuses_to_open(tmp_path):
    records = payloads(12)
    ends = write_log(tmp_path / "orig", records, segment_bytes=200)
    first = [e for e in ends if e.segment == 1]
    assert len(first) >= 2 and ends[-1].segment >= 3
    path = segment(tmp_path / "orig", 1)
    whole = path.read_bytes()
    last_start = first[-2].offset

    # A cut-off end is a torn write only in the last segment; here acknowledged records follow.
    path.write_bytes(whole[:-3])
    with pytest.raises(WALCorrupt, match=re.escape(str(path)) + f".* at byte {last_start};"):
        WAL(tmp_path / "orig").open()
    damaged = bytearray(whole)
    damaged[-1] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(WALCorrupt, match=re.escape(str(path)) + f".* at byte {last_start};"):
        list(iter_records(tmp_path / "orig"))


def test_segments_rotate_and_trim_deletes_only_whole_segments_before_a_position(tmp_path):
    d = tmp_path / "wal"
    records = [bytes([65 + i]) * 40 for i in range(10)]  # 52-byte records, two per segment
    ends = write_log(d, records, segment_bytes=120)
    assert [e.segment for e in ends] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert sorted(p.name for p in d.glob("*.wal")) == [segment(d, n).name for n in range(1, 6)]
    assert all(segment(d, n).stat().st_size == 104 for n in range(1, 6))

    wal = WAL(d, segment_bytes=120)
    assert [p for _, p in wal.open()] == records
    # Trimming at the end of the fifth record (in segment 3) keeps segment 3 whole.
    assert wal.trim(ends[4]) == 2
    assert [p for _, p in iter_records(d)] == records[4:]
    assert wal.trim(ends[4]) == 0
    # Even a position past everything never deletes the segment being written.
    assert wal.trim(Position(99, 0)) == 2
    assert [p for _, p in iter_records(d)] == records[8:]
    end = wal.append(b"K" * 40)
    wal.close()
    assert end.segment == 6
    wal = WAL(d, segment_bytes=120)
    assert [p for _, p in wal.open()] == [*records[8:], b"K" * 40]
    wal.close()


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path):
    d = tmp_path / "wal"
    ends = write_log(d, [b"small", b"x" * 500, b"after"], segment_bytes=100)
    assert [e.segment for e in ends] == [1, 2, 3]
    assert [p for _, p in iter_records(d)] == [b"small", b"x" * 500, b"after"]


def test_after_an_fsync_failure_the_wal_refuses_every_append(tmp_path):
    d = tmp_path / "wal"
    wal = WAL(d)
    wal.open()
    wal.append(b"before")
    fd = wal._file.fileno()
    real = os.dup(fd)
    read_end, write_end = os.pipe()
    try:
        # fdatasync on a pipe fails (EINVAL) while writes to it succeed: an honest stand-in
        # for a disk that accepted the write and then lost it.
        os.dup2(write_end, fd)
        with pytest.raises(WALFailed, match="fsync failed"):
            wal.append(b"lost")
        assert wal.failed
        # The disk is "fine" again, but a successful fsync now proves nothing (fsyncgate).
        os.dup2(real, fd)
        size = segment(d, 1).stat().st_size
        with pytest.raises(WALFailed, match="fsync failed"):
            wal.append(b"refused")
        assert segment(d, 1).stat().st_size == size
        wal.close()
    finally:
        for f in (real, read_end, write_end):
            os.close(f)
    assert [p for _, p in iter_records(d)] == [b"before"]


def test_a_record_appended_in_parts_is_the_record_of_the_parts_joined(tmp_path):
    big = bytes(range(256)) * 64  # past the file's buffer: written without a copy
    wal = WAL(tmp_path / "parts")
    wal.open()
    end = wal.append((b"head", big))
    wal.close()
    assert end == Position(1, len(encode_record(b"head" + big)))
    assert (tmp_path / "parts" / "00000001.wal").read_bytes() == encode_record(b"head" + big)
    assert [p for _, p in iter_records(tmp_path / "parts")] == [b"head" + big]
