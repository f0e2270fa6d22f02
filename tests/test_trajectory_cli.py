"""``moldb ingest --topology`` and ``moldb frames``: chosen frames and atoms out as PDB / mmCIF / XYZ / H5MD."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gemmi
import numpy as np
import pytest
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from tests.conftest import data

pytest.importorskip("MDAnalysis")
h5py = pytest.importorskip("h5py")

XTC, TOP = "traj/1l2y/1l2y.xtc", "pdb/1l2y.pdb.gz"


@pytest.fixture(scope="module")
def trp(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A store with TRP (1L2Y XTC, 38 frames x 304 atoms, ingested through the CLI) and 1L2Y (no trajectory)."""
    d = tmp_path_factory.mktemp("cli_traj")
    uri = str(d / "store")
    r = CliRunner()
    assert r.invoke(app, ["init", uri]).exit_code == 0
    res = r.invoke(
        app, ["ingest", str(data(XTC)), "--topology", str(data(TOP)), "--entry", "TRP", "--store", uri, "--json"]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)["ingested"][0]
    assert (got["entry"], got["n_atoms"], got["n_models"]) == ("TRP", 11552, 38)  # frames: its first model
    assert r.invoke(app, ["ingest", str(data(TOP)), "--store", uri]).exit_code == 0
    st = moldb.open(uri)
    st.add_descriptor("TRP", moldb.FrameLabels("cluster", np.arange(38) % 3, derived_from="test"))
    st.close()
    return uri, d


def _run(uri: str, *args: str) -> object:
    return CliRunner().invoke(app, [*args, "--store", uri])


def test_ingest_trajectory_without_topology_fails_clearly(trp: tuple[str, Path]) -> None:
    uri, _ = trp
    res = _run(uri, "ingest", str(data("traj/1l2y/1l2y.dcd")), "--entry", "NOTOP")
    assert res.exit_code == 1
    assert "topology=" in res.output and "304 atoms" in res.output


def test_frames_to_multi_model_pdb(trp: tuple[str, Path]) -> None:
    uri, d = trp
    out = d / "ca.pdb"
    res = _run(uri, "frames", "TRP", "--frames", "0:38:10", "--select", "name CA", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert "wrote 4 frame(s) x 20 atoms of TRP v1" in res.output
    st = moldb.open(uri)
    ref = st.trajectory("TRP").frames(slice(0, 38, 10), select="name CA")
    s = gemmi.read_structure(str(out))
    assert len(s) == 4
    for k, model in enumerate(s):
        atoms = [a for ch in model for r in ch for a in r]
        assert [a.name for a in atoms] == ["CA"] * 20
        np.testing.assert_allclose([a.pos.tolist() for a in atoms], ref[k], atol=6e-4)  # PDB's 3 decimals
    assert [r.name for r in s[0][0]][:3] == ["ASN", "LEU", "TYR"]


def test_frames_to_cif_xyz_and_h5md(trp: tuple[str, Path]) -> None:
    uri, d = trp
    st = moldb.open(uri)
    t = st.trajectory("TRP")
    res = _run(uri, "frames", "TRP", "--frames", "5,37", "-o", str(d / "two.cif.gz"), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert (info["format"], info["n_frames"], info["n_atoms"], info["first_frames"]) == ("mmcif", 2, 304, [5, 37])
    s = gemmi.read_structure(str(d / "two.cif.gz"))
    assert len(s) == 2 and s[1].count_atom_sites() == 304
    np.testing.assert_allclose(s[1][0][0][0].pos.tolist(), t.frame(37)[0], atol=6e-4)
    res = _run(uri, "frames", "TRP", "--frames", "-1", "-o", str(d / "last.xyz"))
    assert res.exit_code == 0, res.output
    lines = (d / "last.xyz").read_text().splitlines()
    assert lines[0] == "304" and lines[1].startswith("TRP v1 frame 37 time")
    first = lines[2].split()
    assert first[0] == "N"
    np.testing.assert_allclose([float(x) for x in first[1:]], t.frame(37)[0], atol=1e-5)
    res = _run(uri, "frames", "TRP", "--select", "name CA", "--frames", "::2", "-o", str(d / "ca.h5md"))
    assert res.exit_code == 0, res.output
    from MDAnalysis.coordinates.H5MD import H5MDReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = H5MDReader(str(d / "ca.h5md"))
    assert (r.n_frames, r.n_atoms) == (19, 20)
    np.testing.assert_array_equal(r[3].positions, t.frame(6, select="name CA"))
    assert r[3].time == pytest.approx(t.time[6])


def test_frames_where_picks_labelled_frames(trp: tuple[str, Path]) -> None:
    uri, d = trp
    res = _run(uri, "frames", "TRP", "--where", "cluster == 2", "--frames", "0:20", "-o", str(d / "c2.pdb"), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["first_frames"] == [2, 5, 8, 11, 14, 17]
    assert len(gemmi.read_structure(str(d / "c2.pdb"))) == 6
    with pytest.raises(moldb.ValidationError, match="1L2Y has no frame labels or observables"):
        moldb.open(uri).frames_where("cluster == 1", entry="1L2Y")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frames", "NOPE", "-o", "x.pdb"], "entry NOPE is not in the store"),
        (["frames", "1L2Y", "-o", "x.pdb"], "has no trajectory"),
        (["frames", "TRP", "--frames", "0:x", "-o", "x.pdb"], "use START:STOP[:STEP]"),
        (["frames", "TRP", "--frames", "0:10:0", "-o", "x.pdb"], "step of a slice cannot be 0"),
        (["frames", "TRP", "--frames", "38", "-o", "x.pdb"], "frame 38 is out of range for TRP: it has 38 frames"),
        (["frames", "TRP", "--frames", "40:50", "-o", "x.pdb"], "no frames selected"),
        (["frames", "TRP", "--select", "name QQ", "-o", "x.pdb"], "matches no atom"),
        (["frames", "TRP", "--select", "chain (", "-o", "x.pdb"], "position"),
        (["frames", "TRP", "-o", "x.txt"], "cannot tell the format"),
        (["frames", "TRP", "-o", "x.pdb", "--where", "energy < 1"], "unknown column 'energy'"),
    ],
)
def test_frames_errors_are_clear(trp: tuple[str, Path], args: list[str], message: str) -> None:
    uri, d = trp
    args = [str(d / a) if a.startswith("x.") else a for a in args]
    res = _run(uri, *args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output
    assert not any(d.glob("x.*"))


def test_frames_where_of_an_older_version(tmp_path: Path) -> None:
    """``--version`` picks the trajectory the query runs on, not only the one the frames come from."""
    uri = str(tmp_path / "store")
    st = moldb.create(uri)
    st.ingest(data(XTC), topology=data(TOP), entry="TRP")
    st.add_descriptor("TRP", moldb.FrameLabels("cluster", np.arange(38) % 3, derived_from="test"))
    st.deposit(data("mmcif/5zmz.cif.gz"), entry="TRP", message="another structure: v2 reads no trajectory")
    st.close()
    args = ["frames", "TRP", "--where", "cluster == 2", "--frames", "0:20", "-o", str(tmp_path / "c2.pdb"), "--json"]
    res = _run(uri, *args, "--version", "1")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["first_frames"] == [2, 5, 8, 11, 14, 17]
    res = _run(uri, *args)
    assert res.exit_code == 2 and "TRP v2 has no trajectory of its own" in res.output  # 2: not found
