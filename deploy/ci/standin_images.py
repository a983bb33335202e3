"""Stand-ins for the registry images that deploy/Dockerfile and docker-compose.yaml name, built
here from Debian packages: the CI and test machines reach no container registry.

The container tests make them (``ensure_registry_images``), and so does this file run as a script
before a ``docker compose build`` by hand::

    python deploy/ci/standin_images.py                 # the images of the default profile
    python deploy/ci/standin_images.py legacy data     # and of these profiles' services

The project's Dockerfile and compose file stay what a user with a registry runs. Each stand-in
is tagged as the image it replaces (``python:3.11-slim-bookworm``,
``ghcr.io/mlflow/mlflow:vX-full``, ``postgres:16``) and labelled with a hash of its recipe:

- present, with our label and the same hash: reused (Docker's layer cache, a second run builds
  nothing);
- present without our label: a real image (pulled on a machine with a registry), used as it is;
- absent: ``docker pull`` is tried first, then the stand-in is built.

The root of them all is a Debian bookworm tree made by ``debootstrap`` from the mirror apt uses
here, imported as ``bikecount-standin/debian:bookworm``. The Python stand-in carries what this
machine's network needs: its CA bundle (the egress proxy signs TLS with its own CA) and its pip
configuration, with the local wheels it points at (the CPU torch build).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from docker_engine import docker_engine

logger = logging.getLogger(__name__)

RECIPES = Path(__file__).parent / "standins"
REPO = Path(__file__).resolve().parents[2]
LABEL = "org.bikecount.stand-in"
DEBIAN_TAG = "bikecount-standin/debian:bookworm"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT = 1800
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class StandInError(RuntimeError):
    """A stand-in image could not be made."""


def docker(*args: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess:
    """``docker ARGS``; raises with its output when it fails."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )  # type: ignore[call-overload]
    if done.returncode != 0:
        raise StandInError(
            f"docker {' '.join(args[:3])} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
        )
    return done


def image_labels(tag: str) -> dict[str, str] | None:
    """The labels of local image ``tag``, or None when there is no such image."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return None
    return json.loads(done.stdout) or {}


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses here for bookworm's ``main`` (deb822 or one-line sources)."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "main" in fields.get("Components", ""):
                return fields["URIs"].split()[0]
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words:
                return words[1]
    return DEFAULT_MIRROR


def pip_settings() -> dict[str, str]:
    """``pip config list`` of this machine, as ``{key: value}`` (``global.find-links``...)."""
    done = subprocess.run(
        ["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    )
    settings = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip().strip("'\"")
    return settings


def find_links_wheels(settings: Mapping[str, str], pattern: str) -> list[Path]:
    """Wheels matching ``pattern`` in the folders pip's ``find-links`` points at."""
    folders = {
        Path(value.removeprefix("file://"))
        for key, value in settings.items()
        if key.endswith("find-links")
        for value in value.split()
    }
    return sorted(wheel for folder in folders for wheel in folder.glob(pattern))


@dataclass
class Recipe:
    """How to make one stand-in: a Dockerfile of ``standins/`` with its build context."""

    tag: str
    dockerfile: str
    parent: str | None
    files: dict[str, Path | str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)

    def digest(self, parent_digest: str) -> str:
        """A hash of everything the image is made from (big files by name and size)."""
        hasher = hashlib.sha256(parent_digest.encode())
        hasher.update((RECIPES / self.dockerfile).read_bytes())
        for name, source in sorted(self.files.items()):
            hasher.update(name.encode())
            if isinstance(source, str):
                hasher.update(source.encode())
            elif source.stat().st_size > 10_000_000:
                hasher.update(f"{source.name}:{source.stat().st_size}".encode())
            else:
                hasher.update(source.read_bytes())
        hasher.update(json.dumps(self.build_args, sort_keys=True).encode())
        return hasher.hexdigest()[:16]


def python_recipe(tag: str) -> Recipe:
    """The Python stand-in, with this machine's CA bundle, pip config and torch wheel."""
    settings = pip_settings()
    wheels = find_links_wheels(settings, "torch-*+cpu-cp311-*.whl")
    if not wheels:
        raise StandInError("no CPU torch wheel in pip's find-links folders: nothing to bake in")
    constraint = next((v for k, v in settings.items() if k.endswith(".constraint")), "")
    # pip inside: PyPI (reachable here) plus the baked-in wheels; the local file:// indexes of
    # this machine are not copied (PyPI serves what they hold).
    pip_conf = (
        "[global]\n"
        "extra-index-url = https://pypi.org/simple\n"
        "find-links = /opt/wheels\n"
        "cert = /etc/ssl/certs/standin-ca-bundle.crt\n"
    )
    files: dict[str, Path | str] = {"ca-bundle.crt": CA_BUNDLE, "pip.conf": pip_conf}
    if constraint and Path(constraint).is_file():
        files["pip-constraints.txt"] = Path(constraint)
        files["pip.conf"] = pip_conf + "constraint = /etc/pip-constraints.txt\n"
    else:
        files["pip-constraints.txt"] = ""
    files.update({f"wheels/{wheel.name}": wheel for wheel in wheels})
    return Recipe(tag, "python.Dockerfile", DEBIAN_TAG, files)


def mlflow_recipe(tag: str) -> Recipe:
    version = re.search(r":v?([\d.]+)", tag)
    if version is None:
        raise StandInError(f"cannot read the MLflow version of {tag}")
    return Recipe(
        tag,
        "mlflow.Dockerfile",
        "python:3.11-slim-bookworm",
        build_args={"MLFLOW_VERSION": version.group(1)},
    )


def postgres_recipe(tag: str) -> Recipe:
    entrypoint = RECIPES / "postgres-entrypoint.sh"
    return Recipe(tag, "postgres.Dockerfile", DEBIAN_TAG, {"postgres-entrypoint.sh": entrypoint})


def debian_package_recipe(dockerfile: str) -> Callable[[str], Recipe]:
    """A stand-in that is one Debian package on the bookworm tree (``dockerfile`` says which)."""
    return lambda tag: Recipe(tag, dockerfile, DEBIAN_TAG)


# Registry image (by name, tag aside) -> the recipe of its stand-in.
STAND_INS: dict[str, Callable[[str], Recipe]] = {
    "python": python_recipe,
    "ghcr.io/mlflow/mlflow": mlflow_recipe,
    "postgres": postgres_recipe,
    "haproxy": debian_package_recipe("haproxy.Dockerfile"),
    "prom/prometheus": debian_package_recipe("prometheus.Dockerfile"),
}


@dataclass
class StandIns:
    """Makes the stand-ins that are missing; records what it did and how long it took."""

    timings: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    _digests: dict[str, str] = field(default_factory=dict)

    def ensure(self, image: str) -> None:
        """Make ``image`` available locally: reuse, pull, or build its stand-in."""
        name = image.rsplit(":", 1)[0]
        if name not in STAND_INS:
            raise StandInError(f"no stand-in for registry image {image}: add one to STAND_INS")
        recipe = STAND_INS[name](image)
        self._ensure_recipe(recipe)

    def _ensure_recipe(self, recipe: Recipe) -> str:
        parent_digest = self._ensure_parent(recipe.parent) if recipe.parent else ""
        digest = recipe.digest(parent_digest)
        labels = image_labels(recipe.tag)
        if labels is not None and labels.get(LABEL) == digest:
            self.outcomes[recipe.tag] = "reused"
        elif labels is not None and LABEL not in labels:
            self.outcomes[recipe.tag] = "real image"
        elif labels is None and self._pulled(recipe.tag):
            self.outcomes[recipe.tag] = "pulled"
        else:
            started = time.monotonic()
            self._build(recipe, digest)
            self.timings[recipe.tag] = time.monotonic() - started
            self.outcomes[recipe.tag] = "built"
        self._digests[recipe.tag] = digest
        return digest

    def _ensure_parent(self, tag: str) -> str:
        if tag in self._digests:
            return self._digests[tag]
        if tag == DEBIAN_TAG:
            return self._ensure_debian()
        self.ensure(tag)
        return self._digests[tag]

    def _pulled(self, tag: str) -> bool:
        done = subprocess.run(["docker", "pull", "-q", tag], capture_output=True, timeout=600)
        return done.returncode == 0

    def _build(self, recipe: Recipe, digest: str) -> None:
        with tempfile.TemporaryDirectory(prefix="bikecount-standin-") as folder:
            context = Path(folder)
            shutil.copy(RECIPES / recipe.dockerfile, context / "Dockerfile")
            for name, source in recipe.files.items():
                target = context / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, str):
                    target.write_text(source)
                else:
                    shutil.copy2(source, target)
            args = [f"--build-arg={key}={value}" for key, value in recipe.build_args.items()]
            logger.info("building stand-in %s", recipe.tag)
            docker(
                "build", "--label", f"{LABEL}={digest}", "-t", recipe.tag, *args, str(context),
                timeout=BUILD_TIMEOUT,
            )  # fmt: skip

    def _ensure_debian(self) -> str:
        """The debootstrap tree, imported as an image; rebuilt only when its recipe changes."""
        mirror = debian_mirror()
        include = "ca-certificates"
        digest = hashlib.sha256(f"{SUITE} {mirror} minbase {include}".encode()).hexdigest()[:16]
        labels = image_labels(DEBIAN_TAG)
        if labels is None or labels.get(LABEL) != digest:
            if shutil.which("debootstrap") is None:
                raise StandInError("debootstrap is missing: apt-get install debootstrap")
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="bikecount-rootfs-") as folder:
                root = Path(folder) / "rootfs"
                done = subprocess.run(
                    ["debootstrap", "--variant=minbase", f"--include={include}", SUITE,
                     str(root), mirror],
                    capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                )  # fmt: skip
                if done.returncode != 0:
                    raise StandInError(f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr}")
                # The downloaded packages and lists are of no use in the image.
                for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                    for path in (root / leftover).glob("*"):
                        if path.is_file():
                            path.unlink()
                tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
                docker(
                    "import",
                    "--change", f"LABEL {LABEL}={digest}",
                    "--change", f"ENV PATH={PATH}",
                    "--change", 'CMD ["bash"]',
                    "-", DEBIAN_TAG,
                    stdin=tar.stdout, timeout=BUILD_TIMEOUT,
                )  # fmt: skip
                tar.wait()
            self.timings[DEBIAN_TAG] = time.monotonic() - started
            self.outcomes[DEBIAN_TAG] = "built"
        else:
            self.outcomes[DEBIAN_TAG] = "reused"
        self._digests[DEBIAN_TAG] = digest
        return digest


def registry_images(repo: Path, profiles: Iterable[str] = ()) -> set[str]:
    """The images deploy/Dockerfile starts from and the compose services pull (those of the default
    profile and of ``profiles``; the services built from the Dockerfile pull nothing)."""
    dockerfile = (repo / "deploy" / "Dockerfile").read_text()
    images = set(re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE))
    services = yaml.safe_load((repo / "docker-compose.yaml").read_text())["services"]
    for service in services.values():
        chosen = set(service.get("profiles", []))
        if "build" not in service and (not chosen or chosen & set(profiles)):
            images.add(service["image"])
    return images


def ensure_registry_images(repo: Path, profiles: Iterable[str] = ()) -> StandIns:
    """Make every image of :func:`registry_images` available locally (reused, pulled or built);
    what was done to each, with the build times, is on the returned :class:`StandIns`."""
    standins = StandIns()
    for image in sorted(registry_images(repo, profiles)):
        standins.ensure(image)
    return standins


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Make the registry images that deploy/Dockerfile and docker-compose.yaml "
        "name (stand-ins built from Debian packages where no registry answers), on the running "
        "Docker engine, else on a dockerd started for the while (as root)."
    )
    parser.add_argument("profiles", nargs="*", help="compose profiles whose images to make too")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with docker_engine(Path(tempfile.gettempdir()) / "bikecount-dockerd.log"):
        standins = ensure_registry_images(REPO, arguments.profiles)
    for tag, outcome in sorted(standins.outcomes.items()):
        seconds = standins.timings.get(tag)
        logger.info("%s: %s%s", tag, outcome, f" in {seconds:.0f} s" if seconds else "")


if __name__ == "__main__":
    main()
