"""Print pyproject.toml's lower bounds as exact pins (``name==X`` for ``name>=X``), one per line.

CI installs them as constraints to test the oldest releases the project admits, so that every
floor it declares is one that has been tested.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text())["project"]
extras = [d for group in project["optional-dependencies"].values() for d in group]
requirements = project["dependencies"] + extras
for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(,.*)?", requirement.strip())
    if not match:
        sys.exit(f"{requirement!r}: every requirement needs a lower bound (name>=X) to be tested")
    print(f"{match[1]}=={match[3]}")
