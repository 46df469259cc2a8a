"""Helpers shared by the test modules (``from conftest import gen``).

``pythonpath = ["tests"]`` in pyproject.toml puts this folder on ``sys.path``, so every
test module, in any subfolder, can import these; test modules never import each other.
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import torch

# Keras picks its backend once, when it is first imported: torch here, unless the run
# asks for another (``KERAS_BACKEND=jax pytest tests/keras`` runs the same tests on JAX).
os.environ.setdefault("KERAS_BACKEND", "torch")


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every statistical test draws from one."""
    return torch.Generator().manual_seed(seed)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_image(path: Path, mode: str, size: tuple[int, int]) -> Path:
    """A flat image of ``size`` (width, height) in Pillow ``mode`` ("L" or "RGB") at ``path``."""
    from PIL import Image  # the lab extra: only the picture tests need it

    Image.new(mode, size, 128 if mode == "L" else (200, 50, 25)).save(path)
    return path


def assert_png(path: Path) -> None:
    """``path`` is a PNG figure larger than 100x100 pixels."""
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width > 100 and img.height > 100


def write_image_folder(root: Path, per_class: dict[str, int], *, size: tuple[int, int] = (12, 10),
                       splits: tuple[str, ...] = ("train", "val", "test"),
                       fmt: str = "png") -> Path:
    """An ImageFolder tree of small noisy RGB images: ``per_class[name]`` files per class
    in every split, each class with its own base colour (so a model can tell them apart),
    ``size`` (width, height). Seeded: the same call writes the same bytes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c, (name, count) in enumerate(sorted(per_class.items())):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(60 * c) % 256, 255 - (40 * c) % 256, (90 * c) % 256])
            for i in range(count):
                noise = rng.integers(-30, 31, (size[1], size[0], 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:05d}.{fmt}")
    return root


# The runner's fault tests (tests/lab/runs): a tiny comparison, files and processes.
FLAGS = ["--data", "synthetic", "--train-size", "32", "--epochs", "2", "--seeds", "1",
         "--batch-size", "16", "--methods", "control,dropblock", "--model-option", "width=4",
         "--quiet"]


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: relative path -> (content, mtime in ns)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def session_processes(sid: int) -> list[int]:
    """Pids of the live (not zombie) processes of session ``sid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(sid: int, seconds: float = 20.0) -> list[int]:
    """Poll until session ``sid`` has no live process; returns what is left at the deadline."""
    deadline = time.monotonic() + seconds
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """``array`` (uint8) in the idx format: magic (0, 0, type, ndim), big-endian dims, data."""
    header = bytes((0, 0, type_code, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_fashion_mnist(root: Path, *, n_train: int = 40, n_test: int = 20, gz: bool = True
                        ) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST idx files, small, under ``root`` (gzipped or not): images
    uint8 (N, 28, 28) where class c is bright in its own band of rows (so a model can tell
    them apart), labels ``i % 10``. Seeded; returns the arrays by file stem."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4:2 * c + 8] += 180
        arrays[f"{split}-images-idx3-ubyte"] = images
        arrays[f"{split}-labels-idx1-ubyte"] = labels
    for stem, array in arrays.items():
        data = idx_bytes(array)
        path = root / (f"{stem}.gz" if gz else stem)
        path.write_bytes(gzip.compress(data) if gz else data)
    return arrays


def stop_session(sid: int) -> list[int]:
    """SIGTERM, then SIGKILL, to session ``sid``; returns what is left (nothing, we hope)."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        for pid in session_processes(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not wait_until_gone(sid, wait):
            return []
    return session_processes(sid)


def listening(pids: list[int]) -> set[str]:
    """The addresses on which processes ``pids`` listen for TCP connections."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(address_text(fields[1].split(":")[0]))
    return found


def address_text(hex_address: str) -> str:
    """/proc/net/tcp's address (32-bit words in host order) as text; IPv4 mapped into IPv6
    as IPv4."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 16 and words[:12] == bytes(10) + b"\xff\xff":
        words = words[12:]
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def processes_mentioning(text: Path) -> list[int]:
    """Live processes whose command line names ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(text).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
