"""The core works with torch and numpy alone; the extras fail with one clear line.

A child process hides every package of the ``lab`` and ``vision`` extras (a ``None``
in ``sys.modules`` makes ``import`` fail and ``find_spec`` return None, as for a package
that is not installed), then uses the ops, layers, placement, schedules and models.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

HIDE = """
import sys
for name in ("pydantic", "rich", "matplotlib", "scipy", "sklearn", "PIL", "torchvision", "timm"):
    sys.modules[name] = None
"""


def run_hidden(code: str) -> subprocess.CompletedProcess:
    script = HIDE + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)


def test_ops_layers_placement_and_models_need_no_extra():
    result = run_hidden("""
        import torch, convdrop
        x = torch.randn(2, 4, 9, 9, requires_grad=True)
        y = convdrop.drop_block(x, 0.2, 3, generator=torch.Generator().manual_seed(0))
        y.sum().backward()
        assert torch.equal(x.grad == 0, y == 0)
        model = convdrop.models.create("resnet18_cifar", dropblock=0.1)
        scheduler = convdrop.DropRateScheduler(model, "linear", total_steps=10)
        scheduler.step()
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        example = torch.randn(1, 3, 32, 32)
        print(len(convdrop.sites(model)), round(convdrop.drop_budget(model, example)["total"], 6))
        assert all(sys.modules[m] is None for m in ("pydantic", "scipy", "matplotlib"))
    """)
    assert result.returncode == 0, result.stderr
    sites, budget = result.stdout.split()
    assert int(sites) > 0 and float(budget) >= 0.0


def test_lab_and_viz_name_the_extra_to_install():
    for package in ("convdrop.lab", "convdrop.viz"):
        result = run_hidden(f"""
            try:
                import {package}
            except ImportError as err:
                print(type(err).__name__, err)
        """)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("MissingExtraError"), result.stdout
        assert f"{package} needs the 'lab' extra" in result.stdout
        assert "pip install 'convdrop[lab]'" in result.stdout


def test_keras_and_lightning_name_their_extras():
    for package, extra in (("convdrop.keras", "keras"), ("convdrop.lightning", "lightning")):
        result = run_hidden(f"""
            sys.modules[{extra!r}] = None
            try:
                import {package}
            except ImportError as err:
                print(type(err).__name__, err)
        """)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("MissingExtraError"), result.stdout
        assert f"pip install 'convdrop[{extra}]'" in result.stdout
