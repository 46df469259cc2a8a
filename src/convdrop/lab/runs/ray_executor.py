"""``--executor ray``: each (method, seed) run is one Ray task calling :func:`execute`.

The thin adapter between the runner and Ray. Ray schedules the tasks by the CPUs and
GPUs each run reserves (``--cpus-per-run``, ``--gpus-per-run``, fractions allowed), and
retries a task whose worker or node died (:data:`MAX_RETRIES`); the retry resumes the run
from its last checkpoint and takes over the dead attempt's run-folder lock
(:func:`convdrop.lab.runs.lock.hold`'s ``owner``: the same run of the same command).

Without ``--ray-address`` :func:`connect` starts a local Ray listening on 127.0.0.1 only
and stops it at the end, with its sessions and logs in a temporary folder removed after
and its authentication token in the environment only, so nothing is left in ``/tmp/ray``
or ``~/.ray``; with an address, it joins that cluster and leaves it running. ``--out``
must be the same folder on every node (a shared filesystem): the driver writes a token
there and each task reads it back before it trains (:mod:`convdrop.lab.runs.shared_out`).
Progress comes from the runs' ``metrics.csv`` on that folder, so the bar needs no channel
of its own. Ctrl-C (or any error) cancels every task still pending or running.

Ray is imported only here and only when ``--executor ray`` is chosen; without the
``ray`` extra that is one line saying how to install it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from convdrop._extras import MissingExtraError, require
from convdrop.errors import ArgumentError, UserError, one_line_warnings
from convdrop.lab.runs import shared_out
from convdrop.lab.runs.run import execute
from convdrop.lab.runs.workers import WorkerDied
from convdrop.lab.spec.experiment import ExperimentSpec

__all__ = ["MAX_RETRIES", "RayExecutor", "check_extra", "cluster_nodes", "connect", "import_ray",
           "on_loopback"]

MAX_RETRIES = 3  # attempts after the first, for a task whose worker or node died
POLL_S = 0.5  # how often the driver looks at the runs' progress
CANCEL_GRACE_S = 5.0  # a cancelled run's time to release its lock before it is killed
# Ray's single-machine mode (its default on macOS and Windows): every Ray process listens
# on 127.0.0.1 only, and a driver finds a Ray there. Read once, when ray is imported; on
# Linux `_node_ip_address="127.0.0.1"` alone is turned into the machine's address (Ray
# 2.60), with ports open on all interfaces.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_extra() -> None:
    """An :class:`ArgumentError` naming the ``ray`` extra when ray is not installed."""
    try:
        require("ray", "--executor ray", ("ray",))
    except MissingExtraError as err:  # the user's to fix: one line, not a traceback
        raise ArgumentError(str(err)) from err


def on_loopback(address: str | None) -> bool:
    """Whether ``address`` (None: a local Ray to start) is a Ray on this machine's 127.0.0.1."""
    if address is None:
        return True
    host = address.removeprefix("ray://").rpartition(":")[0] or address
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def import_ray(*, loopback: bool = False) -> ModuleType:
    """The ``ray`` module (an :class:`ArgumentError` naming the extra when it is missing).

    ``loopback``: the Ray to start or join is on 127.0.0.1, so this process, and the
    Ray it starts, listen there only (set before ray is first imported).
    """
    check_extra()
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    return importlib.import_module("ray")


def cluster_nodes(ray: ModuleType) -> list[dict[str, float]]:
    """The resources (``CPU``, ``GPU``, ...) of every live node of the cluster."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def _slots(nodes: list[dict[str, float]], cpus: float, gpus: float) -> int:
    """How many runs of ``cpus`` and ``gpus`` each fit on ``nodes`` at once."""
    def fit(have: float, need: float) -> float:
        return math.floor(have / need + 1e-9) if need > 0 else math.inf

    return int(sum(min(fit(n.get("CPU", 0), cpus), fit(n.get("GPU", 0), gpus)) for n in nodes))


def _gpus(spec: ExperimentSpec, nodes: list[dict[str, float]], wanted: float | None) -> float:
    """GPUs per run: the flag's, else one when the cluster has GPUs and the device allows."""
    total = sum(n.get("GPU", 0) for n in nodes)
    if spec.device.startswith("cuda:"):
        raise ArgumentError(f"--device {spec.device}: on --executor ray, Ray gives each run "
                            "its GPU; use --device cuda (or auto)")
    if wanted is None:
        wanted = 1.0 if total and spec.device in ("auto", "cuda") else 0.0
    if spec.device == "cuda" and (wanted == 0 or not total):
        raise ArgumentError(f"--device cuda: the Ray cluster has {total:g} GPU(s) and each run "
                            f"reserves {wanted:g}; pass --gpus-per-run > 0 on a cluster with "
                            "GPUs, or --device auto")
    return wanted


class RayExecutor:
    """Runs as Ray tasks on a connected cluster (see the module docstring)."""

    name = "ray"

    def __init__(self, ray: ModuleType, spec: ExperimentSpec, *, where: str,
                 cpus_per_run: float | None = None, gpus_per_run: float | None = None,
                 node_out: Path | None = None) -> None:
        """``where`` names the cluster in :meth:`describe`; ``node_out`` is where the nodes
        see ``--out`` when it is mounted elsewhere than on this machine (default: the same
        path)."""
        self.ray, self.where, self.node_out = ray, where, node_out
        self.nodes = cluster_nodes(ray)
        self.cpus = cpus_per_run or 1.0
        self.gpus = _gpus(spec, self.nodes, gpus_per_run)
        self.threads = max(1, int(self.cpus))
        self.device = "cpu" if self.gpus == 0 and spec.device == "auto" else spec.device
        self.slots = _slots(self.nodes, self.cpus, self.gpus)
        self._tokens: dict[Path, tuple[str, int]] = {}  # out -> (token, calls using it)
        self._token_lock = threading.Lock()
        if self.slots == 0:
            largest = max(self.nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)),
                          default={})
            raise ArgumentError(
                f"--cpus-per-run {self.cpus:g} --gpus-per-run {self.gpus:g}: no node of the "
                f"Ray cluster has that much (the largest has {largest.get('CPU', 0):g} CPUs, "
                f"{largest.get('GPU', 0):g} GPUs); ask for less per run")

    def describe(self) -> str:
        cpus = sum(n.get("CPU", 0) for n in self.nodes)
        gpus = sum(n.get("GPU", 0) for n in self.nodes)
        return (f"ray {self.where}: {len(self.nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs; "
                f"{self.cpus:g} CPU and {self.gpus:g} GPU per run ({self.threads} torch "
                f"thread(s)), up to {self.slots} runs at once")

    def run(self, spec: ExperimentSpec, runs: list[tuple[str, int]], out: Path, *,
            advance: Callable[[int], None], show: Callable[[str], None]) -> list[dict[str, Any]]:
        out = Path(out).resolve()
        task = self.ray.remote(_task)
        spec_json, node_out = spec.model_dump_json(), str(self.node_out or out)
        meter = shared_out.Meter(out, runs, spec.epochs)
        with self._token(out) as token:
            refs = [task.options(name=f"convdrop {method}/seed{seed}", num_cpus=self.cpus,
                                 num_gpus=self.gpus, max_retries=MAX_RETRIES,
                                 retry_exceptions=False).remote(
                        spec_json, method, seed, node_out, token, self.threads, self.device)
                    for method, seed in runs]
            return self._collect(refs, runs, meter, advance, show)

    @contextmanager
    def _token(self, out: Path) -> Iterator[str]:
        """``out``'s token, written by the first of the calls running at once and removed
        by the last (a search's trials share it)."""
        with self._token_lock:
            token, users = self._tokens.get(out) or (shared_out.write_token(out), 0)
            self._tokens[out] = (token, users + 1)
        try:
            yield token
        finally:
            with self._token_lock:
                token, users = self._tokens.pop(out)
                if users > 1:
                    self._tokens[out] = (token, users - 1)
                else:
                    shared_out.remove_token(out)

    def _collect(self, refs: list[Any], runs: list[tuple[str, int]], meter: shared_out.Meter,
                 advance: Callable[[int], None], show: Callable[[str], None]
                 ) -> list[dict[str, Any]]:
        index = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, dict[str, Any]] = {}
        pending = list(refs)
        try:
            while pending:
                ready, pending = self.ray.wait(pending, num_returns=len(pending),
                                               timeout=POLL_S)
                for ref in ready:
                    results[index[ref]] = self._result(ref, runs[index[ref]])
                advance(meter.advance(set(results)))
                show(f"{len(results)} of {len(runs)} runs done on ray")
        except BaseException:
            self._cancel(pending)
            raise
        return [results[i] for i in range(len(runs))]

    def _result(self, ref: Any, run: tuple[str, int]) -> dict[str, Any]:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as err:
            if isinstance(err.cause, UserError):
                raise err.cause from None
            raise RuntimeError(f"run {run[0]} seed {run[1]} failed in a Ray task:\n{err}"
                               ) from None
        except exceptions.RayError as err:  # its worker or node died more than MAX_RETRIES times
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise WorkerDied(f"the Ray task of run {run[0]} seed {run[1]} failed after "
                             f"{MAX_RETRIES} retries ({type(err).__name__}: {first[:200]}); "
                             "finished runs are kept: run the same command again to resume "
                             "the others") from err

    def _cancel(self, pending: list[Any]) -> None:
        """Cancel the tasks (a KeyboardInterrupt in each, so its run's lock is released),
        then kill what still runs after :data:`CANCEL_GRACE_S`."""
        if not pending:
            return
        for ref in pending:
            self.ray.cancel(ref, force=False)
        _, left = self.ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for ref in left:
            self.ray.cancel(ref, force=True)


def _task(spec_json: str, method: str, seed: int, out: str, token: str, threads: int,
          device: str) -> dict[str, Any]:
    """One run, in a Ray worker: check the shared ``--out``, then :func:`execute` it."""
    ray = import_ray()
    where = f"node {socket.gethostname()} ({ray.util.get_node_ip_address()})"
    shared_out.check_token(Path(out), token, where=where, run=f"{method}/seed{seed}")
    torch.set_num_threads(threads)
    spec = ExperimentSpec.model_validate_json(spec_json)
    with one_line_warnings():  # as the command line shows its own: one line each
        return execute(spec, method, seed, Path(out), device=device,
                       lock_owner=f"{token}:{method}/seed{seed}")


@contextmanager
def connect(address: str | None, spec: ExperimentSpec, *, cpus_per_run: float | None = None,
            gpus_per_run: float | None = None, node_out: Path | None = None
            ) -> Iterator[RayExecutor]:
    """A :class:`RayExecutor` on the cluster at ``address``, or on a local Ray on 127.0.0.1
    started now and stopped when the block ends (also on Ctrl-C). A process already
    connected (``ray.init`` called before) keeps its connection. ``node_out``: see
    :class:`RayExecutor`."""
    ray = import_ray(loopback=on_loopback(address))
    owned = not ray.is_initialized()
    with ExitStack() as stack:
        if owned:
            temp = stack.enter_context(_private_files()) if address is None else None
            _init(ray, address, temp)
            stack.callback(ray.shutdown)  # before its folder goes
        where = f"at {ray.get_runtime_context().gcs_address}" if address or not owned \
            else "(local, on 127.0.0.1, started for this command)"
        yield RayExecutor(ray, spec, where=where, cpus_per_run=cpus_per_run,
                          gpus_per_run=gpus_per_run, node_out=node_out)


AUTH_TOKEN, AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


@contextmanager
def _private_files() -> Iterator[str]:
    """A temporary folder (under ``TMPDIR``, as Ray's own ``/tmp/ray``) for a local Ray's
    sessions, sockets and logs, removed after; and, unless the user gave one, a fresh
    token in this process's environment (which the Ray it starts inherits): a local Ray
    turns token authentication on and would otherwise write one into
    ``~/.ray/auth_token``."""
    temp = tempfile.mkdtemp(prefix="convdrop-ray-")
    given = AUTH_TOKEN in os.environ or AUTH_TOKEN_PATH in os.environ
    if not given:
        os.environ[AUTH_TOKEN] = secrets.token_hex(32)
    try:
        yield temp
    finally:
        if not given:
            os.environ.pop(AUTH_TOKEN, None)
        shutil.rmtree(temp, ignore_errors=True)


def _init(ray: ModuleType, address: str | None, temp: str | None = None) -> None:
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=temp, **quiet)
        return
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ArgumentError(f"--ray-address {address}: cannot join a Ray cluster there "
                            f"({first[:200]}); start one with `ray start --head` (a cluster "
                            "with token authentication also needs RAY_AUTH_MODE=token here), "
                            "or leave --ray-address out to start a local Ray") from err
