"""benchmarks/cloud_init_packages.py: parsing cloud-init's own timings (output recorded from
the benchmark's boots), the old-behaviour document, the summary's arithmetic and the archive
proxy against a fake upstream on loopback (quick); one real run of two boots (slow, vm)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmarks import apt_proxy, cloud_init_packages
from benchmarks.cloud_init_packages import (
    AFTER,
    BEFORE,
    PACKAGE_MODULE,
    RUNCMD_MODULE,
    Boot,
    before_user_data,
    boot_order,
    module_seconds,
    parse_blame,
    parse_show_totals,
    summary_rows,
)
from components.render.cloudinit import PACKAGES, NodeCloudInit, render_user_data

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


# ---- cloud-init's timings -------------------------------------------------------------------

def test_blame_of_the_old_behaviour_has_the_package_module_and_the_script() -> None:
    (record,) = parse_blame(recorded("before-blame.txt"))
    assert record["modules-final/config-package-update-upgrade-install"] == 49.396
    assert module_seconds(record, PACKAGE_MODULE) == 49.396
    assert module_seconds(record, RUNCMD_MODULE) == 3.748
    # cloud-init spells some modules with underscores; either spelling finds them.
    assert module_seconds(record, "config-update-etc-hosts") == 0.07
    assert module_seconds(record, "config-scripts_user") == 3.748
    assert len(record) == 40


def test_blame_without_the_package_keys_has_no_package_module() -> None:
    (record,) = parse_blame(recorded("after-blame.txt"))
    assert not any("package" in name for name in record)
    assert module_seconds(record, PACKAGE_MODULE) == 0.0
    assert module_seconds(record, RUNCMD_MODULE) > 0


def test_blame_keeps_boot_records_apart_and_sums_a_repeated_event() -> None:
    text = ("-- Boot Record 01 --\n     02.50000s (init-local/check-cache)\n"
            "     01.00000s (init-network/check-cache)\n\n"
            "-- Boot Record 02 --\n     00.25000s (modules-final/config-scripts-user)\n"
            "     00.25000s (modules-final/config-scripts-user)\n\n2 boot records analyzed\n")
    first, second = parse_blame(text)
    assert module_seconds(first, "check-cache") == 3.5
    assert module_seconds(second, RUNCMD_MODULE) == 0.5
    assert parse_blame("") == []


def test_show_gives_cloud_init_s_own_total_per_boot() -> None:
    assert parse_show_totals(recorded("before-show.txt")) == [74.367]
    assert parse_show_totals("Total Time: 1.50000 seconds\n\nTotal Time: 2.00000 seconds\n"
                             ) == [1.5, 2.0]


# ---- the two documents ----------------------------------------------------------------------

NODE = NodeCloudInit(
    hostname="bench", admin_user="ops", admin_ssh_public_key="ssh-ed25519 AAAAadmin ops@x",
    host_key_ed25519_private="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
                             "-----END OPENSSH PRIVATE KEY-----\n",
    host_key_ed25519_public="ssh-ed25519 AAAAhost root@bench",
    apt_mirror="http://10.0.2.2:8000/debian",
    apt_security_mirror="http://10.0.2.2:8000/debian-security")


def test_before_is_the_rendered_document_plus_cloud_init_s_package_keys() -> None:
    after = render_user_data(NODE)
    before = before_user_data(after)
    assert before.startswith("#cloud-config\n")
    old = yaml.safe_load(before)
    assert old.pop("package_update") is True
    assert old.pop("packages") == list(PACKAGES)
    assert old == yaml.safe_load(after)
    assert "package_update" not in yaml.safe_load(after)  # the cut is still in place
    with pytest.raises(ValueError, match="cloud-config"):
        before_user_data("hostname: x\n")


def test_boots_interleave_after_the_unmeasured_warm_up() -> None:
    assert boot_order(2, warm_up=True) == [(BEFORE, False), (AFTER, True), (BEFORE, True),
                                           (AFTER, True), (BEFORE, True)]
    assert boot_order(1, warm_up=False) == [(AFTER, True), (BEFORE, True)]


# ---- the summary ----------------------------------------------------------------------------

def boot(variant: str, seconds: float) -> Boot:
    return Boot(variant, ssh_ready=seconds, cloud_init_done=2 * seconds,
                cloud_init_total=seconds, package_module=seconds if variant == BEFORE else 0.0,
                runcmd=1.0, archive_files=0, load=1.0)


def test_summary_is_the_median_per_variant_and_their_difference() -> None:
    boots = [boot(AFTER, 10), boot(BEFORE, 50), boot(AFTER, 30), boot(BEFORE, 70),
             boot(AFTER, 20), boot(BEFORE, 90)]
    rows = {row[0]: row[1:] for row in summary_rows(boots)}
    assert rows["SSH ready s"] == [20, 70, 50]
    assert rows["cloud-init done s"] == [40, 140, 100]
    assert rows["package module s"] == [0, 70, 70]
    assert rows["runcmd s"] == [1, 1, 0]
    # Two of each: the mean of the middle pair.
    rows = {row[0]: row[1:] for row in summary_rows(boots[:4])}
    assert rows["SSH ready s"] == [20, 60, 40]
    # A difference that rounds to nothing prints as 0, not -0.
    slower = [Boot(AFTER, 1, 1, 1, 0, 1.02, 0, 1), Boot(BEFORE, 1, 1, 1, 1, 0.98, 0, 1)]
    assert "|              0 |" in cloud_init_packages.summary_table(slower).splitlines()[-1]


def test_tables_show_every_boot_and_each_metric() -> None:
    boots = [boot(AFTER, 10), boot(BEFORE, 50)]
    out = cloud_init_packages.boot_table(boots)
    assert [line.split("|")[2].strip() for line in out.splitlines()[2:]] == [AFTER, BEFORE]
    summary = cloud_init_packages.summary_table(boots)
    assert "| package module s " in summary and "before - after" in summary


# ---- the archive proxy ----------------------------------------------------------------------

@pytest.fixture
def upstream(release_server: tuple[str, Path]) -> tuple[str, Path]:
    """A fake Debian archive on loopback, with one package and one release file."""
    url, root = release_server
    (root / "debian/pool/main/c").mkdir(parents=True)
    (root / "debian/pool/main/c/curl.deb").write_bytes(b"deb v1")
    (root / "debian-security/dists/bookworm-security").mkdir(parents=True)
    (root / "debian-security/dists/bookworm-security/InRelease").write_text("release 1")
    return url, root


@pytest.fixture
def proxy(upstream: tuple[str, Path], tmp_path: Path) -> Iterator[apt_proxy.AptProxy]:
    with apt_proxy.serve(tmp_path / "cache", upstream=upstream[0]) as running:
        yield running


def get(proxy: apt_proxy.AptProxy, path: str) -> tuple[int, bytes]:
    # A raw request line: urllib would normalise the `..` the proxy must refuse itself.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_miss_is_fetched_from_upstream_then_served_from_the_cache(
        proxy: apt_proxy.AptProxy, upstream: tuple[str, Path], tmp_path: Path) -> None:
    assert get(proxy, "/debian/pool/main/c/curl.deb") == (200, b"deb v1")
    assert (tmp_path / "cache/debian/pool/main/c/curl.deb").read_bytes() == b"deb v1"
    (upstream[1] / "debian/pool/main/c/curl.deb").unlink()
    assert get(proxy, "/debian/pool/main/c/curl.deb") == (200, b"deb v1")
    counts = proxy.snapshot()
    assert (counts.fetched, counts.served, counts.fetched_bytes) == (1, 2, 6)


def test_a_cached_file_is_served_without_asking_upstream(tmp_path: Path) -> None:
    cached = tmp_path / "cache/debian/pool/main/s/socat.deb"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"from the cache")
    with socket.socket() as closed:  # an upstream nobody listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with apt_proxy.serve(tmp_path / "cache", upstream=nowhere) as proxy:
        assert get(proxy, "/debian/pool/main/s/socat.deb") == (200, b"from the cache")
        assert get(proxy, "/debian/pool/main/s/missing.deb")[0] == 404
        assert proxy.snapshot().fetched == 0


def test_release_files_are_fetched_again_once_per_proxy(
        upstream: tuple[str, Path], tmp_path: Path) -> None:
    path = "/debian-security/dists/bookworm-security/InRelease"
    release = upstream[1] / path.lstrip("/")
    with apt_proxy.serve(tmp_path / "cache", upstream=upstream[0]) as proxy:
        assert get(proxy, path) == (200, b"release 1")
        release.write_text("release 2")
        assert get(proxy, path) == (200, b"release 1")  # within one run: the same index
    with apt_proxy.serve(tmp_path / "cache", upstream=upstream[0]) as proxy:
        assert get(proxy, path) == (200, b"release 2")  # the next run: fresh
    release.unlink()
    with apt_proxy.serve(tmp_path / "cache", upstream=upstream[0]) as proxy:
        assert get(proxy, path)[0] == 404  # upstream has it no more: neither do we


def test_upstream_missing_files_are_not_cached(proxy: apt_proxy.AptProxy,
                                               tmp_path: Path) -> None:
    assert get(proxy, "/debian/dists/bookworm/Release")[0] == 404
    assert not (tmp_path / "cache/debian/dists/bookworm/Release").exists()


@pytest.mark.parametrize("path", [
    "/etc/passwd", "/", "/debian", "/debian/", "/ubuntu/pool/x.deb",
    "/debian/../etc/passwd", "/debian/pool/../../x", "/debian/%2e%2e/x", "/debian//pool/x",
    "/debian/pool/", "/debian-securityx/dists/x",
])
def test_paths_outside_the_two_archives_are_refused(proxy: apt_proxy.AptProxy,
                                                    path: str) -> None:
    assert get(proxy, path)[0] == 403
    counts = proxy.snapshot()
    assert (counts.refused, counts.fetched) == (1, 0)


def test_the_archive_path_of_a_request() -> None:
    assert str(apt_proxy.archive_path("/debian/pool/main/c/curl_8.deb?x=1")) == (
        "debian/pool/main/c/curl_8.deb")
    assert str(apt_proxy.archive_path("/debian/pool/main/g/g%2B%2B.deb")) == (
        "debian/pool/main/g/g++.deb")
    assert apt_proxy.archive_path("/debian/pool/a\\b") is None
    assert apt_proxy.changes_in_place(apt_proxy.archive_path("/debian/dists/bookworm/InRelease")
                                      or pytest.fail("refused"))
    assert not apt_proxy.changes_in_place(
        apt_proxy.archive_path("/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/ab")
        or pytest.fail("refused"))


# ---- one real run ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.archive  # its "before" boot's apt goes through the proxy to Debian's archive
def test_one_run_boots_each_variant_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert cloud_init_packages.main(["--runs", "1", "--no-warm-up"]) == 0
    out = capsys.readouterr().out
    boots = out.split("## Boots", 1)[1].split("## Medians", 1)[0]
    rows = [line.split("|") for line in boots.splitlines() if line.startswith("| ")][1:]
    assert [r[2].strip() for r in rows] == [AFTER, BEFORE]
    package = {r[2].strip(): float(r[6]) for r in rows}
    assert package[AFTER] == 0 and package[BEFORE] > 0  # apt ran only in the old behaviour
    summary = out.split("## Medians", 1)[1]
    assert all(f"| {label} " in summary for label, _ in cloud_init_packages.METRICS)
    assert "load average (1 min) at start" in out and "load average (1 min) at end" in out
