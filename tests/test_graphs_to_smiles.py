"""Tests for graphs_to_smiles.py (molret.cli.graphs_to_smiles) and for the decoded SMILES of graph libraries
(molret.library.reading, molret.library.caches): exact structures, one row per graph file with a reason for the
others, bad inputs as one error line, and the caches a rerun is served from."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("rdkit")

from conftest import ALTEGRAD, SHARED_DATA, run_script, write_graph  # noqa: E402
from molret.cli import graphs_to_smiles as D  # noqa: E402
from molret.chem.smiles_graph import graph_to_text, smiles_to_graph  # noqa: E402

import graphs_to_smiles  # noqa: E402  (pytest.ini: pythonpath = .)

# id -> SMILES: a neutral molecule, a charged species, an aromatic ring, a single ion, a diatomic
MOLECULES = {"1": "CCO", "2": "CC(=O)[O-]", "3": "Oc1ccccc1", "4": "[Na+]", "5": "N#N"}


def canonical(smiles: str) -> str:
    from rdkit import Chem
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def write_library(raw: Path, molecules=MOLECULES) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    for ident, smi in molecules.items():
        (raw / f"{ident}.graph").write_text(graph_to_text(*smiles_to_graph(smi)))
    return raw


def run_cli(capsys, *args):
    """(exit code, stdout, stderr) of graphs_to_smiles.py run in this process."""
    code, _, cap = run_script("graphs_to_smiles", capsys, *args)
    return code, cap.out, cap.err


def read_rows(path: Path) -> list:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and lines[0] == "id\tsmiles\tstatus"
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(r) == 3 for r in rows)
    return rows


# ---------------------------------------------------------------- the CLI

def test_cli_decodes_each_graph_and_gives_reasons(tmp_path, capsys):
    raw = write_library(tmp_path / "lib" / "raw")
    (raw / "6.graph").write_text("edgelist:\n0 x\n")                       # damaged: not a node index
    (raw / "7.graph").write_bytes(b"\xff\xfe\x00")                           # damaged: not text
    edges, ids = smiles_to_graph("CCO")
    write_graph(raw, 8, edges.T.tolist(), [ids[0], ids[1], 12345])          # a corrupted identifier
    out = tmp_path / "out.tsv"
    code, stdout, stderr = run_cli(capsys, tmp_path / "lib", "--out", out, "--cache-dir", tmp_path / "c",
                                   "--no-progress", "--workers", 1)
    assert code == 0, stderr
    rows = read_rows(out)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6", "7", "8"]       # every file, in id order
    got = {r[0]: (r[1], r[2]) for r in rows}
    for ident, smi in MOLECULES.items():
        assert got[ident] == (canonical(smi), "exact"), ident
    assert got["6"][0] == "" and got["6"][1].startswith("damaged graph file: line 2:")
    assert got["7"] == ("", "damaged graph file: not a text .graph file")
    assert got["8"][0] == "" and got["8"][1] != "exact" and got["8"][1]
    assert stdout.startswith(f"wrote {out}: 5 of 8 graphs decoded exactly (62.50%); not decoded: 2 damaged graph file, 1 ")
    assert "Traceback" not in stderr


def test_cli_rerun_is_served_from_the_cache(tmp_path, capsys, monkeypatch):
    write_library(tmp_path / "raw")
    cache = tmp_path / "cache"
    code, first, err = run_cli(capsys, tmp_path / "raw", "--out", tmp_path / "a.tsv", "--cache-dir", cache,
                               "--no-progress")
    assert code == 0 and "from the cache" not in first, err
    import molret.chem.store_decoding as SD
    import molret.data.graph_store as GS
    monkeypatch.setattr(SD, "decode_store", lambda *a, **k: pytest.fail("decoded again"))
    monkeypatch.setattr(GS, "build_graph_store", lambda *a, **k: pytest.fail("parsed again"))
    code, second, err = run_cli(capsys, tmp_path / "raw", "--out", tmp_path / "b.tsv", "--cache-dir", cache,
                                "--no-progress")
    assert code == 0 and "from the cache" in second, err
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    # a changed library is not served from the stale rows
    monkeypatch.undo()
    write_library(tmp_path / "raw", {"9": "C=O"})
    code, third, err = run_cli(capsys, tmp_path / "raw", "--out", tmp_path / "c.tsv", "--cache-dir", cache,
                               "--no-progress")
    assert code == 0 and "from the cache" not in third and "6 of 6 graphs" in third, err
    assert ["9", "C=O", "exact"] in read_rows(tmp_path / "c.tsv")


def test_cli_zip_and_data_folder_give_the_same_rows(tmp_path, capsys):
    raw = write_library(tmp_path / "graphs" / "raw")
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "raw.zip", "w") as z:
        for f in sorted(raw.glob("*.graph")):
            z.write(f, f"raw/{f.name}")
    outs = []
    for n, lib in enumerate((raw, data / "raw.zip", data)):
        out = tmp_path / f"{n}.tsv"
        code, _, err = run_cli(capsys, lib, "--out", out, "--no-cache", "--no-progress", "--workers", 1)
        assert code == 0, err
        outs.append(out.read_text())
    assert outs[0] == outs[1] == outs[2] and outs[0].count("\texact\n") == len(MOLECULES)


def _error_line(code, err) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_bad_inputs(tmp_path, capsys):
    out = tmp_path / "out.tsv"
    base = ["--out", out, "--cache-dir", tmp_path / "c", "--no-progress"]
    code, _, err = run_cli(capsys, tmp_path / "missing", *base)
    assert "does not exist" in _error_line(code, err)
    (tmp_path / "raw.zip").write_text("not a zip archive\n")
    code, _, err = run_cli(capsys, tmp_path / "raw.zip", *base)
    assert "not a readable zip file" in _error_line(code, err)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, tmp_path / "empty", *base)
    assert "no raw/, raw.zip or .graph files" in _error_line(code, err)
    (tmp_path / "mols.smi").write_text("CCO ethanol\n")
    code, _, err = run_cli(capsys, tmp_path / "mols.smi", *base)
    assert "not a graph library" in _error_line(code, err)
    write_library(tmp_path / "ok")
    code, _, err = run_cli(capsys, tmp_path / "ok", "--workers", 0, *base)
    assert "--workers" in _error_line(code, err)
    assert not out.exists()


def test_help_mentions_the_missing_stereochemistry(capsys):
    with pytest.raises(SystemExit) as e:
        graphs_to_smiles.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "no stereochemistry" in text and "id<TAB>smiles<TAB>status" in text


# ------------------------------------------------- graph libraries decoded

def test_graph_library_reads_decoded_smiles_and_caches_them(tmp_path, monkeypatch):
    from molret.library.reading import Library, read_library
    from molret.library.caches import read_library_graphs
    raw = write_library(tmp_path / "raw")
    (raw / "6.graph").write_text("edgelist:\nnot a graph\n")
    lib = read_library(raw)
    assert isinstance(lib, Library) and lib.kind == "graphs" and lib.smiles_decoded and lib.invalid == 1
    assert dict(zip(lib.ids, lib.smiles)) == {k: canonical(v) for k, v in MOLECULES.items()}
    assert lib.smiles_status == ["exact"] * len(MOLECULES)
    # through the library cache (the folder search.py uses): decoded once, then read back (statuses too)
    from molret.library.reading import library_cache_dir
    cache = library_cache_dir(raw, tmp_path / "base")
    first = read_library_graphs(raw, cache_dir=cache)
    assert first.smiles == lib.smiles and (cache / "decoded.npz").is_file() and (cache / "library.npz").is_file()
    import molret.chem.store_decoding as SD
    monkeypatch.setattr(SD, "decode_store", lambda *a, **k: pytest.fail("decoded again"))
    again = read_library_graphs(raw, cache_dir=cache)
    assert again.smiles == lib.smiles and again.smiles_status == lib.smiles_status and again.graphs is not None
    (cache / "library.npz").unlink()   # parsed again, the decoding read from decoded.npz
    assert read_library_graphs(raw, cache_dir=cache).smiles == lib.smiles
    # graphs_to_smiles.py with the same --cache-dir reuses that decoding too
    dec = D.decode_graph_library(raw, tmp_path / "base", workers=1)
    assert not dec.cached and dec.smiles[:len(MOLECULES)] == lib.smiles
    assert dec.status[-1].startswith("damaged graph file")


def test_smiles_library_is_not_decoded(tmp_path):
    from molret.library.reading import read_library
    p = tmp_path / "mols.smi"
    p.write_text("C[C@H](N)C(=O)O alanine\n")
    lib = read_library(p)
    assert lib.smiles == ["C[C@H](N)C(=O)O"] and lib.smiles_status is None and not lib.smiles_decoded


def test_smiles_map_takes_precedence_over_decoded_smiles():
    from molret.search.engine import FolderSmiles, merge_smiles_map
    smap = {"1": "C[C@H](N)C(=O)O"}
    assert merge_smiles_map("CC(N)C(=O)O", "1", smap, True) == ("C[C@H](N)C(=O)O", False)   # map replaces
    assert merge_smiles_map("CC(N)C(=O)O", "2", smap, True) == ("CC(N)C(=O)O", True)        # decoded kept
    assert merge_smiles_map(None, "2", smap, True) == (None, False)                         # undecodable
    assert merge_smiles_map("CCO", "1", smap, False) == ("CCO", False)                      # SMILES library
    assert merge_smiles_map(None, "1", smap, False) == ("C[C@H](N)C(=O)O", False)
    folder = FolderSmiles(["CCO", "", "CC"], ["1", "2", "3"], smap, decoded=True)
    assert list(folder) == ["C[C@H](N)C(=O)O", None, "CC"]
    assert [folder.is_decoded(j) for j in range(3)] == [False, False, True]


def test_cards_and_footnote_say_no_stereochemistry():
    from molret.chem.graph_decoder import NO_STEREO_NOTE
    from molret.search.render import html_report, render_card
    from molret.search.engine import Hit
    from molret.cli.search import stereo_footnote
    decoded, mapped, unknown = Hit(1, 0, "1", "CCO", 0.5, True), Hit(2, 1, "2", "CC", 0.4), Hit(3, 2, "3", None, 0.3)
    card = render_card(decoded)
    assert "<svg" in card and "no stereo" in card and NO_STEREO_NOTE in card
    assert "no stereo" not in render_card(mapped) and "structure unknown" in render_card(unknown)
    assert NO_STEREO_NOTE in html_report(["q"], [[decoded, mapped]], "lib", "model")
    assert NO_STEREO_NOTE not in html_report(["q"], [[mapped, unknown]], "lib", "model")
    assert stereo_footnote([[decoded], [decoded]]) == f"note: the SMILES above were {NO_STEREO_NOTE}"
    assert stereo_footnote([[decoded, mapped, unknown]]).startswith("note: 1 of the 2 SMILES above were")
    assert stereo_footnote([[mapped, unknown]]) is None


# ------------------------------------------------------ the challenge data

def test_challenge_sample_decodes_to_the_known_structures(tmp_path, capsys):
    """40 graphs of raw.zip whose ChEBI-20 SMILES give exactly their official graph: each decodes to that
    structure, up to stereochemistry."""
    if not (ALTEGRAD / "raw.zip").exists() or not (SHARED_DATA / "chebi20" / "validation.txt").is_file():
        pytest.skip("shared challenge data (../shared/data) not available")
    from collections import Counter
    from rdkit import Chem
    from molret.utils.errors import MolretError
    from molret.chem.graph_format import parse_graph_text
    from molret.library.reading import read_smiles_map
    known = read_smiles_map(SHARED_DATA / "chebi20" / "validation.txt")
    chosen = {}
    with zipfile.ZipFile(ALTEGRAD / "raw.zip") as z:
        members = {Path(n).stem: n for n in z.namelist() if n.endswith(".graph")}
        for ident in sorted(known, key=int)[::50]:
            if ident not in members:
                continue
            text = z.read(members[ident]).decode()
            try:
                mine = Counter(int(i) for i in smiles_to_graph(known[ident])[1])
            except MolretError:
                continue
            if mine == Counter(int(i) for i in parse_graph_text(text)[1]):   # the same graph
                chosen[members[ident]] = text
            if len(chosen) == 40:
                break
    assert len(chosen) == 40
    with zipfile.ZipFile(tmp_path / "raw.zip", "w") as out:
        for name, text in chosen.items():
            out.writestr(name, text)
    code, stdout, err = run_cli(capsys, tmp_path / "raw.zip", "--out", tmp_path / "s.tsv", "--no-cache",
                                "--no-progress")
    assert code == 0, err
    rows = read_rows(tmp_path / "s.tsv")
    assert len(rows) == 40 and all(r[2] == "exact" for r in rows), stdout

    def flat(smiles):
        mol = Chem.MolFromSmiles(smiles)
        Chem.RemoveStereochemistry(mol)
        return Chem.MolToSmiles(mol)
    for ident, smi, _ in rows:
        assert "@" not in smi and flat(smi) == flat(known[ident]), ident


def test_known_smiles_join_the_table_and_key_the_cache(tmp_path, capsys):
    """Titanium tetrachloride: no environment of it is in the shipped table and the wide search cannot
    guess a tetravalent titanium; a SMILES file that knows it makes the graph decodable."""
    raw = write_library(tmp_path / "lib" / "raw", {"7": "Cl[Ti](Cl)(Cl)Cl", "1": "CCO"})
    out = tmp_path / "out.tsv"
    code, _, _ = run_cli(capsys, raw, "--out", out, "--workers", 1, "--cache-dir", tmp_path / "c", "--no-progress")
    assert code == 0
    rows = {r[0]: r for r in read_rows(out)}
    assert rows["7"][1] == "" and rows["7"][2].startswith("no structure fits")
    known = tmp_path / "known.tsv"
    known.write_text("id\tsmiles\nx\tCl[Sn](Cl)(Cl)Cl\ny\tCl[Ti](Cl)(Cl)Cl\n")
    code, _, _ = run_cli(capsys, raw, "--out", out, "--workers", 1, "--cache-dir", tmp_path / "c", "--no-progress",
                         "--known-smiles", known)
    assert code == 0
    rows = {r[0]: r for r in read_rows(out)}
    assert rows["7"][2] == "exact" and canonical(rows["7"][1]) == canonical("Cl[Ti](Cl)(Cl)Cl")
    assert rows["1"][2] == "exact"
    # without the file again: the cache of the plain table answers, not the one with the known SMILES
    code, _, _ = run_cli(capsys, raw, "--out", out, "--workers", 1, "--cache-dir", tmp_path / "c", "--no-progress")
    assert {r[0]: r for r in read_rows(out)}["7"][1] == ""
