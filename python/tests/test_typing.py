"""``mypy --strict`` over the package and ``typed_example.py``; and proof that the narrowing is real: the
same checker rejects reading a text message's field in the ``json`` branch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "src" / "dify_plugin_client"


def mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null", *targets],
        capture_output=True, text=True, timeout=600, cwd=TESTS.parent,
    )


def test_package_and_typed_example_pass_mypy_strict() -> None:
    done = mypy(str(PACKAGE), str(TESTS / "typed_example.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_wrong_branch_access_is_a_type_error(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from dify_plugin_client.entities.tool import ToolInvokeMessageUnion\n"
        "def show(msg: ToolInvokeMessageUnion) -> str:\n"
        "    if msg.type == 'json':\n"
        "        return msg.message.text\n"
        "    return ''\n"
    )
    done = mypy(str(wrong))
    assert done.returncode == 1
    assert '"JsonMessage" has no attribute "text"' in done.stdout, done.stdout
