"""Print the requirements of pyproject.toml: the project's dependencies and those of the extras
named in EXTRAS (comma-separated). deploy/Dockerfile installs from this list, so that its
dependency layer is rebuilt when the dependencies change, not on any edit of pyproject.toml."""

import os
import sys
import tomllib

project = tomllib.load(sys.stdin.buffer)["project"]
extras = [name for name in os.environ.get("EXTRAS", "").split(",") if name]
requirements = [*project["dependencies"]]
for name in extras:
    requirements += project["optional-dependencies"][name]
sys.stdout.write("".join(f"{requirement}\n" for requirement in requirements))
