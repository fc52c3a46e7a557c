#!/usr/bin/env python3
"""Builds real ELLA release images for the sandbox from ELLA's source archives.

    build.py --sources DIR --cache DIR [--fault NAME] VERSION [VERSION ...]

For each VERSION (``1.17.2``) it builds ``ella-release-v1.17.2.sif``: a squashfs file
system laid out as the Singularity image that ELLA's CI makes from the ``production`` stage
of its Dockerfile (``singularity build ella-release-vX.sif docker://...``), and prints one
JSON object ``{"1.17.2": "/abs/path/ella-release-v1.17.2.sif"}`` on stdout. Progress goes to
stderr. Run as root (debootstrap, chroot, mounts); standard library only.

Layers, each cached by content under --cache and built in a temporary directory under
``--cache/tmp`` that is renamed into place only when complete:

``base/<key>/rootfs``
    ``debootstrap --variant=minbase SUITE`` plus ``base-SUITE.packages``. The suite follows
    the Python that the release's Pipfile.lock requires (``PYTHON_BASES``). Key: the
    package list and the source of ``build_base``.
``venv/<key>/layer/dist/ella-python``
    The virtualenv, made inside an overlay of that root (chroot, clean environment, the
    host's resolv.conf and CA bundle, ``builder.packages`` installed in the overlay only)
    with ``pip install --require-hashes`` from Pipfile.lock's ``default`` section (less what
    ``lock-overrides.json`` replaces, and says why), then the Dockerfile's sed patch of
    supervisor's web.py. Key: the base key, the lock's sha256, its overrides, the builder
    packages and the source of ``build_venv``.
``images/<key>/ella-release-vX.Y.Z[-fault.NAME].sif``
    Overlay of venv and base plus what the Dockerfile adds per release: the source in
    ``/ella``, ``ella-user``, ``/logs /data /socket /pg-data`` and the ``/data``
    subdirectories, and ``/.singularity.d`` (env, runscript, labels.json, actions).
    Key: the venv key, the archive's sha256, the fault patch and the source of this file's
    image functions. ``mksquashfs`` with fixed times, so equal inputs give equal bytes.

A call whose images all exist reads the archives' checksums and returns: no root needed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Pipfile.lock `_meta.requires.python_version` -> Debian suite of the base layer.
# 3.11: Debian 12 has it. 3.7 (v1.16.5): no Debian suite on the mirror has it any more
# (buster is gone) and the lock's numpy/cyvcf2 have no 3.11 wheels; Debian 11's 3.9 is the
# nearest (see base-bullseye.packages).
PYTHON_BASES = {"3.11": "bookworm", "3.7": "bullseye"}

# squashfs compression, chosen by measurement (README.md, "Compression"): the v1.17.2 tree
# (454 MiB) on 2 cores; mksquashfs time, size, and `python -c 'import api.main'` from a fresh
# squashfuse mount (median of 5, interleaved). zstd level 3 builds in seconds, imports as
# fast as lz4 (whose image is 40% larger) and 1 s faster than gzip, Singularity's default;
# zstd 15/19 and xz save 10-20% of the size for 15-50x the build time (xz: 3x the import).
COMPRESSION = ["-comp", "zstd", "-Xcompression-level", "3"]

# The uid of ella-user: `useradd -ms /bin/bash ella-user` in a fresh ubuntu image gives 1000.
ELLA_UID = 1000

# Singularity version that ELLA's CI builds release images with (.gitlab-ci.yml SID_VERSION).
SINGULARITY_VERSION = "3.8.1"
ELLA_REGISTRY_IMAGE = "registry.gitlab.com/alleles/ella"

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class BuildError(Exception):
    pass


def say(message: str) -> None:
    print(f"ella-image: {message}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def key_of(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()[:20]


def recipe_packages(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --------------------------------------------------------------------------------------
# Mounts and chroot


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", point], stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "-l", point], check=False)


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever is mounted below (a bound /dev must not be emptied)."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_all(path)
    if mounts_under(path):
        raise BuildError(f"{path} still has mounts below it; not removing it")
    shutil.rmtree(path)


@contextlib.contextmanager
def overlay(lowers: list[Path], scratch: Path):
    """The union of `lowers` (first on top) with a writable upper layer in `scratch`.

    Yields (merged, upper).
    """
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "root"
    for directory in (upper, work, merged):
        directory.mkdir(parents=True)
    options = f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        raise BuildError(f"cannot mount overlayfs in {scratch}: {mounted.stderr.strip()}")
    try:
        yield merged, upper
    finally:
        unmount_all(merged)


@contextlib.contextmanager
def chroot_mounts(root: Path, network: bool = False):
    """/proc and /dev in `root` for the duration; the host's resolv.conf when `network`."""
    (root / "proc").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        subprocess.run(["mount", "--bind", "/dev", str(root / "dev")], check=True)
        if network:
            resolv = root / "etc/resolv.conf"
            if resolv.is_symlink():
                resolv.unlink()
            shutil.copyfile("/etc/resolv.conf", resolv)
            # The host's CA bundle, for pip (PIP_CERT): where TLS to PyPI goes through an
            # intercepting proxy, only the host's trust store knows its CA.
            shutil.copyfile(HOST_CA_BUNDLE, root / "tmp/host-ca-certificates.crt")
        yield
    finally:
        for sub in ("dev", "proc"):
            unmount_all(root / sub)


def in_root(root: Path, *command: str, env: dict | None = None, log: Path | None = None,
            capture: bool = False) -> str:
    """Runs `command` chrooted into `root` with a clean environment (as `env -i` would)."""
    environment = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "DEBIAN_FRONTEND": "noninteractive"}
    environment.update(env or {})
    argv = ["chroot", str(root), *command]
    if capture:
        done = subprocess.run(argv, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"in {root}: {shlex.join(command)} failed:\n{done.stderr[-3000:]}")
        return done.stdout
    with open(log or os.devnull, "a") as out:
        out.write(f"\n$ {shlex.join(command)}\n")
        out.flush()
        done = subprocess.run(argv, env=environment, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise BuildError(f"in {root}: {shlex.join(command)} failed (exit {done.returncode}):\n{tail}")
    return ""


# --------------------------------------------------------------------------------------
# Layer 1: the base root file system


def debian_mirror() -> str:
    mirror = os.environ.get("ELLA_IMAGE_DEBIAN_MIRROR", "")
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for source in sources:
        match = re.search(r"^URIs:\s*(\S+)", source.read_text(), re.M)
        if not mirror and match and "security" not in match.group(1):
            mirror = match.group(1)
    if not mirror and Path("/etc/apt/sources.list").exists():
        match = re.search(r"^deb\s+(\S+)", Path("/etc/apt/sources.list").read_text(), re.M)
        mirror = match.group(1) if match else ""
    if not mirror:
        raise BuildError("no Debian mirror in apt's sources; set ELLA_IMAGE_DEBIAN_MIRROR")
    return mirror


def build_base(suite: str, packages: list[str], tmp: Path) -> None:
    """debootstrap SUITE with `packages` into result/rootfs; tidied as the Dockerfile tidies."""
    result = tmp / "result"
    rootfs = result / "rootfs"
    result.mkdir()
    log = result / "build.log"
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
               suite, str(rootfs), debian_mirror()]
    with open(log, "w") as out:
        if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            raise BuildError(f"debootstrap {suite} failed:\n{log.read_text()[-3000:]}")
    with chroot_mounts(rootfs):
        in_root(rootfs, "apt-get", "clean", log=log)
        versions = in_root(rootfs, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n",
                           capture=True)
        python = in_root(rootfs, "python3", "-c",
                         "import sys; print('%d.%d.%d' % sys.version_info[:3])",
                         capture=True).strip()
    # As the Dockerfile's cleanup, and nothing of this host left in the image: Singularity
    # binds the host's resolv.conf and hosts at run time (its build leaves them empty).
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*", "usr/share/doc/*",
                    "usr/share/man/*", "usr/share/groff/*", "usr/share/info/*", "tmp/*",
                    "var/log/**/*.log", "var/cache/debconf/*-old", "root/.cache"):
        for path in rootfs.glob(pattern):
            remove_tree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    for name in ("etc/resolv.conf", "etc/hosts"):
        (rootfs / name).unlink(missing_ok=True)
        (rootfs / name).write_text("")
    (rootfs / "etc/hostname").unlink(missing_ok=True)
    manifest = {"suite": suite, "python": python, "packages": packages,
                "installed": dict(line.split("\t") for line in versions.splitlines())}
    (result / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------
# Layer 2: the virtualenv


def lock_overrides(lock_sha256: str) -> dict:
    """Pins of a lock that cannot be installed here, replaced (lock-overrides.json says why)."""
    overrides = json.loads((HERE / "lock-overrides.json").read_text())
    return overrides.get(lock_sha256, {}).get("replace", {})


def lock_requirements(lock: dict, replace: dict) -> str:
    """pip requirements (with hashes and markers) for Pipfile.lock's `default` section."""
    lines = []
    for name, spec in sorted(lock["default"].items()):
        spec = {**spec, **replace.get(name, {})}
        if "version" not in spec or not spec.get("hashes"):
            raise BuildError(f"Pipfile.lock: {name} has no pinned version with hashes")
        line = f"{name}{spec['version']}"
        if spec.get("markers"):
            line += f" ; {spec['markers']}"
        line += "".join(f" \\\n    --hash={h}" for h in spec["hashes"])
        lines.append(line)
    return "\n".join(lines) + "\n"


# The Dockerfile's patch of supervisor ("Clear log" not available from its web UI).
SUPERVISOR_SED = r"s/(actions = \[)(.*?)(, clearlog)(.*)/\1\2\4/g"


def build_venv(base_rootfs: Path, lock_bytes: bytes, builder: list[str], tmp: Path) -> None:
    """/dist/ella-python from the lock's pins, made inside an overlay of the base root."""
    lock = json.loads(lock_bytes)
    lock_sha256 = hashlib.sha256(lock_bytes).hexdigest()
    replace = lock_overrides(lock_sha256)
    result = tmp / "result"
    result.mkdir()
    log = result / "build.log"
    with overlay([base_rootfs], tmp / "overlay") as (root, upper):
        with chroot_mounts(root, network=True):
            in_root(root, "apt-get", "update", log=log)
            in_root(root, "apt-get", "install", "-y", "--no-install-recommends", *builder, log=log)
            (root / "tmp/requirements.txt").write_text(lock_requirements(lock, replace))
            in_root(root, "python3", "-m", "venv", "/dist/ella-python", log=log)
            in_root(root, "/dist/ella-python/bin/pip", "install", "--no-cache-dir",
                    "--disable-pip-version-check", "--require-hashes",
                    "-r", "/tmp/requirements.txt", log=log,
                    env={"PIP_CERT": "/tmp/host-ca-certificates.crt"})
            web = next((root / "dist/ella-python/lib").glob("python3.*/site-packages/supervisor/web.py"))

            def clearlog_actions() -> int:
                return sum(", clearlog" in line for line in web.read_text().splitlines()
                           if "actions = [" in line)

            before = clearlog_actions()
            in_root(root, "sed", "-i", "-r", SUPERVISOR_SED, "/" + str(web.relative_to(root)), log=log)
            if not before or clearlog_actions():
                raise BuildError(f"the Dockerfile's sed patch did not remove clearlog from {web}")
            in_root(root, "/dist/ella-python/bin/python", "-c",
                    "import numpy, cyvcf2, psycopg2, sqlalchemy, flask, alembic, gunicorn, "
                    "supervisor, yaml, jsonschema", log=log)
            freeze = in_root(root, "/dist/ella-python/bin/pip", "freeze", "--all",
                             "--disable-pip-version-check", capture=True)
    layer = result / "layer/dist"
    layer.mkdir(parents=True)
    os.rename(upper / "dist/ella-python", layer / "ella-python")
    subprocess.run(["chown", "-R", f"{ELLA_UID}:{ELLA_UID}", str(layer)], check=True)
    (result / "manifest.json").write_text(json.dumps(
        {"pipfile_lock_sha256": lock_sha256, "requires": lock["_meta"].get("requires"),
         "replaced": replace, "freeze": freeze.splitlines()},
        indent=1) + "\n")
    remove_tree(tmp / "overlay")


# --------------------------------------------------------------------------------------
# The Dockerfile's production stage, read rather than assumed


def dockerfile_production(text: str) -> dict:
    """What the `production` stage of ELLA's Dockerfile puts in the image's config and root.

    Follows FROM ... AS ... back to the stage built on a registry image and collects ENV
    (with ${VAR} expansion, Docker's order), LABEL, CMD/ENTRYPOINT, WORKDIR, USER, and from
    RUN/COPY the user it adds, the directories it makes, what it appends to the user's
    .bashrc and the files it copies from the build context.
    """
    logical, current = [], ""
    for raw in text.splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if current and raw.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
        else:
            logical.append(current + raw)
            current = ""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    name = None
    for line in logical:
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"#{len(stages)}"
            stages[name] = (words[0], [])
        elif name is not None:
            stages[name][1].append((instruction, rest.strip()))
    if "production" not in stages:
        raise BuildError("Dockerfile has no `production` stage")
    chain, stage = [], "production"
    while stage in stages:
        chain.insert(0, stage)
        stage = stages[stage][0]
    image = {"from": stage, "stages": chain,
             "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
             "labels": {}, "cmd": [], "entrypoint": [], "workdir": "/", "user": "root",
             "run": [], "copy": []}
    env = image["env"]

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)

    def pairs(rest: str) -> list[tuple[str, str]]:
        words = shlex.split(rest, posix=True)
        if words and "=" not in words[0]:
            return [(words[0], " ".join(words[1:]))]  # legacy `ENV KEY value`
        return [tuple(word.split("=", 1)) for word in words]

    for stage in chain:
        for instruction, rest in stages[stage][1]:
            if instruction == "ENV":
                # Docker expands all values of one ENV against the environment before it.
                for key, value in [(k, expand(v)) for k, v in pairs(rest)]:
                    env[key] = value
            elif instruction == "LABEL":
                image["labels"].update(pairs(rest))
            elif instruction in ("CMD", "ENTRYPOINT"):
                value = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
                image[instruction.lower()] = value
                if instruction == "ENTRYPOINT":
                    image["cmd"] = []
            elif instruction == "WORKDIR":
                image["workdir"] = expand(rest)
            elif instruction == "USER":
                image["user"] = rest
            elif instruction == "RUN":
                # Only what a RUN does to the image's own tree: users, directories, owners,
                # lines appended to files. Package installs are the base layer's business.
                for command in re.split(r"&&", rest):
                    try:
                        words = shlex.split(command)
                    except ValueError:
                        continue
                    if words[:1] == ["useradd"]:
                        image["run"].append(["useradd", *words[1:]])
                    elif words[:2] == ["mkdir", "-p"]:
                        image["run"].append(["mkdir", *words[2:]])
                    elif words[:1] == ["chown"]:
                        paths = [w for w in words[1:] if not w.startswith("-")]
                        image["run"].append(["chown", *paths[1:]])
                    elif words[:1] == ["echo"] and len(words) == 4 and words[2] == ">>":
                        image["run"].append(["append", words[3], words[1]])
            elif instruction == "COPY":
                words = shlex.split(rest)
                options = [w for w in words if w.startswith("--")]
                paths = [w for w in words if not w.startswith("--")]
                if not any(o.startswith("--from=") for o in options):
                    chown = next((o.split("=", 1)[1] for o in options if o.startswith("--chown=")), None)
                    image["copy"].append({"src": paths[0], "dest": paths[-1], "chown": chown})
    return image


def dockerignore_matcher(text: str):
    """A test for paths that `COPY . /ella` leaves out, from the archive's .dockerignore."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**", index):
                regex += ".*"
                index += 2
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        rules.append((negate, re.compile(regex + "(/.*)?$")))

    def ignored(relative: str) -> bool:
        result = False
        for negate, regex in rules:
            if regex.match(relative):
                result = not negate
        return result

    return ignored


# --------------------------------------------------------------------------------------
# Layer 3: the release image


def read_archive(archive: Path) -> dict:
    """Prefix, Pipfile.lock, Dockerfile and newest mtime of an ELLA source archive."""
    info = {"mtime": 0, "prefix": None, "members": {}}
    wanted = ("Pipfile.lock", "Dockerfile", ".dockerignore")
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            top, _, relative = member.name.partition("/")
            info["prefix"] = info["prefix"] or top
            info["mtime"] = max(info["mtime"], int(member.mtime))
            if relative in wanted and member.isfile():
                info["members"][relative] = tar.extractfile(member).read()
    missing = [name for name in wanted[:2] if name not in info["members"]]
    if missing:
        raise BuildError(f"{archive.name} has no {', '.join(missing)}")
    return info


def shell_double_quoted(value: str) -> str:
    """A value as Go's %q of Singularity's shell.Escape writes it: "..." with ` $ " \\ escaped."""
    escaped = value.replace("\\", "\\\\").replace("`", "\\`").replace("$", "\\$").replace('"', '\\"')
    return f'"{escaped}"'


def singularity_env(env: dict) -> str:
    """/.singularity.d/env/10-docker2singularity.sh as `singularity build` writes it."""
    lines = ["#!/bin/sh"]
    for key, value in env.items():
        if key == "PATH":
            lines.append(f"export PATH={shell_double_quoted(value)}")
        else:
            lines.append(f'export {key}="${{{key}:-{shell_double_quoted(value)}}}"')
    return "\n".join(lines) + "\n"


def runscript(image: dict) -> str:
    """/.singularity.d/runscript: Docker's CMD/ENTRYPOINT rule as Singularity applies it."""
    def quoted(argv):
        return " ".join('"' + a.replace('"', '\\"') + '"' for a in argv).replace("'", "'\\''")
    return (
        "#!/bin/sh\n"
        f"OCI_ENTRYPOINT='{quoted(image['entrypoint'])}'\n"
        f"OCI_CMD='{quoted(image['cmd'])}'\n"
        "# As `singularity build` makes it from a Docker image: ENTRYPOINT followed by the\n"
        "# arguments given to `singularity run`, or by CMD when none are given.\n"
        "if [ $# -gt 0 ]; then\n"
        "    eval \"set -- ${OCI_ENTRYPOINT} \\\"\\$@\\\"\"\n"
        "else\n"
        "    eval \"set -- ${OCI_ENTRYPOINT} ${OCI_CMD}\"\n"
        "fi\n"
        "exec \"$@\"\n"
    )


SOURCE_ENV = (
    "for script in /.singularity.d/env/*.sh; do\n"
    "    if [ -f \"$script\" ]; then\n"
    "        . \"$script\"\n"
    "    fi\n"
    "done\n"
)

ACTIONS = {
    "exec": "#!/bin/sh\n" + SOURCE_ENV + "\nexec \"$@\"\n",
    "run": ("#!/bin/sh\n" + SOURCE_ENV +
            "\nif test -x /.singularity.d/runscript; then\n"
            "    exec /.singularity.d/runscript \"$@\"\n"
            "fi\n"
            "echo \"No Singularity runscript found, executing /bin/sh\"\n"
            "exec /bin/sh \"$@\"\n"),
    "shell": ("#!/bin/sh\n" + SOURCE_ENV +
              "\nif test -n \"${SINGULARITY_SHELL:-}\" -a -x \"${SINGULARITY_SHELL:-}\"; then\n"
              "    exec $SINGULARITY_SHELL \"$@\"\n"
              "elif test -x /bin/bash; then\n"
              "    SHELL=/bin/bash\n"
              "    PS1=\"Singularity $SINGULARITY_NAME:\\\\w> \"\n"
              "    export SHELL PS1\n"
              "    exec /bin/bash --norc \"$@\"\n"
              "fi\n"
              "SHELL=/bin/sh\n"
              "export SHELL\n"
              "exec /bin/sh \"$@\"\n"),
    "test": ("#!/bin/sh\n" + SOURCE_ENV +
             "\nif test -x /.singularity.d/test; then\n"
             "    exec /.singularity.d/test \"$@\"\n"
             "fi\n"
             "exec /bin/sh -c true\n"),
    "start": ("#!/bin/sh\n# Tells the instance's PID 1 to go on.\nkill -CONT 1\n" + SOURCE_ENV +
              "\nif test -x /.singularity.d/startscript; then\n"
              "    exec /.singularity.d/startscript\n"
              "fi\n"),
}

ENV_SCRIPTS = {
    "01-base.sh": "#!/bin/sh\n",
    "90-environment.sh": "#!/bin/sh\n# Custom environment shell code should follow\n\n",
    "99-base.sh": ("#!/bin/sh\n"
                   "if [ -z \"$LD_LIBRARY_PATH\" ]; then\n"
                   "    LD_LIBRARY_PATH=\"/.singularity.d/libs\"\n"
                   "else\n"
                   "    LD_LIBRARY_PATH=\"$LD_LIBRARY_PATH:/.singularity.d/libs\"\n"
                   "fi\n"
                   "PS1=\"Singularity> \"\n"
                   "export LD_LIBRARY_PATH PS1\n"),
    "99-runtimevars.sh": ("#!/bin/sh\n"
                          "# singularity exec --env PREPEND_PATH/APPEND_PATH/PATH=...\n"
                          "if [ -n \"${SING_USER_DEFINED_PREPEND_PATH:-}\" ]; then\n"
                          "    PATH=\"${SING_USER_DEFINED_PREPEND_PATH}:${PATH}\"\n"
                          "fi\n"
                          "if [ -n \"${SING_USER_DEFINED_APPEND_PATH:-}\" ]; then\n"
                          "    PATH=\"${PATH}:${SING_USER_DEFINED_APPEND_PATH}\"\n"
                          "fi\n"
                          "if [ -n \"${SING_USER_DEFINED_PATH:-}\" ]; then\n"
                          "    PATH=\"${SING_USER_DEFINED_PATH}\"\n"
                          "fi\n"
                          "unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH "
                          "SING_USER_DEFINED_PATH\n"
                          "export PATH\n"),
}

WEBUI_PLACEHOLDER = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ELLA {version} (sandbox image)</title></head>
<body>
<h1>ELLA {version}: no web UI in this image</h1>
<p>This is a sandbox image built by ella-deploy's testbed/ella-image/build.py from ELLA's
source archive. The browser front end (<code>src/webui/</code>, built with node and yarn) is
not in that archive, so there is no built web UI here. The API is at <code>/api/v1/</code>.</p>
</body>
</html>
"""


def singularity_date(epoch: int) -> str:
    """org.label-schema.build-date in Singularity's format: Tuesday_9_May_2023_12:04:05_UTC."""
    moment = time.gmtime(epoch)
    return time.strftime(f"%A_{moment.tm_mday}_%B_%Y_%H:%M:%S_UTC", moment)


def write(path: Path, text: str, mode: int = 0o644, epoch: int | None = None,
          owner: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)
    if epoch is not None:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def build_image(version: str, archive: Path, info: dict, base_rootfs: Path, venv_layer: Path,
                fault: str | None, out: Path, tmp: Path) -> None:
    """The release image: source, user, directories, Singularity metadata; then mksquashfs."""
    epoch = info["mtime"]
    image = dockerfile_production(info["members"]["Dockerfile"].decode())
    tag = f"v{version}"
    result = tmp / "result"
    result.mkdir()
    log = result / "build.log"
    env = {"SOURCE_DATE_EPOCH": str(epoch)}
    with overlay([venv_layer, base_rootfs], tmp / "overlay") as (root, upper):
        # The Dockerfile's RUNs that shape the tree, in order: the user (uid 1000, as
        # useradd gives in a fresh image), directories (root's, as mkdir -p makes them),
        # the ones chowned to the user, lines appended to the user's .bashrc.
        user = "root"
        for operation, *arguments in image["run"]:
            if operation == "useradd":
                with chroot_mounts(root):
                    in_root(root, "useradd", "--uid", str(ELLA_UID), *arguments, env=env, log=log)
                user = arguments[-1]
            elif operation == "mkdir":
                for directory in arguments:
                    (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif operation == "chown":
                for directory in arguments:
                    os.chown(root / directory.lstrip("/"), ELLA_UID, ELLA_UID)
            elif operation == "append":
                with open(root / arguments[0].lstrip("/"), "a") as handle:
                    handle.write(arguments[1] + "\n")

        # The source: `COPY . /ella` (less .dockerignore) from the production-build stage.
        source = root / "ella"
        source.mkdir()
        with open(log, "a") as out_log:
            subprocess.run(["tar", "-xzf", str(archive), "-C", str(source), "--strip-components=1",
                            "--no-same-owner"], check=True, stdout=out_log, stderr=subprocess.STDOUT)
        ignored = dockerignore_matcher(info["members"].get(".dockerignore", b"").decode())
        for path in sorted(source.rglob("*"), key=lambda p: len(p.parts)):
            if path.exists() or path.is_symlink():
                if ignored(str(path.relative_to(source))):
                    remove_tree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if fault:
            patch = HERE / "faults" / f"{fault}.patch"
            done = subprocess.run(["patch", "-p1", "--forward", "--no-backup-if-mismatch",
                                   "-d", str(source), "-i", str(patch)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"faults/{fault}.patch does not apply to {archive.name}:\n"
                                 f"{done.stdout}{done.stderr}")
        write(source / "src/webui/build/index.html", WEBUI_PLACEHOLDER.format(version=tag),
              epoch=epoch)
        for copy in image["copy"]:
            if copy["src"] in (".", "./"):
                continue
            target = root / copy["dest"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / copy["src"].removeprefix("./"), target)
            if copy["chown"]:
                os.chown(target, ELLA_UID, ELLA_UID)
        shutil.copyfile(source / "Pipfile.lock", root / "dist/Pipfile.lock")
        subprocess.run(["chown", "-R", f"{ELLA_UID}:{ELLA_UID}", str(source),
                        str(root / "dist/Pipfile.lock")], check=True)
        os.chown(root / "dist", ELLA_UID, ELLA_UID)

        # Singularity's metadata, as `singularity build ... docker://ella:vX` leaves it.
        meta = root / ".singularity.d"
        for name, text in ACTIONS.items():
            write(meta / "actions" / name, text, 0o755, epoch)
        for name, text in ENV_SCRIPTS.items():
            write(meta / "env" / name, text, 0o755, epoch)
        write(meta / "env/10-docker2singularity.sh", singularity_env(image["env"]), 0o755, epoch)
        write(meta / "runscript", runscript(image), 0o755, epoch)
        write(meta / "startscript", "#!/bin/sh\n", 0o755, epoch)
        (meta / "libs").mkdir(exist_ok=True)
        labels = dict(image["labels"])
        labels.update({
            "org.label-schema.build-arch": "amd64",
            "org.label-schema.build-date": singularity_date(epoch),
            "org.label-schema.schema-version": "1.0",
            "org.label-schema.usage.singularity.deffile.bootstrap": "docker",
            "org.label-schema.usage.singularity.deffile.from": f"{ELLA_REGISTRY_IMAGE}:{tag}",
            "org.label-schema.usage.singularity.version": SINGULARITY_VERSION,
            # Not in a real release image: says where this one came from.
            "org.ella-deploy.testbed.source": archive.name,
            "org.ella-deploy.testbed.base": f"debian {json.loads((base_rootfs.parent / 'manifest.json').read_text())['suite']}",
        })
        if fault:
            labels["org.ella-deploy.testbed.fault"] = fault
        lock = json.loads(info["members"]["Pipfile.lock"])
        for name, spec in sorted(lock_overrides(hashlib.sha256(info["members"]["Pipfile.lock"]).hexdigest()).items()):
            labels[f"org.ella-deploy.testbed.pipfile-lock-override.{name}"] = "; ".join(
                f"{field} {value!r} instead of {lock['default'][name].get(field, '')!r}"
                for field, value in spec.items() if field != "hashes")
        write(meta / "labels.json", json.dumps(dict(sorted(labels.items())), indent="\t"), 0o644, epoch)
        write(meta / "Singularity", f"bootstrap: docker\nfrom: {ELLA_REGISTRY_IMAGE}:{tag}\n", 0o644, epoch)
        write(meta / "docker-config.json", json.dumps(
            {"Env": [f"{k}={v}" for k, v in image["env"].items()], "Cmd": image["cmd"] or None,
             "Entrypoint": image["entrypoint"] or None, "WorkingDir": image["workdir"],
             "User": image["user"], "Labels": image["labels"]}, indent=1) + "\n", 0o644, epoch)
        for link, target in (("singularity", ".singularity.d/runscript"),
                             (".run", ".singularity.d/actions/run"),
                             (".exec", ".singularity.d/actions/exec"),
                             (".shell", ".singularity.d/actions/shell"),
                             (".test", ".singularity.d/actions/test"),
                             ("environment", ".singularity.d/env/90-environment.sh")):
            (root / link).unlink(missing_ok=True)
            os.symlink(target, root / link)
        for directory in ("tmp", "var/tmp"):
            (root / directory).mkdir(parents=True, exist_ok=True)
            os.chmod(root / directory, 0o1777)
        for name in ("etc/shadow-", "etc/gshadow-", "etc/passwd-", "etc/group-",
                     "etc/subuid-", "etc/subgid-"):
            (root / name).unlink(missing_ok=True)
        if user not in (root / "etc/passwd").read_text():
            raise BuildError(f"{user} is not in the image's /etc/passwd")

        # What this layer added or changed gets the release's time, so equal inputs give
        # an equal image. The lower layers keep theirs (the venv's .pyc files record the
        # mtimes of their sources: mksquashfs -all-time would make every one of them stale).
        for path in sorted(upper.rglob("*"), reverse=True) + [upper]:
            merged = root / path.relative_to(upper)
            if merged.exists() or merged.is_symlink():  # not a whiteout of a removed file
                os.utime(merged, (epoch, epoch), follow_symlinks=False)

        target = result / out.name
        command = ["mksquashfs", str(root), str(target), "-noappend", "-no-progress",
                   "-mkfs-time", str(epoch), *COMPRESSION]
        with open(log, "a") as out_log:
            out_log.write(f"\n$ {shlex.join(command)}\n")
            out_log.flush()
            if subprocess.run(command, stdout=out_log, stderr=subprocess.STDOUT).returncode != 0:
                raise BuildError(f"mksquashfs failed:\n{log.read_text()[-3000:]}")
    os.chmod(target, 0o644)
    (result / "manifest.json").write_text(json.dumps(
        {"version": version, "fault": fault, "archive": archive.name,
         "sha256": sha256_file(target), "size": target.stat().st_size,
         "dockerfile": {k: image[k] for k in ("from", "stages", "env", "labels", "cmd", "user",
                                               "workdir", "run", "copy")},
         "compression": COMPRESSION}, indent=1) + "\n")
    remove_tree(tmp / "overlay")


# --------------------------------------------------------------------------------------
# Caching and the command line


class Cache:
    def __init__(self, root: Path):
        self.root = root
        self.tmp = root / "tmp"
        self._lock = None

    def lock(self) -> None:
        """Exclusive for the builds of this call; clears what an interrupted build left."""
        if self._lock:
            return
        if os.geteuid() != 0:
            raise BuildError("building needs root (debootstrap, chroot, mounts)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        if self.tmp.exists():
            for leftover in self.tmp.iterdir():
                say(f"removing {leftover} (left by an interrupted build)")
                remove_tree(leftover)
        self.tmp.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def building(self, final: Path, what: str):
        """A temp dir under the cache whose `result` is renamed to `final` when the build completes."""
        self.lock()
        tmp = Path(tempfile.mkdtemp(prefix=final.parent.name + "-", dir=self.tmp))
        started = time.monotonic()
        say(f"building {what} ...")
        try:
            yield tmp
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp / "result", final)
        finally:
            remove_tree(tmp)
        say(f"built {what} in {time.monotonic() - started:.0f} s: {final}")

    def archive_info(self, archive: Path, digest: str) -> dict:
        """read_archive's findings, remembered by the archive's checksum."""
        path = self.root / "archives" / f"{digest}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
        info = read_archive(archive)
        lock = json.loads(info["members"]["Pipfile.lock"])
        record = {"prefix": info["prefix"], "mtime": info["mtime"],
                  "lock_sha256": hashlib.sha256(info["members"]["Pipfile.lock"]).hexdigest(),
                  "python": lock["_meta"]["requires"]["python_version"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(record) + "\n")
        os.rename(scratch, path)
        return record


def function_source(*functions) -> str:
    return "\n".join(inspect.getsource(f) for f in functions)


def build(version: str, sources: Path, cache: Cache, fault: str | None) -> Path:
    archive = sources / f"ella-v{version}.tar.gz"
    digest = sha256_file(archive)
    record = cache.archive_info(archive, digest)
    if record["prefix"] != f"ella-v{version}":
        raise BuildError(f"{archive.name} extracts to {record['prefix']}/, not ella-v{version}/")
    suite = PYTHON_BASES.get(record["python"])
    if not suite:
        raise BuildError(f"{archive.name}: no base for Python {record['python']} "
                         f"(Pipfile.lock requires it; known: {', '.join(PYTHON_BASES)})")
    packages = recipe_packages(f"base-{suite}.packages")
    builder = recipe_packages("builder.packages")
    base_key = key_of("base", suite, "\n".join(packages), function_source(build_base))
    replace = lock_overrides(record["lock_sha256"])
    venv_key = key_of("venv", base_key, record["lock_sha256"], "\n".join(builder),
                      json.dumps(replace, sort_keys=True),
                      function_source(build_venv, lock_requirements), SUPERVISOR_SED)
    patch = (HERE / "faults" / f"{fault}.patch").read_bytes() if fault else b""
    image_key = key_of("image", venv_key, digest, patch, function_source(
        build_image, dockerfile_production, dockerignore_matcher, singularity_env, runscript,
        singularity_date), json.dumps([ACTIONS, ENV_SCRIPTS, WEBUI_PLACEHOLDER, COMPRESSION,
                                       ELLA_UID, SINGULARITY_VERSION]))
    name = f"ella-release-v{version}" + (f"-fault.{fault}" if fault else "") + ".sif"
    final = cache.root / "images" / image_key
    if (final / name).is_file():
        return final / name

    base = cache.root / "base" / base_key
    if not (base / "rootfs").is_dir():
        with cache.building(base, f"base layer (debootstrap {suite})") as tmp:
            build_base(suite, packages, tmp)
    venv = cache.root / "venv" / venv_key
    if not (venv / "layer/dist/ella-python").is_dir():
        lock_bytes = read_archive(archive)["members"]["Pipfile.lock"]
        with cache.building(venv, f"virtualenv layer (Pipfile.lock {record['lock_sha256'][:12]})") as tmp:
            build_venv(base / "rootfs", lock_bytes, builder, tmp)
    with cache.building(final, name) as tmp:
        build_image(version, archive, read_archive(archive), base / "rootfs", venv / "layer",
                    fault, final / name, tmp)
    return final / name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path,
                        default=Path(os.environ.get("ELLA_SOURCES") or REPO.parent / "shared/ella"),
                        help="directory of ella-vX.Y.Z.tar.gz (default: $ELLA_SOURCES or ../shared/ella)")
    parser.add_argument("--cache", type=Path, required=True, help="cache directory, e.g. .cache/ella-images")
    parser.add_argument("--fault", help="build a deliberately broken release with faults/NAME.patch")
    parser.add_argument("versions", nargs="+", metavar="VERSION")
    args = parser.parse_args(argv)
    # A TERM (a CI timeout, kill PID) unwinds like Ctrl-C: mounts undone, temp dirs removed.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))

    for version in args.versions:
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            parser.error(f"{version}: a VERSION is X.Y.Z, as 1.17.2")
    if args.fault and not (HERE / "faults" / f"{args.fault}.patch").is_file():
        known = ", ".join(sorted(p.stem for p in (HERE / "faults").glob("*.patch")))
        print(f"build.py: no fault {args.fault!r} (known: {known})", file=sys.stderr)
        return 2
    sources = args.sources.resolve()
    for version in args.versions:
        archive = sources / f"ella-v{version}.tar.gz"
        if not archive.is_file():
            print(f"build.py: {archive} is missing; make it from ELLA's git repository with "
                  f"`git -C ella archive --prefix=ella-v{version}/ -o ella-v{version}.tar.gz v{version}` "
                  f"(or set --sources / ELLA_SOURCES)", file=sys.stderr)
            return 2
    cache = Cache(args.cache.resolve())
    built = {}
    try:
        for version in args.versions:
            built[version] = str(build(version, sources, cache, args.fault))
    except BuildError as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
