"""``dsft deploy k8s``: a Deployment, a Service and a Dockerfile that serve a model with ``dsft serve``.

The image holds the model (copied into the build context as ``model/``) or, for a hub id, downloads
it at start. Probes use ``/health``, which answers 503 until the model is loaded: a startup probe gives
loading time, then readiness and liveness take over. The API key, if any, comes from a Secret.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import dsft
from dsft.errors import DsftError
from dsft.export.source import resolve_source
from dsft.training.rundir import FULL_METHODS, RunDir

CONTAINER_PORT = 8000
MODEL_IN_IMAGE = "/models/model"
GPU_BASE_IMAGE = "pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime"
CPU_BASE_IMAGE = "python:3.11-slim"
DSFT_SOURCE_DIR = "dsft-source"


@dataclass(frozen=True)
class DeploySpec:
    """What to deploy and how big. ``model_ref`` is a local directory (copied into the image) or a hub id."""

    model_ref: str
    name: str = "dsft"
    image: str = "dsft-serve:latest"
    gpus: int = 1
    replicas: int = 1
    served_model_name: str = "dsft"
    api_key_secret: str | None = None  # Secret name holding key "api-key"
    memory_request: str = "8Gi"  # what the scheduler reserves for a pod
    memory_limit: str = "32Gi"  # above it the pod is killed (OOMKilled)

    @property
    def model_is_local(self) -> bool:
        return Path(self.model_ref).is_dir()


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def _container(spec: DeploySpec) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "2", "memory": spec.memory_request},
                                 "limits": {"memory": spec.memory_limit}}
    if spec.gpus > 0:
        # GPUs are requested through the device plugin's extended resource: limits only.
        resources["limits"]["nvidia.com/gpu"] = spec.gpus
    env = [{"name": "HF_HOME", "value": "/cache/huggingface"}]
    if spec.api_key_secret:
        env.append({"name": "DSFT_API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": spec.api_key_secret, "key": "api-key"}}})
    return {
        "name": "dsft-serve",
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": env,
        "resources": resources,
        # Loading a large model takes minutes: 60 x 10 s before the pod is restarted.
        "startupProbe": _probe("/health", 10, 60),
        "readinessProbe": _probe("/health", 5, 3),
        "livenessProbe": _probe("/health", 15, 4),
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    }


def deployment_manifest(spec: DeploySpec) -> dict[str, Any]:
    """The ``apps/v1`` Deployment."""
    labels = {"app.kubernetes.io/name": spec.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [_container(spec)],
                         "volumes": [{"name": "cache", "emptyDir": {}}]},
            },
        },
    }


def service_manifest(spec: DeploySpec) -> dict[str, Any]:
    """A ClusterIP Service on port 80 in front of the pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "labels": {"app.kubernetes.io/name": spec.name}},
        "spec": {"selector": {"app.kubernetes.io/name": spec.name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def dockerfile(spec: DeploySpec) -> str:
    """A Dockerfile whose container runs ``dsft serve`` on all interfaces, with dsft installed from its source.

    dsft is not on a package index: the image installs the very dsft that wrote this file, copied into
    the build context as ``dsft-source/`` (see :func:`dsft_source_pyproject`).
    """
    model_arg = MODEL_IN_IMAGE if spec.model_is_local else spec.model_ref
    # Without --api-key-secret the pod serves without a key: said on purpose, or dsft serve refuses the bind.
    open_bind = [] if spec.api_key_secret else ["--allow-unauthenticated"]
    # The exec form is a JSON array: each argument written by json (a '"' in a served model name made it a shell line).
    command = json.dumps(["dsft", "serve", model_arg, "--host", "0.0.0.0", "--port", str(CONTAINER_PORT),
                          "--served-model-name", spec.served_model_name, *open_bind], ensure_ascii=False)
    copy_model = f"COPY model/ {MODEL_IN_IMAGE}/\n" if spec.model_is_local else ""
    base = GPU_BASE_IMAGE if spec.gpus > 0 else CPU_BASE_IMAGE
    # The CPU image takes torch's CPU build (the default PyPI wheel brings several GB of CUDA libraries).
    cpu_torch = ("" if spec.gpus > 0 else
                 "RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu\n")
    return (
        f"FROM {base}\n"
        "# llama-cpp-python (GGUF export verification) builds from source where no wheel fits.\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        f"{cpu_torch}"
        f"COPY {DSFT_SOURCE_DIR}/ /opt/{DSFT_SOURCE_DIR}/\n"
        f"RUN pip install --no-cache-dir /opt/{DSFT_SOURCE_DIR}\n"
        f"{copy_model}"
        f"EXPOSE {CONTAINER_PORT}\n"
        "# 0.0.0.0: the pod network, not the world; put the API key in the Secret the Deployment names.\n"
        f"CMD {command}\n"
    )


def k8s_files(spec: DeploySpec) -> dict[str, str]:
    """The text of every file ``dsft deploy k8s`` writes, by path under ``--out``: the manifests, the
    Dockerfile and ``dsft-source/pyproject.toml`` (the package itself is copied as it is).

    Everything that can fail is here, before anything is written: a refusal leaves no half-made build context.
    The options themselves were checked by :func:`check_deploy_options` (:func:`deploy_spec_for` calls it).
    """
    return {
        "deployment.yaml": yaml.safe_dump(deployment_manifest(spec), sort_keys=False),
        "service.yaml": yaml.safe_dump(service_manifest(spec), sort_keys=False),
        "Dockerfile": dockerfile(spec),
        f"{DSFT_SOURCE_DIR}/pyproject.toml": dsft_source_pyproject(),
    }


def write_k8s(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write :func:`k8s_files` and a copy of the running dsft package into ``out_dir``; return the paths
    (the manifests, the Dockerfile, then the ``dsft-source/`` directory)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / DSFT_SOURCE_DIR
    copy_dsft_package(source)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        if path.parent == out_dir:
            written.append(path)
    return [*written, source]


# Kubernetes object names: DNS-1123 labels (lower-case alphanumerics and '-', 63 at most); a Secret's name is a
# DNS-1123 subdomain (such labels joined by '.', 253 at most).
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# A container image reference as the distribution spec's grammar reads it: [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST], the
# path in lower case (components joined by '.', '_', '__' or dashes), a tag of at most 128 word characters, '.', '-'.
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")


# A Kubernetes memory quantity: a number (5, 0.5, .5, 5.) with a binary (Ki, Mi, Gi, Ti) or decimal (m, k, M, G, T)
# suffix, a decimal exponent (129e6), or none (bytes): the quantity grammar, less the sign no memory size takes.
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|m|k|M|G|T|P|E)?")
_QUANTITY_FACTORS = {None: 1, "m": 10**-3, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                     "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def memory_problem(flag: str, value: str) -> str | None:
    """Why ``value`` is no Kubernetes memory quantity, naming the spelling meant (``30GB`` is ``30G``; GiB is ``Gi``).

    >>> memory_problem("--memory-limit", "30Gi") is None
    True
    >>> memory_problem("--memory-limit", "30GB")
    "--memory-limit '30GB': not a Kubernetes memory quantity; write 30Gi (GiB) or 30G (GB)"
    """
    if _QUANTITY.fullmatch(value):
        return None
    number = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)", value)
    meant = f"write {number.group(1)}Gi (GiB) or {number.group(1)}G (GB)" if number else "e.g. 30Gi (GiB) or 30G (GB)"
    return f"{flag} {value!r}: not a Kubernetes memory quantity; {meant}"


def _bytes(quantity: str) -> float:
    match = _QUANTITY.fullmatch(quantity)
    assert match is not None  # checked by memory_problem first
    suffix = match.group(2)
    factor = _QUANTITY_FACTORS.get(suffix) or float(f"1e{suffix[1:]}")  # an exponent (e6); 1e999 is inf, no error
    return float(match.group(1)) * factor


def check_deploy_options(name: str, replicas: int, gpus: int, image: str = "dsft-serve:latest",
                         served_model_name: str = "dsft", api_key_secret: str | None = None,
                         memory_request: str = "8Gi", memory_limit: str = "32Gi") -> None:
    """Refuse values Kubernetes or docker would reject (or that deploy nothing), naming each flag.

    >>> check_deploy_options("dsft", 1, 1, image="registry.example.com:5000/team/r1-serve:v1.2")
    >>> check_deploy_options("dsft", 1, 1, image="my image")
    Traceback (most recent call last):
    dsft.errors.DsftError: --image 'my image': not a container image reference ([REGISTRY[:PORT]/]NAME[:TAG], the name in lower-case letters, digits and '.', '_', '-' separators, e.g. registry.example.com/team/r1-serve:v1)
    """
    problems = []
    if not _K8S_NAME.fullmatch(name):
        problems.append(f"--name {name!r}: must be a DNS-1123 label (lower-case letters, digits and '-', "
                        "starting and ending with a letter or digit, at most 63 characters)")
    if replicas < 1:
        problems.append(f"--replicas: must be >= 1, got {replicas}")
    if gpus < 0:
        problems.append(f"--gpus: must be >= 0, got {gpus}")
    if not _IMAGE_REFERENCE.fullmatch(image) or len(image) > 255:
        problems.append(f"--image {image!r}: not a container image reference ([REGISTRY[:PORT]/]NAME[:TAG], the name "
                        "in lower-case letters, digits and '.', '_', '-' separators, e.g. "
                        "registry.example.com/team/r1-serve:v1)")
    if not served_model_name.strip():
        problems.append("--served-model-name: empty; clients name the model with it (the default is dsft)")
    if api_key_secret is not None and (not _K8S_SUBDOMAIN.fullmatch(api_key_secret) or len(api_key_secret) > 253):
        problems.append(f"--api-key-secret {api_key_secret!r}: must be a DNS-1123 subdomain, as Kubernetes names "
                        "a Secret (lower-case letters, digits, '-' and '.', starting and ending with a letter or "
                        "digit, at most 253 characters)")
    memory = [problem for flag, value in (("--memory-request", memory_request), ("--memory-limit", memory_limit))
              if (problem := memory_problem(flag, value)) is not None]
    problems += memory
    if not memory and _bytes(memory_request) > _bytes(memory_limit):
        problems.append(f"--memory-request {memory_request}: above --memory-limit {memory_limit}; Kubernetes refuses "
                        "a pod whose request exceeds its limit")
    if problems:
        raise DsftError(problems[0]) if len(problems) == 1 else DsftError("invalid deploy options", problems)


def dsft_source_pyproject() -> str:
    """A ``pyproject.toml`` that builds the running dsft package, from its installed metadata: the dependencies
    are the installed distribution's own ``Requires-Dist`` (extras left out). Works for editable and wheel
    installs alike; an error when dsft is not installed as a distribution (its dependencies are unknown)."""
    try:
        requires = importlib.metadata.requires("dsft") or []
    except importlib.metadata.PackageNotFoundError:
        raise DsftError("dsft is not installed as a distribution (pip install -e . in its source tree), so its "
                        "dependencies are unknown; install it, then rerun `dsft deploy k8s`") from None
    runtime = [req for req in requires if "extra ==" not in req]
    pyproject = {
        "build-system": {"requires": ["setuptools>=68"], "build-backend": "setuptools.build_meta"},
        "project": {"name": "dsft", "version": dsft.__version__, "requires-python": ">=3.10",
                    "dependencies": runtime, "scripts": {"dsft": "dsft.cli.app:main"}},
        "tool": {"setuptools": {"packages": {"find": {"where": ["src"]}},
                                "package-data": {"dsft": ["**/*.jsonl", "**/*.json", "**/*.yaml", "**/*.jinja"]}}},
    }
    return _toml(pyproject)


def copy_dsft_package(target: Path) -> None:
    """Copy the running dsft package (the directory imported) to ``target/src/dsft``, replacing ``target``."""
    if target.exists():
        shutil.rmtree(target)
    package = Path(dsft.__file__).parent
    shutil.copytree(package, target / "src" / "dsft", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _toml(table: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the nested tables above (strings, lists of strings, tables)."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in scalars.items()]
    text = "\n".join(lines) + ("\n\n" if lines else "")
    for key, value in table.items():
        if isinstance(value, dict):
            name = f'"{key}"' if "-" in key and prefix.endswith("setuptools") else key
            text += _toml(value, f"{prefix}.{name}" if prefix else name)
    return text


def deploy_spec_for(model_or_run: str, **options: Any) -> DeploySpec:
    """A :class:`DeploySpec` for ``MODEL_OR_RUN``; a LoRA run must be merged first (one self-contained model)."""
    check_deploy_options(options.get("name", "dsft"), options.get("replicas", 1), options.get("gpus", 1),
                         image=options.get("image", "dsft-serve:latest"),
                         served_model_name=options.get("served_model_name", "dsft"),
                         api_key_secret=options.get("api_key_secret"),
                         memory_request=options.get("memory_request", "8Gi"),
                         memory_limit=options.get("memory_limit", "32Gi"))
    # A LoRA run is refused from its run.json, before its base model is resolved (built, or downloaded).
    run = RunDir.find(model_or_run)  # a LoRA checkpoint is refused as its run is
    if run is not None and run.method not in FULL_METHODS:
        raise DsftError(f"{model_or_run}: a LoRA run; merge it first with `dsft export {model_or_run} --format hf "
                        "--out MERGED` and deploy MERGED (the image then holds one self-contained model)")
    source = resolve_source(model_or_run)
    path = Path(model_or_run)
    model_ref = str(source.model_dir) if path.is_dir() else model_or_run
    return DeploySpec(model_ref=model_ref, **options)
