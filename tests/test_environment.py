"""The environment: one set of pins, the venv built from them, JupyterLab's extensions, the setup scripts.

requirements.txt is the one list of pins; environment.yml repeats it for conda users.
Run `python tests/test_environment.py` to rewrite environment.yml's pip list from requirements.txt.
"""
import importlib.metadata
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, require, venv_env

REQUIREMENTS = ROOT / "requirements.txt"
ENVIRONMENT = ROOT / "environment.yml"
KEY_PACKAGES = ["torch", "torchvision", "nbgrader", "jupyterlab", "jupyterlab-rise", "d2l", "numpy"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def canonical(name):
    """PyPI's name normalisation: jupyterlab_rise, JupyterLab-RISE and jupyterlab.rise are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines):
    """{canonical name: version} from `name==version` lines; anything else is an error."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line!r} (use name==version)"
        pins[canonical(name.strip())] = version.strip()
    return pins


def requirements_pins():
    return parse_pins(REQUIREMENTS.read_text().splitlines())


def environment_spec():
    return yaml.safe_load(ENVIRONMENT.read_text())


def environment_pip_list(spec):
    lists = [dep["pip"] for dep in spec["dependencies"] if isinstance(dep, dict) and "pip" in dep]
    assert len(lists) == 1, "environment.yml needs exactly one `- pip:` list under dependencies"
    return lists[0]


@pytest.mark.fast
def test_environment_yml_is_a_conda_environment():
    spec = environment_spec()
    assert spec["name"]
    assert "conda-forge" in spec["channels"]
    conda_deps = [dep for dep in spec["dependencies"] if isinstance(dep, str)]
    assert "python=3.11" in conda_deps, "environment.yml must pin python=3.11 (d2l 1.0.3 needs numpy 1.23.5)"
    assert "pip" in conda_deps


@pytest.mark.fast
def test_environment_yml_pins_match_requirements():
    req = requirements_pins()
    env = parse_pins(environment_pip_list(environment_spec()))
    diff = {name: (req.get(name), env.get(name)) for name in req.keys() | env.keys() if req.get(name) != env.get(name)}
    lines = [f"  {name}: requirements.txt {r or '-'}  environment.yml {e or '-'}" for name, (r, e) in sorted(diff.items())]
    assert not diff, (
        "environment.yml's pip list disagrees with requirements.txt:\n" + "\n".join(lines)
        + "\nrequirements.txt is the source: run `.venv/bin/python tests/test_environment.py` to rewrite environment.yml"
    )


@pytest.mark.fast
def test_venv_has_the_pinned_versions():
    assert sys.version_info[:2] == (3, 11), f"the course runs on Python 3.11, this is {sys.version.split()[0]}"
    req = requirements_pins()
    wrong = []
    for name in KEY_PACKAGES:
        installed = importlib.metadata.version(name).split("+")[0]  # torch may carry a +cpu/+cu local tag
        if installed != req[canonical(name)]:
            wrong.append(f"{name} {installed} (pinned {req[canonical(name)]})")
    assert not wrong, f"{sys.prefix} differs from requirements.txt: {', '.join(wrong)}; run `make setup` after `rm .venv/.done`"


def jupyter(*args):
    proc = subprocess.run([sys.executable, "-m", "jupyter", *args], env=venv_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ANSI.sub("", proc.stdout + proc.stderr)


def test_lab_extensions_registered():
    listing = jupyter("labextension", "list")
    for ext in ["@jupyter/nbgrader", "jupyterlab-rise"]:
        assert re.search(rf"^\s*{re.escape(ext)} v\S+ enabled\s+OK", listing, re.M), \
            f"JupyterLab does not list {ext} as enabled OK:\n{listing}"


def test_server_extensions_enabled():
    listing = jupyter("server", "extension", "list")
    for ext in ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.assignment_list", "jupyterlab_rise"]:
        assert re.search(rf"^\s*{re.escape(ext)} enabled", listing, re.M), f"{ext} is not enabled:\n{listing}"


@pytest.mark.parametrize("python, says", [
    ("no-such-python3.11", "was not found"),
    ("FAKE", "is Python 3.12"),
])
@pytest.mark.fast
def test_setup_venv_refuses_other_pythons(tmp_path, python, says):
    if python == "FAKE":  # an interpreter that claims to be 3.12
        fake = tmp_path / "python3.12"
        fake.write_text("#!/bin/sh\necho 3.12\n")
        fake.chmod(0o755)
        python = str(fake)
    venv = tmp_path / "venv"
    proc = subprocess.run([str(ROOT / "scripts" / "setup-venv"), python, str(venv)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Python 3.11 is required" in proc.stderr and says in proc.stderr
    assert "conda env create -f environment.yml" in proc.stderr
    assert not venv.exists()


@pytest.mark.fast
def test_system_deps_quiet_when_everything_is_installed():
    require(shutil.which("dpkg-query"), "this is not a Debian system (no dpkg-query)")
    have = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", "chromium", "fonts-noto-cjk", "bubblewrap"],
                          capture_output=True, text=True)
    require(have.stdout.count("install ok installed") == 3, "chromium, fonts-noto-cjk or bubblewrap is missing")
    proc = subprocess.run([str(ROOT / "scripts" / "system-deps")], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def write_environment_yml():
    """Rewrite the pip list of environment.yml from requirements.txt, keeping everything above it."""
    text = ENVIRONMENT.read_text()
    head = text[: text.index("  - pip:\n") + len("  - pip:\n")]
    pins = [line.strip() for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    ENVIRONMENT.write_text(head + "".join(f"      - {pin}\n" for pin in pins))
    print(f"wrote {len(pins)} pins to {ENVIRONMENT}")


if __name__ == "__main__":
    write_environment_yml()
