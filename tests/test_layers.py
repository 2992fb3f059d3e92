"""The layer contract of ``pyproject.toml`` ([tool.importlinter]): each layer of
``framework`` imports only the layers below it, and the library never imports the example
jobs or the tests. Read from the source by import-linter, so a new import that breaks it
fails here, naming the import chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_each_layer_imports_only_the_layers_below_it() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=PROJECT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout
