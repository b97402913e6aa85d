"""fpnlab.outputs owns every file the lab writes: the package's source holds no other write, and its rules hold.

The scan reads every module but outputs.py and flags any call that writes, renames or deletes a file
(`open(..., "w")`, `Path.write_text`, `torch.save` or `savefig` to a path, `os.replace`, `shutil.move`,
`tempfile.*`, ...). A figure or a checkpoint serialised into an `io.BytesIO` first is not a write.
"""

from __future__ import annotations

import ast
import os
import stat

import pytest

from fpnlab.errors import FpnlabError
from fpnlab.outputs import (
    TEMP_SUFFIX,
    check_output_file,
    folder_entries,
    make_subfolder,
    open_append,
    open_lock,
    write_atomic,
    write_new,
)
from tests.test_layout import PACKAGE

OWNER = PACKAGE / "outputs.py"
MODULE_CALLS = {  # module -> its functions that write, rename or delete
    "os": {"open", "replace", "rename", "renames", "remove", "unlink", "rmdir", "removedirs", "mkdir", "makedirs"}
    | {"link", "symlink", "truncate", "mkfifo", "chmod"},
    "shutil": {"move", "copy", "copy2", "copyfile", "copytree", "rmtree", "copyfileobj"},
    "tempfile": {"mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "TemporaryDirectory"},
    "np": {"save", "savez", "savetxt"},
    "numpy": {"save", "savez", "savetxt"},
}
METHODS = {"write_text", "write_bytes", "unlink", "rename", "mkdir", "rmdir", "touch", "symlink_to", "hardlink_to"}
SAVERS = {"save": 0, "savefig": 0, "imsave": 0}  # method -> index of the destination argument


def in_memory(node: ast.AST, buffers: set[str]) -> bool:
    """A destination that is a BytesIO: `io.BytesIO()` itself, or a name assigned one in the same function."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "BytesIO":
        return True
    return isinstance(node, ast.Name) and node.id in buffers


def raw_writes(source: str) -> list[str]:
    """Every call in `source` that writes a file by itself: 'line N: what'."""
    tree = ast.parse(source)
    buffers = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and in_memory(node.value, set())
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        what = write_call(node, buffers)
        if what:
            found.append(f"line {node.lineno}: {what}")
    return found


def write_call(node: ast.Call, buffers: set[str]) -> str | None:
    """What kind of write the call `node` is, or None."""
    func = node.func
    if isinstance(func, ast.Name) and func.id == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        writes = not isinstance(mode, ast.Constant) or any(c in str(mode.value) for c in "wax+")
        return "open() for writing" if mode is not None and writes else None
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    if owner in MODULE_CALLS and func.attr in MODULE_CALLS[owner]:
        return f"{owner}.{func.attr}"
    if owner == "torch" and func.attr == "save":
        return None if len(node.args) > 1 and in_memory(node.args[1], buffers) else "torch.save to a path"
    if func.attr in SAVERS and owner not in ("torch",):
        index = SAVERS[func.attr]
        target = node.args[index] if len(node.args) > index else None
        return None if target is not None and in_memory(target, buffers) else f".{func.attr} to a path"
    if func.attr in METHODS:
        return f".{func.attr}()"
    if func.attr == "open" and any(isinstance(a, ast.Constant) and set(str(a.value)) & set("wax+") for a in node.args):
        return ".open() for writing"
    if func.attr == "replace" and len(node.args) == 1 and not node.keywords:  # Path.replace (str.replace takes 2)
        return "Path.replace"
    return None


def test_no_module_but_outputs_writes_a_file():
    found = {
        str(path.relative_to(PACKAGE.parent)): writes
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER and (writes := raw_writes(path.read_text()))
    }
    assert found == {}, "write through fpnlab.outputs instead: " + repr(found)


@pytest.mark.parametrize(
    "line",
    [
        "open(p, 'w')",
        "open(p, mode='ab')",
        "open(p, 'r+')",
        "p.open('a')",
        "Path(p).write_text('x')",
        "p.write_bytes(b'')",
        "torch.save(obj, p)",
        "fig.savefig(p, dpi=100)",
        "Image.fromarray(a).save(p, 'JPEG')",
        "os.replace(a, b)",
        "os.rename(a, b)",
        "os.remove(p)",
        "p.unlink()",
        "p.rename(q)",
        "p.replace(q)",
        "p.mkdir(parents=True)",
        "shutil.move(a, b)",
        "shutil.copy(a, b)",
        "shutil.rmtree(p)",
        "tempfile.mkstemp()",
        "np.save(p, a)",
    ],
)
def test_the_scan_finds_each_kind_of_write(line):
    assert len(raw_writes(line)) == 1, line


@pytest.mark.parametrize(
    "code",
    [
        "open(p)",
        "open(p, 'rb')",
        "p.read_text()",
        "'a.b'.replace('.', '/')",
        "dataclasses.replace(cfg, lr=1)",
        "buffer = io.BytesIO()\ntorch.save(obj, buffer)\nfig.savefig(buffer)",
        "image.save(io.BytesIO(), 'PNG')",
    ],
)
def test_the_scan_lets_reads_and_in_memory_writes_pass(code):
    assert raw_writes(code) == []


# --- the rules -------------------------------------------------------------------------------------------


def test_a_link_at_the_target_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "out.json").symlink_to(victim)
    with pytest.raises(FpnlabError, match=r"out.json is a symbolic link; fpnlab writes through no link"):
        write_atomic(tmp_path / "out.json", "{}", "record", may_replace=lambda p: True)
    assert victim.read_text() == "mine" and os.path.islink(tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]  # no temporary file left


def test_an_existing_file_is_replaced_only_when_the_caller_knows_it_as_the_labs(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("the user's")
    with pytest.raises(FpnlabError, match=r"a.txt already exists and was not written by fpnlab"):
        write_atomic(path, "new", "text")
    assert path.read_text() == "the user's"
    write_atomic(path, "new", "text", may_replace=lambda p: p.read_text() == "the user's")
    assert path.read_text() == "new"


def test_links_or_users_files_at_any_temporary_name_are_never_opened(tmp_path, monkeypatch):
    """The temporary name is fresh each time and created exclusively: a name taken is skipped, not opened."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    names = iter([".c.pt.aaa" + TEMP_SUFFIX, ".c.pt.bbb" + TEMP_SUFFIX])
    (tmp_path / (".c.pt.aaa" + TEMP_SUFFIX)).symlink_to(victim)  # a link where the first try lands
    monkeypatch.setattr("fpnlab.outputs.temporary_name", lambda path: path.with_name(next(names)))
    write_atomic(tmp_path / "c.pt", b"data", "checkpoint")
    assert (tmp_path / "c.pt").read_bytes() == b"data" and victim.read_text() == "mine"
    assert os.path.islink(tmp_path / (".c.pt.aaa" + TEMP_SUFFIX))


def test_write_new_never_replaces_and_never_follows(tmp_path):
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for name in ("a", "b"):
        with pytest.raises(FpnlabError, match="already exists; fpnlab does not overwrite it"):
            write_new(tmp_path / name, "y", "file")
    assert (tmp_path / "a").read_text() == "x"


@pytest.mark.parametrize("opener", [open_lock, open_append])
def test_locks_and_logs_open_no_link_and_no_pipe(tmp_path, opener):
    victim = tmp_path / "victim"
    victim.write_text("mine")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(FpnlabError, match=r"could not open x .*link: it is a symbolic link"):
        opener(tmp_path / "link", "x")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FpnlabError, match=r"x .*pipe is not a regular file"):
        opener(tmp_path / "pipe", "x")  # returns at once: opened without waiting for a writer
    assert victim.read_text() == "mine"


def test_a_folder_the_lab_makes_is_never_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FpnlabError, match=r"train is a link or a file, not a folder"):
        make_subfolder(tmp_path / "out" / "train", "dataset folder")
    assert make_subfolder(tmp_path / "out" / "val", "dataset folder").is_dir()
    assert folder_entries(tmp_path / "out") == [tmp_path / "out" / "train"]  # listed, not followed


def test_an_output_that_is_the_input_through_a_hard_link_is_refused(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"png")
    os.link(image, tmp_path / "copy.png")
    with pytest.raises(FpnlabError, match=r"--out .*copy.png is the input file itself"):
        check_output_file(tmp_path / "copy.png", "--out", inputs=(image,), may_replace=lambda p: True)
    assert stat.S_ISREG(os.lstat(tmp_path / "copy.png").st_mode) and image.read_bytes() == b"png"
