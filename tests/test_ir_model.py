"""Pure IR: scope DAG enumeration/validation, descriptor round trips, TLS selection dialects, packing."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldb.ir import TLS, AltlocStates, Edge, GenericDescriptor, IllegalStateError, ScopeDAG, ScopeNode
from moldb.ir.descriptors import descriptor_from
from moldb.ir.tls_select import SelectionError, buster_mask, phenix_mask, selection_mask
from moldb.storage.ir_store import pack_arrays, unpack_arrays


def small_dag() -> ScopeDAG:
    return ScopeDAG([ScopeNode("ligand", ["A", "B"]),
                     ScopeNode("loop", ["a1", "a2", "b1"], parent="ligand",
                               activation={"A": ["a1", "a2"], "B": ["b1"]})])


def test_nested_dag_yields_exactly_the_legal_states() -> None:
    dag = small_dag()
    gen = dag.joint_states()
    assert iter(gen) is gen  # a generator, not a list
    got = sorted((s["ligand"], s["loop"]) for s in gen)
    assert got == [("A", "a1"), ("A", "a2"), ("B", "b1")]
    assert dag.count() == 3
    dag.validate({"ligand": "A", "loop": "a2"})


def test_illegal_joint_state_names_the_choice() -> None:
    dag = small_dag()
    msg = r"'loop' = 'b1' is not allowed: 'ligand' = 'A' activates \['a1', 'a2'\]"
    with pytest.raises(IllegalStateError, match=msg):
        dag.validate({"ligand": "A", "loop": "b1"})
    with pytest.raises(IllegalStateError, match="'ligand' = 'C' is not one of its states"):
        dag.validate({"ligand": "C", "loop": "b1"})
    with pytest.raises(IllegalStateError, match="'loop' has no state"):
        dag.validate({"ligand": "B"})
    with pytest.raises(IllegalStateError, match="unknown node"):
        dag.validate({"ligand": "B", "loop": "b1", "x": "1"})


def test_inactive_child_and_independent_nodes() -> None:
    dag = ScopeDAG([ScopeNode("p", ["on", "off"]),
                    ScopeNode("c", ["x", "y"], parent="p", activation={"on": ["x", "y"]}),
                    ScopeNode("free", ["1", "2"])])
    states = list(dag.joint_states())
    assert len(states) == dag.count() == 6  # (on: x|y, off: inactive) x 2 independent states
    assert {"p": "off", "c": None, "free": "2"} in states
    with pytest.raises(IllegalStateError, match="'p' = 'off' activates none"):
        dag.validate({"p": "off", "c": "x", "free": "1"})


def test_dag_rejects_bad_edges_and_cycles() -> None:
    with pytest.raises(Exception, match="unknown parent"):
        ScopeDAG([ScopeNode("c", ["x"], parent="nope")])
    with pytest.raises(Exception, match="activates"):
        ScopeDAG([ScopeNode("p", ["A"]), ScopeNode("c", ["x"], parent="p", activation={"A": ["zz"]})])
    with pytest.raises(Exception, match="cycle"):
        ScopeDAG([ScopeNode("a", ["1"], parent="b", activation={"1": ["1"]}),
                  ScopeNode("b", ["1"], parent="a", activation={"1": ["1"]})])


def test_million_cartesian_thousand_legal_is_linear_in_legal() -> None:
    comp = ScopeNode("composition", [f"c{i}" for i in range(10)])
    loop = ScopeNode("loop", [f"l{i}" for i in range(100)], parent="composition",
                     activation={f"c{i}": [f"l{10 * i + j}" for j in range(10)] for i in range(10)})
    rot = ScopeNode("rotamer", [f"r{i}" for i in range(1000)], parent="loop",
                    activation={f"l{i}": [f"r{10 * i + j}" for j in range(10)] for i in range(100)})
    dag = ScopeDAG([comp, loop, rot])
    assert len(comp.states) * len(loop.states) * len(rot.states) == 10**6
    assert dag.count() == 1000
    tracemalloc.start()
    t0 = time.perf_counter()
    n = sum(1 for _ in dag.joint_states())
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 1000 and dt < 0.5 and peak < 200_000, (dt, peak)


def test_dag_from_descriptors_and_round_trip() -> None:
    parent = GenericDescriptor(id="ligand", regime=1, mode="B", composition="nested_under", states=["bound", "apo"])
    child = AltlocStates(id="altloc", states=["A", "B"], rows=np.array([3, 4]), state=np.array([0, 1]),
                         occupancy=np.array([0.6, 0.4]), group=np.array([0, 0]),
                         edges=[Edge(kind="nested_under", parent="ligand", activation={"bound": ["A", "B"],
                                                                                      "apo": ["A"]})])
    dag = ScopeDAG.from_descriptors([parent, child])
    assert dag.count() == 3
    back = descriptor_from(child.spec(), child.arrays())
    assert isinstance(back, AltlocStates) and back.edges[0].activation["apo"] == ["A"]
    assert back.occupancy.tolist() == [0.6, 0.4]
    g = descriptor_from(parent.spec(), {})
    assert g.states == ["bound", "apo"]


def test_tls_model_validates_shapes() -> None:
    with pytest.raises(ValueError, match="rows for 2 groups"):
        TLS(groups=["1", "2"], T=np.zeros((1, 3, 3)), L=np.zeros((2, 3, 3)), S=np.zeros((2, 3, 3)),
            origin=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected shape"):
        TLS(groups=["1"], T=np.zeros((1, 3)), L=np.zeros((1, 3, 3)), S=np.zeros((1, 3, 3)), origin=np.zeros((1, 3)))


VIEW = {"auth_asym_id": np.array(["A"] * 5 + ["B"] * 3, dtype=object),
        "auth_seq_id": np.array([1, 2, 2, 3, 10, 1, 2, 3]),
        "label_comp_id": np.array(["ALA"] * 8, dtype=object), "label_atom_id": np.array(["CA"] * 8, dtype=object),
        "label_alt_id": np.array([""] * 8, dtype=object), "type_symbol": np.array(["C"] * 8, dtype=object)}


def test_three_tls_selection_dialects() -> None:
    assert phenix_mask(VIEW, "chain 'A' and (resid 2 through 3 )").tolist() == [0, 1, 1, 1, 0, 0, 0, 0]
    assert phenix_mask(VIEW, "resseq 2:3").sum() == 5
    assert phenix_mask(VIEW, "(chain A and resid 10) or (chain B and not resid 1)").tolist() == [0, 0, 0, 0, 1, 0, 1, 1]
    assert buster_mask(VIEW, "{ A|1 - A|2 B|3 }").tolist() == [1, 1, 1, 0, 0, 0, 0, 1]
    assert selection_mask(VIEW, "'{ B|* }'").tolist() == [0] * 5 + [1] * 3
    for bad in ("chain A and segid X", "{ A|1 - }", "resid 1 through"):
        with pytest.raises(SelectionError):
            selection_mask(VIEW, bad)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=200), st.lists(st.floats(allow_nan=False), max_size=50))
def test_pack_arrays_round_trip(ints: list[int], floats: list[float]) -> None:
    arrays = {"i": np.array(ints, dtype=np.int64), "f": np.array(floats, dtype=np.float64),
              "m": np.arange(12, dtype=np.int32).reshape(3, 4)}
    got = unpack_arrays(pack_arrays(arrays, {"names": [str(i) for i in ints[:5]]}))
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    assert got["names"] == [str(i) for i in ints[:5]]
