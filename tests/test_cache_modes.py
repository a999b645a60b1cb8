"""Models built into the cache, and files seeded there, are readable by other users (as the umask says)."""

from __future__ import annotations

import os
import stat

from optimizer.cache import build_atomically, build_file_atomically, process_umask


def test_a_built_folder_and_its_files_get_the_umask_modes_not_owner_only(tmp_path):
    mask = process_umask()
    with build_atomically(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "tokenizer.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "model" / "sub").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "model" / "weights.bin").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "model" / "sub" / "tokenizer.json").stat().st_mode) == 0o666 & ~mask


def test_a_built_file_gets_the_umask_mode(tmp_path):
    with build_file_atomically(tmp_path / "vectors.npy") as tmp:
        tmp.write_bytes(b"data")
    assert stat.S_IMODE((tmp_path / "vectors.npy").stat().st_mode) == 0o666 & ~process_umask()


def test_the_umask_is_read_without_changing_it():
    before = os.umask(0o027)
    try:
        assert process_umask() == 0o027
        assert os.umask(0o027) == 0o027  # still what was set
    finally:
        os.umask(before)
