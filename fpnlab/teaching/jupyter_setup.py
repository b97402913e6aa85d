"""The lab's JupyterLab settings and its notebook hygiene, set up by `make lab`
(python -m fpnlab.teaching.jupyter_setup).

    install_lab_settings()     JupyterLab starts quietly: no "Jupyter news" or update notification over
                               the notebooks (written to the environment's settings overrides.json)
    install_notebook_filter()  nbstripout as this checkout's git filter: git sees the notebooks without
                               outputs, so running them never dirties the checkout, while the files on
                               disk keep the outputs the student saved

Both are idempotent and touch only the virtual environment and this checkout's .git folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fpnlab.env import REPO
from fpnlab.errors import FpnlabError
from fpnlab.outputs import always, make_folder, write_atomic

QUIET_START = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def overrides_path(prefix: str | Path = sys.prefix) -> Path:
    """Where JupyterLab reads the settings an environment imposes on every user."""
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def install_lab_settings(prefix: str | Path = sys.prefix) -> Path:
    """Merge QUIET_START into the environment's overrides.json (other settings there are kept)."""
    path = overrides_path(prefix)
    try:
        settings = json.loads(path.read_bytes()) if path.is_file() else {}
    except ValueError:
        raise FpnlabError(f"{path} is not valid JSON; fix it or move it away (it was left as it is).") from None
    if not isinstance(settings, dict):
        raise FpnlabError(f"{path} is not a JSON object of settings; fix it or move it away.")
    for plugin, values in QUIET_START.items():
        settings[plugin] = {**settings.get(plugin, {}), **values}
    make_folder(path.parent, "JupyterLab settings folder")
    # merged: every setting already there is kept, so replacing the file loses nothing of the user's
    return write_atomic(path, json.dumps(settings, indent=2) + "\n", "JupyterLab settings", may_replace=always)


def install_notebook_filter(repo: Path = REPO) -> bool:
    """Configure nbstripout as the git filter of the checkout at `repo`; False when it is not a git checkout."""
    if not (repo / ".git").exists():
        return False
    subprocess.run([sys.executable, "-m", "nbstripout", "--install"], cwd=repo, check=True)
    return True


def main() -> int:
    print(f"JupyterLab settings: {install_lab_settings()}")
    if install_notebook_filter():
        print("notebooks: nbstripout installed as this checkout's git filter (outputs stay in your files, not in git)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
