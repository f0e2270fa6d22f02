"""Every file of the shared corpus ingests, or is refused with a clear error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

import moldb
from tests.conftest import DATA

DIRS = ("mmcif", "bcif", "mmtf", "pdb", "modelcif", "ihm")
FILES = sorted(p for d in DIRS for p in (DATA / d).glob("*") if p.is_file() and not p.name.endswith(".json"))

# file name -> words the refusal must contain (decided file by file, see tests/data/README.md)
REFUSED = {
    "200l_modelserver.bcif": "BinaryCIF",          # biotite cannot deserialise this encoder's output
    "empty-all0.mmtf": "no atoms",                  # MMTF test-suite edge cases: valid but empty
    "empty-numChains1.mmtf": "no atoms",
    "empty-numModels1.mmtf": "no atoms",
    "empty-mmtfVersion99999999.mmtf": "not supported",
    "5moo_header.pdb.gz": "no ATOM/HETATM",        # header-only PDB file
    "pdb1gdr.ent.gz": "charge",                     # malformed charge column
    # IHM sphere-only models (PDBDEV_00000001/2/21) now ingest: spheres as particles, radii kept (test_ihm_states)
    "imp_rnapolii_tutorial_output.cif.gz": "no coordinates",  # IHM restraints/protocols, no model
}


def test_corpus_is_present() -> None:
    assert len(FILES) > 100


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    return moldb.create(tmp_path_factory.mktemp("corpus") / "store")


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_ingest_or_clear_refusal(corpus_store: moldb.Store, path: Path) -> None:
    entry = f"{path.parent.name}_{path.name.split('.')[0]}".replace("-", "_")[:60]
    if path.name in REFUSED:
        before = corpus_store.entries().num_rows
        with pytest.raises(moldb.MoldbError) as info:
            corpus_store.ingest(path, entry=entry)
        assert path.name in str(info.value) and REFUSED[path.name] in str(info.value)
        assert corpus_store.entries().num_rows == before  # nothing half-written
        return
    v = corpus_store.ingest(path, entry=entry)
    s = corpus_store.get(entry)
    assert v.n_atoms == s.atoms.num_rows > 0
    assert s.version.source["sha256"] == v.source["sha256"]
