"""The compact CCD: identical templates whether read from biotite's dictionary or from the user cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import biotite.structure.info as info
import numpy as np
import pytest

from moldb.ingest import components


def _templates(cache: Path, monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> dict[str, components.Template]:
    monkeypatch.setenv("MOLDB_CACHE_DIR", str(cache))
    components._ccd.cache_clear()
    try:
        return components.templates_for(ids)
    finally:
        components._ccd.cache_clear()


def _check_against_biotite(got: dict[str, components.Template]) -> None:
    for cid, t in got.items():
        ref = info.residue(cid)
        assert t.atom_names == ref.atom_name.tolist(), cid
        assert t.elements == ref.element.tolist(), cid
        pairs = {tuple(sorted(p)) for p in t.bonds[:, :2].tolist()}
        ref_pairs = {tuple(sorted(p)) for p in ref.bonds.as_array()[:, :2].tolist()}
        assert pairs == ref_pairs, cid


def test_templates_come_from_the_cache_file_once_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = ["ALA", "HEM", "ATP", "ZN", "NOT_A_COMPONENT"]
    first = _templates(tmp_path, monkeypatch, ids)
    assert sorted(first) == ["ALA", "ATP", "HEM", "ZN"]  # unknown ids are left out
    assert first["ALA"].atom_names[:5] == ["N", "CA", "C", "O", "CB"]
    assert len(first["HEM"].atom_names) == 75 and first["ZN"].bonds.shape == (0, 4)
    _check_against_biotite(first)
    (cached,) = tmp_path.glob("ccd-biotite*.npz")
    assert 20e6 < cached.stat().st_size < 80e6 and not list(tmp_path.glob("*.partial"))
    # a fresh process reads the cache (it fails if the dictionary is touched) and gets the same templates
    code = ("import biotite.structure.io.pdbx as p, moldb.ingest.components as c\n"
            "p.BinaryCIFFile.read = None\n"
            "t = c.templates_for(['HEM'])['HEM']\n"
            "print(len(t.atom_names), t.bonds.shape[0], int(t.bonds[:, 2].sum()), int(t.bonds[:, 3].sum()))")
    env = {**os.environ, "MOLDB_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    hem = first["HEM"].bonds
    assert out.split() == [str(75), str(hem.shape[0]), str(int(hem[:, 2].sum())), str(int(hem[:, 3].sum()))]


def test_a_corrupt_cache_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _templates(tmp_path, monkeypatch, ["ALA"])
    (cached,) = tmp_path.glob("ccd-biotite*.npz")
    cached.write_bytes(b"not an npz")
    got = _templates(tmp_path, monkeypatch, ["GTP"])
    _check_against_biotite(got)
    with np.load(cached) as z:  # rewritten whole
        assert "a_runs" in z.files


def test_an_unwritable_cache_path_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    got = _templates(blocker / "moldb", monkeypatch, ["ALA", "GLY"])
    _check_against_biotite(got)
    assert blocker.read_text().startswith("a file")
