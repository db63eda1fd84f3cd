"""``dsft deploy k8s``: manifests parse, carry GPU limits and /health probes; the Dockerfile runs dsft serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dsft.cli.app import main
from dsft.errors import DsftError
from dsft.serve.k8s import check_deploy_options, memory_problem


def deploy(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "k8s"
    main(["deploy", "k8s", *args, "--out", str(out)])
    return out


def test_gpu_deployment_service_and_dockerfile(serve_model_dir: Path, tmp_path: Path) -> None:
    out = deploy(tmp_path, str(serve_model_dir), "--gpus", "2", "--image", "registry.local/r1:1",
                 "--served-model-name", "r1", "--api-key-secret", "r1-key")
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    service = yaml.safe_load((out / "service.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    assert container["image"] == "registry.local/r1:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    key_env = [e for e in container["env"] if e["name"] == "DSFT_API_KEY"]
    assert key_env[0]["valueFrom"]["secretKeyRef"] == {"name": "r1-key", "key": "api-key"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY model/ /models/model/" in dockerfile
    assert '"dsft", "serve", "/models/model", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    assert "--allow-unauthenticated" not in dockerfile  # the key comes from the Secret


def test_cpu_deployment_has_no_gpu_limit(tmp_path: Path) -> None:
    # A preset name is not copied into the image: the container materialises it at start.
    out = deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "0")
    container = yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY model/" not in dockerfile and '"tiny-deepseek-llm"' in dockerfile
    # No --api-key-secret: serving without a key off loopback is said on purpose, or dsft serve refuses it.
    assert dockerfile.rstrip().endswith('"--allow-unauthenticated"]')



def test_the_dockerfile_command_is_json_whatever_the_served_model_name(tmp_path: Path) -> None:
    """--served-model-name is accepted unless empty, and was written into the Dockerfile's CMD between quotes as it
    was: a name holding '"' or '\\' made the CMD line invalid JSON, which docker runs as a shell command instead
    (the container then fails to start, far from the flag)."""
    name = 'r1 "tuned" \\ v2'
    out = deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "0", "--served-model-name", name)
    [cmd] = [line for line in (out / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    args = json.loads(cmd.removeprefix("CMD "))
    assert args[:3] == ["dsft", "serve", "tiny-deepseek-llm"]
    assert args[args.index("--served-model-name") + 1] == name


def test_the_pods_memory_is_set_as_guide_001_sets_it(tmp_path: Path) -> None:
    """Guide 001's Deployment asks for 20Gi and limits each pod to 30Gi; dsft wrote 8Gi / 32Gi whatever the model,
    with no flag to change them (a model above 32Gi was killed while loading, pod after pod)."""
    out = deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "1", "--memory-request", "20Gi", "--memory-limit", "30Gi")
    container = yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "20Gi"},
                                      "limits": {"memory": "30Gi", "nvidia.com/gpu": 1}}


def test_every_spelling_of_a_kubernetes_memory_quantity_is_accepted(tmp_path: Path) -> None:
    """Kubernetes' own docs spell 129 MB as 128974848, 129e6, 129M, 128974848000m or 123Mi; the exponent and
    milli forms were refused as 'not a Kubernetes memory quantity', 129e6 told to be written 129Gi or 129G (a
    thousand times more), and a request above the limit in those forms was not compared."""
    for quantity in ("128974848", "129e6", "129E6", "129M", "128974848000m", "123Mi", "0.5Gi", ".5Gi"):
        assert memory_problem("--memory-limit", quantity) is None, quantity
    check_deploy_options("dsft", 1, 1, memory_request="20e9", memory_limit="30Gi")
    with pytest.raises(DsftError, match="--memory-request 40e9: above --memory-limit 32Gi"):
        check_deploy_options("dsft", 1, 1, memory_request="40e9", memory_limit="32Gi")
    assert memory_problem("--memory-limit", "30GB") is not None and memory_problem("--memory-limit", "1e") is not None


def test_overwrite_replaces_dsft_files_and_leaves_the_users_others(tmp_path: Path) -> None:
    """A second deploy into the same --out needs --overwrite; it rewrites dsft's files and keeps the user's."""
    out = deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "0")
    (out / "model").mkdir()
    (out / "model" / "config.json").write_text("{}")
    (out / "notes.md").write_text("mine")
    (out / "dsft-source" / "stale.py").write_text("left from an older dsft")
    deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "1", "--replicas", "3", "--overwrite")
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--allow-unauthenticated" in (out / "Dockerfile").read_text()
    assert (out / "notes.md").read_text() == "mine" and (out / "model" / "config.json").read_text() == "{}"
    assert not (out / "dsft-source" / "stale.py").exists()  # dsft-source/ is dsft's: replaced whole
    assert (out / "dsft-source" / "pyproject.toml").is_file()



def test_redeploying_a_local_model_does_not_ask_to_copy_it_into_its_earlier_copy(serve_model_dir: Path, tmp_path: Path,
                                                                                run_cli) -> None:
    """`cp -r MODEL OUT/model` into an existing OUT/model nests the model one level down, where the image's
    `dsft serve /models/model` finds no config.json: the second deploy's next steps leave the copy out."""
    out = tmp_path / "k8s"
    code, stdout, err = run_cli(["deploy", "k8s", str(serve_model_dir), "--out", str(out)])
    assert code == 0 and f"next: cp -r {serve_model_dir} {out / 'model'} && docker build" in stdout, err
    (out / "model").mkdir()
    code, stdout, err = run_cli(["deploy", "k8s", str(serve_model_dir), "--out", str(out), "--overwrite"])
    assert code == 0, err
    assert "cp -r" not in stdout and f"{out / 'model'} is already there" in " ".join(stdout.split()), stdout


def test_lora_run_must_be_merged_first(lora_run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["deploy", "k8s", str(lora_run_dir), "--out", str(tmp_path / "k8s")])
    assert info.value.code == 2
    assert "dsft export" in capsys.readouterr().err


def test_image_installs_dsft_from_the_copied_source_not_an_index(tmp_path: Path) -> None:
    """No package index serves dsft: the build context carries its source, which pip can build."""
    import subprocess
    import sys
    import zipfile

    out = deploy(tmp_path, "tiny-deepseek-llm", "--gpus", "0")
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY dsft-source/ /opt/dsft-source/" in dockerfile
    assert "RUN pip install --no-cache-dir /opt/dsft-source" in dockerfile
    assert "DSFT_SPEC" not in dockerfile and "pip install --no-cache-dir dsft" not in dockerfile
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(out / "dsft-source")], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("dsft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"dsft/cli/app.py", "dsft/models/chat_templates/deepseek-r1.jinja"} <= names


def _not_a_distribution(_name: str) -> list[str]:
    import importlib.metadata

    raise importlib.metadata.PackageNotFoundError("dsft")


def test_dsft_not_installed_as_a_distribution_is_refused_before_anything_is_written(
        serve_model_dir: Path, tmp_path: Path, monkeypatch, run_cli) -> None:
    """The image's dsft needs its installed dependencies; without them the command is refused before it writes
    a file: no half-made build context (yaml files without dsft-source/), no --out it created, a directory the
    user made left as it was."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "requires", _not_a_distribution)
    for out, made_by_user in ((tmp_path / "k8s", False), (tmp_path / "mine", True)):
        if made_by_user:
            out.mkdir()
        code, stdout, err = run_cli(["deploy", "k8s", str(serve_model_dir), "--out", str(out)])
        assert code == 2 and "Traceback" not in err + stdout, err
        assert err.lower().count("error:") == 1, err
        assert "not installed as a distribution" in " ".join(err.split()), err
        assert "wrote" not in stdout, stdout
        if made_by_user:
            assert out.is_dir() and not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))
        else:
            assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def test_a_full_disk_while_writing_leaves_no_half_made_build_context(serve_model_dir: Path, tmp_path: Path,
                                                                     monkeypatch, run_cli) -> None:
    import errno

    from dsft.serve import k8s

    def disk_full(_source, target, **_kwargs):
        Path(target).mkdir(parents=True)
        (Path(target) / "cli.py").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(k8s.shutil, "copytree", disk_full)
    out = tmp_path / "k8s"
    code, _, err = run_cli(["deploy", "k8s", str(serve_model_dir), "--out", str(out)])
    assert code == 2 and "no space left" in err and "Traceback" not in err, err
    assert not out.exists()


def test_the_printed_next_steps_quote_paths_with_spaces(serve_model_dir: Path, tmp_path: Path, run_cli) -> None:
    """`cp -r MODEL OUT/model && docker build -t IMAGE OUT` printed paths as they are: a directory named with a space
    ('my deploy') split into two arguments when the line was pasted into a shell."""
    out = tmp_path / "my deploy"
    code, stdout, err = run_cli(["deploy", "k8s", str(serve_model_dir), "--out", str(out)])
    line = next(line for line in stdout.splitlines() if line.startswith("next: "))
    assert code == 0 and f"cp -r {serve_model_dir} '{out / 'model'}' && docker build -t dsft-serve:latest '{out}' " \
        f"&& docker push dsft-serve:latest && kubectl apply -f '{out}'" in line, (stdout, err)
