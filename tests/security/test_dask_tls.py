"""Dask over TLS: a scheduler and workers that demand certificates signed by the study's CA.

A study runs through ``[cluster] security = { ca_file, cert_file, key_file }`` (``daskopt run``) and through
``distributed.Security`` (Python); a client without the certificates, or with ones from another CA, is
refused within a bounded wait, and ``daskopt run`` without the security table exits 2 with one line.
The certificates are made here with the ``openssl`` command.
"""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from distributed import Client, Security

import daskopt
from tests.conftest import free_port, states

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

EXTENSIONS = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
)
OBJECTIVE = "def objective(trial):\n    x = trial.suggest_float('x', 0, 1)\n    return x * x\n"
STUDY = """
[study]
name = "tls"
n_trials = 6

[objective]
callable = "obj:objective"

[space]
x = {{ type = "float", low = 0, high = 1 }}

[cluster]
kind = "address"
address = "{address}"
connect_timeout = "10s"
{security}
[dashboard]
enabled = false
"""
SECURITY_TABLE = """
[cluster.security]
ca_file = "certs/ca.pem"
cert_file = "certs/cert.pem"
key_file = "certs/key.pem"
"""


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path

    def security(self) -> Security:
        return Security(
            tls_ca_file=str(self.ca),
            tls_client_cert=str(self.cert),
            tls_client_key=str(self.key),
            require_encryption=True,
        )

    def flags(self) -> list[str]:
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def make_certs(folder: Path, name: str) -> Certs:
    """A CA, and a certificate it signed for 127.0.0.1 (server and client use), with EC keys (fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name} CA")
    openssl("req", *ec, "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text(EXTENSIONS)
    openssl(
        "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip
    return Certs(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


@dataclass
class TlsCluster:
    address: str
    certs: Certs
    folder: Path


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    """``dask scheduler --protocol tls`` and two ``dask worker`` processes, all with the study's certificates."""
    folder = tmp_path_factory.mktemp("tls")
    certs = make_certs(folder / "certs", "daskopt test")
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder}
    scheduler = [dask, "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port)]
    worker = [dask, "worker", address, "--nworkers", "2", "--nthreads", "1"]
    processes = [subprocess.Popen([*scheduler, *certs.flags(), "--no-dashboard"], **quiet)]
    processes.append(subprocess.Popen([*worker, *certs.flags(), "--no-dashboard"], **quiet))
    try:
        with Client(address, security=certs.security(), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield TlsCluster(address, certs, folder)
    finally:
        for process in reversed(processes):  # workers first: a nanny without its scheduler waits 8 s
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _daskopt(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daskopt.cli", *args], cwd=folder, capture_output=True, text=True, timeout=120
    )


def _write_study(folder: Path, address: str, security: str) -> None:
    (folder / "obj.py").write_text(OBJECTIVE)
    (folder / "study.toml").write_text(STUDY.format(address=address, security=security))


def test_daskopt_run_with_the_security_table_runs_the_study(tls_cluster):
    _write_study(tls_cluster.folder, tls_cluster.address, SECURITY_TABLE)
    done = _daskopt(tls_cluster.folder, "run", "study.toml")
    assert done.returncode == 0, done.stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tls_cluster.folder / "tls.journal"))
    )
    assert states(optuna.load_study(study_name="tls", storage=storage)) == {"COMPLETE": 6}


def test_python_client_with_security_runs_a_study(tls_cluster):
    study = optuna.create_study()
    with Client(tls_cluster.address, security=tls_cluster.certs.security(), timeout=30) as client:
        assert all(worker.startswith("tls://") for worker in client.nthreads())
        daskopt.optimize(
            study, lambda t: t.suggest_float("x", 0, 1), n_trials=6, client=client, show_progress_bar=False
        )
    assert states(study) == {"COMPLETE": 6}


def _refused(address: str, security: Security | None) -> float:
    """Seconds until a client connection is refused; fails the test if it is accepted.

    The refused ``Client`` stays in a reference cycle (through its traceback), so it is collected here, at
    once. Left to the collector's timing, its ``__del__`` can run inside the next ``Client``'s start, while
    that holds the loop runner's lock, and its ``close`` then waits for that lock forever (distributed
    2026.8: a loop of refused connections hung within 40 attempts, and in none of 60 with this collect)."""
    started = time.monotonic()
    with pytest.raises(Exception) as refused:  # noqa: PT011 - TypeError, OSError, SSLError or TimeoutError
        client = Client(address, security=security, timeout=5)
        client.close()
    assert not isinstance(refused.value, AssertionError)
    elapsed = time.monotonic() - started
    del refused
    gc.collect()
    return elapsed


def test_clients_without_the_certificates_are_refused(tls_cluster, tmp_path):
    waits = [
        _refused(tls_cluster.address, None),  # no certificates at all
        _refused(tls_cluster.address.replace("tls://", "tcp://"), None),  # plain TCP to the TLS port
        _refused(tls_cluster.address, make_certs(tmp_path / "rogue", "rogue").security()),  # another CA
    ]
    assert max(waits) < 60  # bounded: refused, not left hanging


def test_daskopt_run_without_the_security_table_is_bad_input(tls_cluster, tmp_path):
    _write_study(tmp_path, tls_cluster.address, "")
    done = _daskopt(tmp_path, "run", "study.toml")
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("daskopt: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "TLS" in errors[0] and "[cluster.security]" in errors[0]
    assert not (tmp_path / "tls.journal").exists()
