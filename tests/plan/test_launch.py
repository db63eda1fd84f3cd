"""`dsft launch`: each launcher's files exist, are valid bash, and carry the right topology and command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dsft.plan.launch import LAUNCHERS

RunCli = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  name_or_path: tiny-deepseek-v3\ntrain:\n  distributed: deepspeed\n  zero_stage: 3\n")
    return path


def _launch(run_cli: RunCli, config: Path, out: Path, launcher: str, nodes: int = 4,
            gpus: int = 8) -> dict[str, str]:
    code, _, _ = run_cli(["launch", str(config), "--nodes", str(nodes), "--gpus-per-node", str(gpus),
                          "--launcher", launcher, "--out", str(out), "--master-addr", "10.0.0.1",
                          "--master-port", "29555"])
    assert code == 0
    return {p.name: p.read_text() for p in out.iterdir()}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_scripts_are_valid_bash_and_source_nccl_settings(launcher: str, config: Path, tmp_path: Path,
                                                         run_cli: RunCli) -> None:
    files = _launch(run_cli, config, tmp_path / launcher, launcher)
    nccl = files["nccl_env.sh"]
    for option in ("NCCL_IB_DISABLE", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG", "NCCL_P2P_LEVEL"):
        assert f"# export {option}=" in nccl  # documented, off by default
    for name, text in files.items():
        if name.endswith((".sh", ".sbatch")):
            subprocess.run(["bash", "-n", str(tmp_path / launcher / name)], check=True)
            assert (tmp_path / launcher / name).stat().st_mode & 0o111
            if name != "nccl_env.sh":
                assert "nccl_env.sh" in text
                assert f"dsft train {config.resolve()}" in text
                assert f"--out {(tmp_path / launcher / 'run').resolve()}" in text


def test_torchrun_uses_c10d_rendezvous_and_node_rank(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    script = _launch(run_cli, config, tmp_path / "t", "torchrun")["torchrun_node.sh"]
    assert "--nnodes 4 --nproc-per-node 8" in script
    assert '--node-rank "$NODE_RANK"' in script and "NODE_RANK:?" in script
    assert '--rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"' in script
    assert 'MASTER_ADDR="${MASTER_ADDR:-10.0.0.1}"' in script and 'MASTER_PORT="${MASTER_PORT:-29555}"' in script


def test_deepspeed_hostfile_and_command(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    files = _launch(run_cli, config, tmp_path / "d", "deepspeed", nodes=2, gpus=4)
    hosts = [line for line in files["hostfile"].splitlines() if line and not line.startswith("#")]
    assert hosts == ["node0 slots=4", "node1 slots=4"]
    script = files["deepspeed_launch.sh"]
    # --no_local_rank: dsft's CLI takes LOCAL_RANK from the environment, not an injected argument.
    assert "--num_nodes 2 --num_gpus 4" in script and "--no_local_rank --module dsft train" in script
    assert "--set train.distributed=deepspeed" in script


def test_deepspeed_on_one_node_has_no_hostfile_to_ssh_to(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    """The launcher ssh-checks a hostfile's first host even when it is the only one: the one-node script stopped
    with 'host=node0 was not reachable via ssh'. Without a hostfile it starts the local processes."""
    files = _launch(run_cli, config, tmp_path / "d", "deepspeed", nodes=1, gpus=2)
    assert "hostfile" not in files
    script = files["deepspeed_launch.sh"]
    assert "--hostfile" not in script and "exec deepspeed --num_gpus 2 " in script
    assert "--no_local_rank --module dsft train" in script and "--set train.distributed=deepspeed" in script


def test_accelerate_config_counts_processes(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    import yaml

    files = _launch(run_cli, config, tmp_path / "a", "accelerate", nodes=2, gpus=8)
    settings = yaml.safe_load(files["accelerate_config.yaml"])
    assert settings["num_machines"] == 2 and settings["num_processes"] == 16
    assert settings["distributed_type"] == "MULTI_GPU" and settings["main_process_port"] == 29555
    assert '--machine_rank "$NODE_RANK"' in files["accelerate_node.sh"]


def test_slurm_sbatch(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    script = _launch(run_cli, config, tmp_path / "s", "slurm", nodes=32, gpus=8)["dsft.sbatch"]
    assert "#SBATCH --nodes=32" in script and "#SBATCH --gpus-per-node=8" in script
    assert "#SBATCH --ntasks-per-node=1" in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in script
    assert 'srun --kill-on-bad-exit=1 torchrun --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node 8' in script


def test_unknown_launcher_and_missing_config_are_user_errors(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    for argv in (["launch", str(config), "--launcher", "mpirun", "--out", str(tmp_path / "x")],
                 ["launch", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "y")]):
        code, _, err = run_cli(argv)
        assert code == 2
        assert "Traceback" not in err


def _stub_commands(bin_dir: Path, *names: str) -> dict[str, str]:
    """Executables that print their argv instead of launching anything; returns an env using them."""
    import os

    bin_dir.mkdir()
    for name in names:
        stub = bin_dir / name
        stub.write_text('#!/usr/bin/env bash\nif [ "$1" = show ]; then echo gpu-node-7; exit 0; fi\n'
                        'echo "CALLED ' + name + ' $*"\n')
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def test_single_node_torchrun_script_runs_without_hand_edits(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    code, _, _ = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(tmp_path / "t")])
    assert code == 0
    env = _stub_commands(tmp_path / "bin", "torchrun")
    done = subprocess.run([str(tmp_path / "t" / "torchrun_node.sh")], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '--node-rank 0 ' in done.stdout and "--rdzv-endpoint 127.0.0.1:29500" in done.stdout


def test_multi_node_script_without_master_addr_stops_with_the_fix(config: Path, tmp_path: Path,
                                                                   run_cli: RunCli) -> None:
    code, _, _ = run_cli(["launch", str(config), "--nodes", "2", "--gpus-per-node", "2", "--out", str(tmp_path / "t")])
    assert code == 0
    env = {**_stub_commands(tmp_path / "bin", "torchrun"), "NODE_RANK": "0"}
    done = subprocess.run([str(tmp_path / "t" / "torchrun_node.sh")], capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "set MASTER_ADDR" in done.stderr and "CALLED" not in done.stdout


def test_sbatch_finds_its_nccl_settings_from_any_submit_directory(config: Path, tmp_path: Path,
                                                                  run_cli: RunCli) -> None:
    out = tmp_path / "launch files"
    code, _, _ = run_cli(["launch", str(config), "--nodes", "2", "--launcher", "slurm", "--out", str(out)])
    assert code == 0
    (out / "nccl_env.sh").write_text('echo "NCCL SETTINGS SOURCED"\n')
    spooled = tmp_path / "spool" / "slurm_script"  # sbatch runs a copy, from the submit directory
    spooled.parent.mkdir()
    spooled.write_text((out / "dsft.sbatch").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**_stub_commands(tmp_path / "bin", "srun", "scontrol"), "SLURM_SUBMIT_DIR": str(elsewhere),
           "SLURM_JOB_NODELIST": "gpu-node-[7-8]", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "42"}
    done = subprocess.run(["bash", str(spooled)], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "NCCL SETTINGS SOURCED" in done.stdout and "gpu-node-7:29500" in done.stdout


def test_earlier_launch_files_are_kept_unless_overwrite_is_passed(config: Path, tmp_path: Path,
                                                                  run_cli: RunCli) -> None:
    out = tmp_path / "launch"
    argv = ["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(out)]
    assert run_cli(argv)[0] == 0
    (out / "nccl_env.sh").write_text("export NCCL_SOCKET_IFNAME=eth7  # edited by hand\n")
    code, stdout, err = run_cli(argv)
    assert code == 2 and stdout == "" and "Traceback" not in err
    assert str(out) in err and "nccl_env.sh" in err and "--overwrite" in err
    assert "eth7" in (out / "nccl_env.sh").read_text()  # nothing lost
    assert run_cli([*argv, "--overwrite"])[0] == 0
    assert "eth7" not in (out / "nccl_env.sh").read_text()


@pytest.mark.parametrize(("launcher", "script", "command"), [
    ("torchrun", "torchrun_node.sh", "torchrun"), ("deepspeed", "deepspeed_launch.sh", "deepspeed"),
    ("accelerate", "accelerate_node.sh", "accelerate"), ("slurm", "dsft.sbatch", "srun"),
])
def test_training_runs_from_where_launch_checked_the_config_s_relative_paths(
        launcher: str, script: str, command: str, tmp_path: Path, run_cli: RunCli, monkeypatch) -> None:
    """The guide configs name their data relative to the project (data.train: examples/guides/...). The
    scripts ran the training from wherever they were started (ssh lands in $HOME; the DeepSpeed script moved
    into the launch directory), where those paths name nothing."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.yaml").write_text("data:\n  train: data/qa.jsonl\n")
    (project / "data").mkdir()
    (project / "data" / "qa.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    monkeypatch.chdir(project)
    code, _, err = run_cli(["launch", "train.yaml", "--nodes", "1", "--gpus-per-node", "2", "--launcher", launcher,
                            "--out", str(tmp_path / "launch")])
    assert code == 0, err
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (command, "scontrol"):
        (bin_dir / name).write_text('#!/usr/bin/env bash\nif [ "$1" = show ]; then echo gpu-node-7; exit 0; fi\n'
                                    'echo "RAN IN $PWD ENV ${DS_ENV_FILE:-}"\n')
        (bin_dir / name).chmod(0o755)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-node-7",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_ID": "1"}
    done = subprocess.run(["bash", str(tmp_path / "launch" / script)], capture_output=True, text=True, env=env,
                          cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert f"RAN IN {project.resolve()} " in done.stdout
    if launcher == "deepspeed":  # its environment file stays beside the launch files
        assert f"ENV {(tmp_path / 'launch').resolve()}/.deepspeed_env" in done.stdout


@pytest.mark.parametrize("launcher,script,command", [("torchrun", "torchrun_node.sh", "torchrun"),
                                                     ("deepspeed", "deepspeed_launch.sh", "deepspeed"),
                                                     ("accelerate", "accelerate_node.sh", "accelerate"),
                                                     ("slurm", "dsft.sbatch", "srun")])
def test_set_overrides_are_checked_and_every_process_trains_with_them(
        launcher: str, script: str, command: str, config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    """Guide 003's cluster values (32K rows, SP 8, the optimizer offloaded) are --set over the example config, as
    for dsft train; dsft launch took no --set, so its scripts could only train the file as written. The overrides
    are checked against the job's GPUs and reach every process's dsft train, quoted (a value with a space and a
    quote arrives as one argument)."""
    served = "guide 003's model"
    code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "8", "--launcher", launcher,
                            "--out", str(tmp_path / "launch"), "--set", "train.max_seq_len=4096",
                            "--set", f"serve.served_model_name={served}"])
    assert code == 0, err
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / command).write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "ARG $a"; done\n')
    (bin_dir / command).chmod(0o755)
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho gpu-node-7\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-node-7",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_ID": "1"}
    done = subprocess.run(["bash", str(tmp_path / "launch" / script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    args = [line[4:] for line in done.stdout.splitlines() if line.startswith("ARG ")]
    train = args[args.index("train"):]
    assert train[train.index("--set") + 1] == "train.max_seq_len=4096"
    assert f"serve.served_model_name={served}" in train

    # A wrong value is refused before anything is written, naming the --set that caused it.
    code, _, err = run_cli(["launch", str(config), "--launcher", launcher, "--out", str(tmp_path / "refused"),
                            "--set", "train.lr=-1"])
    assert code == 2 and "--set train.lr=-1" in err and "Traceback" not in err
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("data, key", [("train: data/absent.jsonl", "data.train: data/absent.jsonl"),
                                       ("train: data/qa.jsonl\n  val: [data/no-val.jsonl]",
                                        "data.val: data/no-val.jsonl")])
def test_the_data_a_config_names_is_checked_before_anything_is_written(
        data: str, key: str, tmp_path: Path, run_cli: RunCli, monkeypatch) -> None:
    """The scripts said the config's data paths were checked, and dsft launch never looked at them: a missing data
    file was found by the job, on every node, after it was queued. It is refused as dsft train refuses it (the key
    and the path, exit 2), nothing written; the scripts say what was checked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    (tmp_path / "train.yaml").write_text(f"data:\n  {data}\n")
    code, out, err = run_cli(["launch", "train.yaml", "--gpus-per-node", "2", "--out", "launch"])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and not out, (out, err)
    assert "1 data input(s) cannot be read" in text and f"{key}: no such file or directory" in text, text
    assert not (tmp_path / "launch").exists()

    (tmp_path / "train.yaml").write_text("data:\n  train: data/qa.jsonl\n")
    code, _, err = run_cli(["launch", "train.yaml", "--gpus-per-node", "2", "--out", "launch"])
    assert code == 0, err
    script = (tmp_path / "launch" / "torchrun_node.sh").read_text()
    comments = " ".join(line[2:] for line in script.splitlines() if line.startswith("# "))
    assert ("Relative paths in the config are read from the directory `dsft launch` ran in, where its data inputs "
            "were checked; the model is not checked (it may be a cluster path): `dsft train` looks for it") in comments


def test_a_config_that_names_no_data_is_launched_with_a_note(config: Path, tmp_path: Path, run_cli: RunCli) -> None:
    """A config without data (data given later with --set, or written for the cluster) still gets its scripts; the
    note says nothing was checked, and the scripts do not claim otherwise."""
    code, out, err = run_cli(["launch", str(config), "--gpus-per-node", "2", "--out", str(tmp_path / "launch")])
    assert code == 0, err
    assert ("data: the config names none (data.train or data.prepared_dir), so no data was checked; the job's "
            "`dsft train` refuses it until one is set (in the config or with --set)") in " ".join(err.split()), err
    script = (tmp_path / "launch" / "torchrun_node.sh").read_text()
    comments = " ".join(line[2:] for line in script.splitlines() if line.startswith("# "))
    assert "were checked" not in comments and "ran in (no data was checked); the model is not checked" in comments


@pytest.mark.parametrize("command", ["launch", "plan"])
def test_sequence_parallel_with_packed_rows_of_two_is_refused_for_the_cluster(command: str, tmp_path: Path,
                                                                             run_cli: RunCli) -> None:
    """Guide 003's recommended row (SP 4, bs 2 per GPU) as a config: `dsft config show` and every process of the
    job's `dsft train` refuse packed rows two to a micro-batch under SP, but `dsft launch` wrote the 32-node
    scripts (and `dsft plan --config` planned it): the check ran only where the attention kernel was known."""
    config = tmp_path / "cluster.yaml"
    config.write_text("model:\n  name_or_path: tiny-deepseek-v3\ntrain:\n  method: full\n  distributed: deepspeed\n"
                      "  zero_stage: 3\n  offload: optimizer+param\n  sequence_parallel: 4\n  micro_batch_size: 2\n"
                      "  max_seq_len: 32768\n")
    out = tmp_path / "out"
    args = (["launch", str(config), "--launcher", "slurm", "--out", str(out)] if command == "launch"
            else ["plan", "--config", str(config), "--gpu-mem", "80"])
    code, _, err = run_cli([*args, "--nodes", "32", "--gpus-per-node", "8"])
    assert code == 2 and "Traceback" not in err
    assert "train.sequence_parallel=4 with packing needs train.micro_batch_size: 1 (got 2)" in err
    assert not out.exists()
