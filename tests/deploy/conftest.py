"""Rendering of the kustomize tree for the deploy checks, shared by every test module here.

A target is named ``overlay:<name>``, ``base`` or ``base+<component>``; each is rendered once per
session with ``kubectl kustomize`` (or a ``kustomize`` binary).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"

Resource = dict[str, Any]


@cache
def _kustomize_command() -> tuple[str, ...]:
    if kubectl := shutil.which("kubectl"):
        return (kubectl, "kustomize")
    if kustomize := shutil.which("kustomize"):
        return (kustomize, "build")
    pytest.fail(
        "deploy checks need kustomize: install kubectl (it bundles kustomize, e.g. Debian/Ubuntu "
        "package kubectl from the Kubernetes apt repository) or a standalone kustomize v5 binary on "
        "PATH. No PyPI package offers kustomize with components for Python 3.11."
    )


def _render_dir(path: Path) -> list[Resource]:
    result = subprocess.run(
        [*_kustomize_command(), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"kustomize failed for {path}:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Resource]]:
    """Render a target by name (``overlay:dev``, ``base``, ``base+keda``); cached per session."""
    rendered: dict[str, list[Resource]] = {}

    def _render(target: str) -> list[Resource]:
        if target not in rendered:
            if target.startswith("overlay:"):
                rendered[target] = _render_dir(K8S / "overlays" / target.removeprefix("overlay:"))
            elif target == "base":
                rendered[target] = _render_dir(K8S / "base")
            else:
                component = target.removeprefix("base+")
                root = tmp_path_factory.mktemp(f"with-{component}")
                (root / "kustomization.yaml").write_text(
                    yaml.safe_dump(
                        {
                            "apiVersion": "kustomize.config.k8s.io/v1beta1",
                            "kind": "Kustomization",
                            # kustomize wants relative paths here
                            "resources": [os.path.relpath(K8S / "base", root)],
                            "components": [os.path.relpath(K8S / "components" / component, root)],
                        }
                    )
                )
                rendered[target] = _render_dir(root)
        return rendered[target]

    return _render
