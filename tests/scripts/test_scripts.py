"""Node scripts: shellcheck-clean, and what each does when run (fail closed, idempotent)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from components.render.containerd import (
    render_containerd_config,
    render_registry_hosts,
    render_runsc_toml,
)
from components.render.scripts import (
    REMOTE_RUNNER,
    SCRIPTS_DIR,
    b64,
    parse_invocation,
    render_invocation,
    script_names,
)
from tests.conftest import run_script

FAKE_RUNSC = "#!/bin/sh\necho 'runsc version {tag}'\n"


def test_every_script_is_strict_and_shellcheck_clean() -> None:
    scripts = sorted(SCRIPTS_DIR.glob("*.sh"))
    assert len(scripts) >= 10
    for script in scripts:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script.name
        assert "set -euo pipefail" in text, script.name
    result = subprocess.run(["shellcheck", "-x", *map(str, scripts)], cwd=SCRIPTS_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", script_names())
def test_rendered_invocation_is_shellcheck_clean(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(render_invocation(name, {"EXAMPLE": "it's quoted"}))
    result = subprocess.run(["shellcheck", "-e", "SC1091", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_parameters_are_quoted_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = render_invocation("wait-cloud-init.sh", {"X": f"$(touch {marker})"})
    # Only the parameter block: run it and read X back.
    block = "\n".join(line for line in text.splitlines() if line.startswith("export "))
    out = subprocess.run(["bash", "-c", block + '\nprintf %s "$X"'], capture_output=True,
                         text=True, check=True).stdout
    assert out == f"$(touch {marker})" and not marker.exists()


def test_invocation_rejects_bad_names() -> None:
    with pytest.raises(ValueError):
        render_invocation("preflight.sh", {"lower": "x"})
    with pytest.raises(ValueError):
        render_invocation("lib.sh", {})


def test_an_invocation_parses_back_to_its_script_and_parameters() -> None:
    params = {"A": "two words", "B_B64": "", "C": "it's\nmulti-line $(not run)"}
    for name in script_names():
        parsed = parse_invocation(render_invocation(name, params))
        assert (parsed.script, parsed.params) == (name, params)
    with pytest.raises(ValueError, match="none of the node scripts"):
        parse_invocation(render_invocation("preflight.sh", {}) + "echo tampered\n")
    with pytest.raises(ValueError, match="not a node-script invocation"):
        parse_invocation("echo hello\n")


def test_remote_runner_feeds_stdin_to_a_root_shell(tmp_path: Path) -> None:
    if shutil.which("sudo") is None:
        pytest.skip("sudo not installed")
    out = subprocess.run(["sh", "-c", REMOTE_RUNNER], input="id -u; echo done\n",
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "done"]


# --- gVisor install --------------------------------------------------------------------------

def publish(root: Path, rel: str, content: bytes, *, sha512: str | None = None) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    digest = hashlib.sha512(content).hexdigest()
    (root / f"{rel}.sha512").write_text(f"{sha512 or digest}  {path.name}\n")
    return digest


def gvisor_env(url: str, prefix: Path, state: Path, layout: str, release: str = "20251118.0",
               **extra: str) -> dict[str, str]:
    return {"GVISOR_RELEASE": release, "GVISOR_BASE_URL": url, "GVISOR_LAYOUT": layout,
            "PREFIX": str(prefix), "STATE_DIR": str(state), **extra}


def test_gvisor_binaries_layout_installs_verified_and_is_idempotent(
        release_server: tuple[str, Path], tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    runsc = publish(www, "20251118.0/x86_64/runsc", FAKE_RUNSC.format(tag="a").encode())
    shim = publish(www, "20251118.0/x86_64/containerd-shim-runsc-v1", b"#!/bin/sh\n")
    prefix = tmp_path / "prefix"
    env = gvisor_env(url, prefix, state_dir, "binaries", RUNSC_SHA512=runsc, SHIM_SHA512=shim)
    first = run_script("install-gvisor.sh", env, check=True)
    assert "installed" in first.stderr
    assert (prefix / "bin/runsc").read_text() == FAKE_RUNSC.format(tag="a")
    mtime = (prefix / "bin/runsc").stat().st_mtime_ns
    (www / "20251118.0").rename(www / "moved")  # a second run must not even download
    second = run_script("install-gvisor.sh", env, check=True)
    assert "already installed" in second.stderr
    assert (prefix / "bin/runsc").stat().st_mtime_ns == mtime
    # A replaced binary is not trusted on the stamp's word: the pinned release goes back.
    (www / "moved").rename(www / "20251118.0")
    (prefix / "bin/runsc").write_text("#!/bin/sh\necho 'runsc version tampered'\n")
    third = run_script("install-gvisor.sh", env, check=True)
    assert "installed files changed since they were installed" in third.stderr
    assert (prefix / "bin/runsc").read_text() == FAKE_RUNSC.format(tag="a")
    assert "already installed" in run_script("install-gvisor.sh", env, check=True).stderr


def test_gvisor_pinned_checksum_mismatch_keeps_previous_install(
        release_server: tuple[str, Path], tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    prefix = tmp_path / "prefix"
    good = publish(www, "20251118.0/x86_64/runsc", FAKE_RUNSC.format(tag="old").encode())
    shim = publish(www, "20251118.0/x86_64/containerd-shim-runsc-v1", b"#!/bin/sh\n")
    run_script("install-gvisor.sh", gvisor_env(url, prefix, state_dir, "binaries",
                                               RUNSC_SHA512=good, SHIM_SHA512=shim), check=True)
    # A newer release whose runsc was tampered with: the published .sha512 still describes
    # the original, so the download does not match.
    publish(www, "20260101.0/x86_64/runsc", FAKE_RUNSC.format(tag="new").encode(),
            sha512=hashlib.sha512(b"what upstream published").hexdigest())
    publish(www, "20260101.0/x86_64/containerd-shim-runsc-v1", b"#!/bin/sh\n")
    result = run_script("install-gvisor.sh", gvisor_env(
        url, prefix, state_dir, "binaries", release="20260101.0"))
    assert result.returncode != 0
    assert "checksum mismatch for runsc" in result.stderr
    assert (prefix / "bin/runsc").read_text() == FAKE_RUNSC.format(tag="old")


def test_gvisor_pin_disagreeing_with_published_digest_fails(
        release_server: tuple[str, Path], tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    publish(www, "20251118.0/x86_64/runsc", FAKE_RUNSC.format(tag="a").encode())
    publish(www, "20251118.0/x86_64/containerd-shim-runsc-v1", b"#!/bin/sh\n")
    result = run_script("install-gvisor.sh", gvisor_env(
        url, tmp_path / "prefix", state_dir, "binaries", RUNSC_SHA512="0" * 128))
    assert result.returncode != 0
    assert "differs from the release's published" in result.stderr
    assert not (tmp_path / "prefix/bin/runsc").exists()


def make_archive(path: Path, tag: str) -> None:
    staging = path.parent / f"staging-{tag}"
    (staging / "gvisor-bin").mkdir(parents=True)
    (staging / "runsc").write_text(FAKE_RUNSC.format(tag=tag))
    (staging / "containerd-shim-runsc-v1").write_text("#!/bin/sh\n")
    (staging / "gvisor-bin/helper").write_text(tag)
    for entry in staging.rglob("*"):
        entry.chmod(0o755)
    with tarfile.open(path, "w:bz2") as tar:
        for name in ("runsc", "containerd-shim-runsc-v1", "gvisor-bin"):
            tar.add(staging / name, arcname=name)


def publish_archive(www: Path, tag: str) -> Path:
    archive = www / "20251118.0/x86_64/gvisor.tar.bz2"
    archive.parent.mkdir(parents=True)
    make_archive(archive, tag)
    publish(www, "20251118.0/x86_64/gvisor.tar.bz2", archive.read_bytes())
    return archive


def test_gvisor_archive_layout(release_server: tuple[str, Path], tmp_path: Path,
                               state_dir: Path) -> None:
    url, www = release_server
    publish_archive(www, "arch")
    prefix = tmp_path / "prefix"
    run_script("install-gvisor.sh", gvisor_env(url, prefix, state_dir, "archive"), check=True)
    assert (prefix / "bin/runsc").read_text() == FAKE_RUNSC.format(tag="arch")
    assert (prefix / "bin/gvisor-bin/helper").read_text() == "arch"


def test_gvisor_corrupted_archive_refused(release_server: tuple[str, Path], tmp_path: Path,
                                          state_dir: Path) -> None:
    url, www = release_server
    archive = publish_archive(www, "arch")
    archive.write_bytes(archive.read_bytes()[:-10] + b"corrupted!")
    prefix = tmp_path / "prefix"
    result = run_script("install-gvisor.sh", gvisor_env(url, prefix, state_dir, "archive"))
    assert result.returncode != 0 and "checksum mismatch" in result.stderr
    assert not (prefix / "bin/runsc").exists()


def test_gvisor_release_404_fails_clearly(release_server: tuple[str, Path], tmp_path: Path,
                                          state_dir: Path) -> None:
    url, _ = release_server
    result = run_script("install-gvisor.sh", gvisor_env(url, tmp_path / "p", state_dir,
                                                        "binaries"))
    assert result.returncode != 0 and "download failed" in result.stderr


def test_scripts_refuse_missing_parameters(state_dir: Path) -> None:
    result = run_script("install-gvisor.sh", {"STATE_DIR": str(state_dir)})
    assert result.returncode != 0
    assert "missing parameters: GVISOR_RELEASE GVISOR_BASE_URL GVISOR_LAYOUT" in result.stderr


# --- Kata install ----------------------------------------------------------------------------

KATA_SHIM = "opt/kata/bin/containerd-shim-kata-v2"
KATA_CONFIG = "opt/kata/share/defaults/kata-containers/configuration.toml"


def publish_kata(www: Path, version: str, tag: str, *, files: tuple[str, ...] = (
        KATA_SHIM, KATA_CONFIG)) -> str:
    """A static release laid out like upstream's; returns its sha256."""
    archive = www / version / f"kata-static-{version}-amd64.tar.xz"
    archive.parent.mkdir(parents=True)
    staging = www.parent / f"kata-staging-{tag}"
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(f"#!/bin/sh\necho {tag}\n")
        (staging / rel).chmod(0o755)
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(staging / "opt", arcname="opt")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def kata_env(url: str, root: Path, state: Path, version: str, sha256: str,
             kvm: str = "/dev/null") -> dict[str, str]:
    # /dev/null stands in for /dev/kvm (a character device); KVM_DEVICE=<missing> for none.
    return {"KATA_VERSION": version, "KATA_SHA256": sha256, "KATA_BASE_URL": url,
            "KATA_ROOT": str(root / "opt/kata"), "PREFIX": str(root / "usr/local"),
            "STATE_DIR": str(state), "KVM_DEVICE": kvm}


def test_kata_installs_verified_and_is_idempotent(release_server: tuple[str, Path],
                                                  tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    env = kata_env(url, root, state_dir, "3.7.0", publish_kata(www, "3.7.0", "a"))
    first = run_script("install-kata.sh", env, check=True)
    assert "Kata 3.7.0 installed" in first.stderr
    shim = root / "usr/local/bin/containerd-shim-kata-v2"
    assert shim.resolve() == (root / KATA_SHIM).resolve()
    assert "echo a" in shim.read_text()
    assert (root / KATA_CONFIG).is_file()
    mtime = (root / KATA_SHIM).stat().st_mtime_ns
    (www / "3.7.0").rename(www / "moved")  # a second run must not even download
    second = run_script("install-kata.sh", env, check=True)
    assert "already installed" in second.stderr
    assert (root / KATA_SHIM).stat().st_mtime_ns == mtime
    # An edited file of the install is put back from the pinned release.
    (www / "moved").rename(www / "3.7.0")
    (root / KATA_CONFIG).write_text("edited")
    third = run_script("install-kata.sh", env, check=True)
    assert "installed files changed since they were installed" in third.stderr
    assert "echo a" in (root / KATA_CONFIG).read_text()


def test_kata_checksum_mismatch_keeps_previous_install(release_server: tuple[str, Path],
                                                       tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    run_script("install-kata.sh", kata_env(url, root, state_dir, "3.7.0",
                                           publish_kata(www, "3.7.0", "old")), check=True)
    publish_kata(www, "3.8.0", "tampered")
    result = run_script("install-kata.sh", kata_env(url, root, state_dir, "3.8.0", "0" * 64))
    assert result.returncode != 0
    assert "checksum mismatch for kata-static-3.8.0-amd64.tar.xz" in result.stderr
    assert "echo old" in (root / "usr/local/bin/containerd-shim-kata-v2").read_text()


def test_kata_without_kvm_fails_before_downloading(release_server: tuple[str, Path],
                                                   tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    sha256 = publish_kata(www, "3.7.0", "a")
    (www / "3.7.0").rename(www / "moved")  # any download would now fail differently
    result = run_script("install-kata.sh", kata_env(url, root, state_dir, "3.7.0", sha256,
                                                    kvm=str(tmp_path / "no-kvm")))
    assert result.returncode != 0
    assert "no-kvm is missing: Kata needs nested virtualisation" in result.stderr
    assert not (root / "opt").exists() and not (state_dir / "kata").exists()


def test_kata_archive_without_its_configuration_refused(release_server: tuple[str, Path],
                                                        tmp_path: Path, state_dir: Path) -> None:
    url, www = release_server
    root = tmp_path / "root"
    sha256 = publish_kata(www, "3.7.0", "a", files=(KATA_SHIM,))
    result = run_script("install-kata.sh", kata_env(url, root, state_dir, "3.7.0", sha256))
    assert result.returncode != 0
    assert f"has no {KATA_CONFIG}" in result.stderr
    assert not (root / "opt").exists()


# --- containerd config -----------------------------------------------------------------------

def configure_env(tmp_path: Path, rendered: list[str], handlers: list[str],
                  restart_cmd: str = "true") -> dict[str, str]:
    """configure-containerd.sh against Debian's containerd, with both schema versions rendered
    for `rendered` while the node needs `handlers`; restarts run `restart_cmd`."""
    return {
        "CONFIG_DIR": str(tmp_path / "etc"),
        "CONTAINERD_BIN": shutil.which("containerd") or "",
        "CONTAINERD_CONFIG_V2_B64": b64(render_containerd_config(2, rendered)),
        "CONTAINERD_CONFIG_V3_B64": b64(render_containerd_config(3, rendered)),
        "HANDLERS": " ".join(handlers),
        "RESTART_CMD": restart_cmd,
    }


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_configure_containerd_installs_matching_file_once(tmp_path: Path) -> None:
    restarts = tmp_path / "restarts"
    handlers = ["runc", "kata"]  # Debian's 1.6 cannot drive gVisor's shim (tested below)
    env = {**configure_env(tmp_path, handlers, handlers, f"echo restart >> {restarts}"),
           "RUNSC_TOML_B64": b64(render_runsc_toml())}
    run_script("configure-containerd.sh", env, check=True)
    config = (tmp_path / "etc/config.toml").read_text()
    assert config == render_containerd_config(2, handlers)  # Debian ships containerd 1.6
    assert (tmp_path / "etc/runsc.toml").read_text() == render_runsc_toml()
    assert restarts.read_text().count("restart") == 1
    second = run_script("configure-containerd.sh", env, check=True)
    assert restarts.read_text().count("restart") == 1
    assert "handlers configured: runc kata" in second.stderr
    # The file is reconciled, never appended to.
    (tmp_path / "etc/config.toml").write_text(config + "\n# local edit\n")
    run_script("configure-containerd.sh", env, check=True)
    assert (tmp_path / "etc/config.toml").read_text() == config
    assert restarts.read_text().count("restart") == 2
    # runsc.toml is read per pod by gVisor's shim: changing it alone restarts nothing.
    flags = {"debug": True}
    changed = run_script("configure-containerd.sh",
                         {**env, "RUNSC_TOML_B64": b64(render_runsc_toml(flags=flags))},
                         check=True)
    assert (tmp_path / "etc/runsc.toml").read_text() == render_runsc_toml(flags=flags)
    assert "new gVisor pods use it" in changed.stderr
    assert restarts.read_text().count("restart") == 2


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_configure_containerd_names_a_missing_handler(tmp_path: Path) -> None:
    # The file lacks kata although the node needs it.
    env = configure_env(tmp_path, ["runc"], ["runc", "kata"])
    result = run_script("configure-containerd.sh", env)
    assert result.returncode != 0
    assert "does not know runtime handler(s): kata" in result.stderr


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_configure_containerd_refuses_gvisor_on_containerd_16(tmp_path: Path) -> None:
    env = configure_env(tmp_path, ["runc", "runsc"], ["runc", "runsc"])
    result = run_script("configure-containerd.sh", env)
    assert result.returncode != 0
    assert "needs containerd 1.7 or newer" in result.stderr
    assert not (tmp_path / "etc/config.toml").exists()


def check_node(tmp_path: Path, flag: str, config_version: int, handlers: list[str]
               ) -> subprocess.CompletedProcess[str]:
    """tools/check-node with a rendered containerd config, read by the host's containerd."""
    config = tmp_path / f"config-v{config_version}.toml"
    config.write_text(render_containerd_config(config_version, handlers))
    return subprocess.run([str(SCRIPTS_DIR.parents[1] / "tools" / "check-node"), flag,
                           "--config", str(config)], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_check_node_reports_handlers_from_the_given_config(tmp_path: Path) -> None:
    result = check_node(tmp_path, "--gvisor", 2, ["runc", "runsc"])
    assert "handlers configured: runc runsc" in result.stderr
    # A version-3 file: containerd 1.6 ignores its runtimes.
    result = check_node(tmp_path, "--gvisor", 3, ["runc", "runsc"])
    assert result.returncode != 0
    # (1.6 has a built-in runc default, so only runsc is missing)
    assert "does not know runtime handler(s): runsc" in result.stderr


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
@pytest.mark.skipif(shutil.which("containerd-shim-kata-v2") is not None,
                    reason="this host has Kata installed")
def test_check_node_names_a_missing_kata_install(tmp_path: Path) -> None:
    result = check_node(tmp_path, "--kata", 2, ["runc", "kata"])
    assert result.returncode != 0
    assert "handlers configured: runc kata" in result.stderr
    assert "unmet: containerd-shim-kata-v2 not on PATH" in result.stderr
    assert "unmet: no Kata configuration" in result.stderr


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_configure_containerd_owns_the_registry_mirrors(tmp_path: Path) -> None:
    hosts = {r: render_registry_hosts(r, f"http://10.19.0.1:5000/v2/{r}")
             for r in ("docker.io", "registry.k8s.io")}

    def listing(registries: dict[str, str]) -> str:
        return "".join(f"{r} {b64(text)}\n" for r, text in registries.items())

    env = {**configure_env(tmp_path, ["runc"], ["runc"]), "REGISTRY_HOSTS_B64": b64(listing(hosts))}
    certs = tmp_path / "etc/certs.d"
    (certs / "quay.io").mkdir(parents=True)  # a mirror the stack no longer names
    (certs / "quay.io/hosts.toml").write_text('server = "https://quay.io"\n')
    first = run_script("configure-containerd.sh", env, check=True)
    for registry, text in hosts.items():
        assert (certs / registry / "hosts.toml").read_text() == text
    assert not (certs / "quay.io").exists()
    assert "registry mirror for quay.io removed" in first.stderr
    second = run_script("configure-containerd.sh", env, check=True)
    assert "registry mirror" not in second.stderr
    # Mirrors off: every hosts.toml goes, so pulls return to the registries themselves.
    run_script("configure-containerd.sh", {**env, "REGISTRY_HOSTS_B64": ""}, check=True)
    assert list(certs.iterdir()) == []


@pytest.mark.skipif(shutil.which("containerd") is None, reason="needs Debian's containerd")
def test_configure_containerd_refuses_a_bad_registry_name(tmp_path: Path) -> None:
    bad = "../../etc " + b64('server = "x"') + "\n"
    env = {**configure_env(tmp_path, ["runc"], ["runc"]), "REGISTRY_HOSTS_B64": b64(bad)}
    result = run_script("configure-containerd.sh", env)
    assert result.returncode != 0
    assert "invalid registry" in result.stderr
    assert not (tmp_path / "etc/config.toml").exists()
