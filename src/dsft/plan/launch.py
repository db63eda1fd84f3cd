"""`dsft launch`: runnable multi-node launch files for torchrun, DeepSpeed, accelerate and SLURM.

Every launcher runs the same command on every process, ``python -m dsft train CONFIG --out RUN_DIR`` (with the
``--set KEY=VALUE`` overrides given to ``dsft launch``);
the launcher provides WORLD_SIZE / RANK / LOCAL_RANK and dsft's TrainingArguments take the strategy
(DDP, FSDP, DeepSpeed ZeRO) from ``train.distributed`` in the config. The NCCL settings people need on
real clusters are written, commented, into ``nccl_env.sh``, which every script sources.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dsft.disk import check_fresh_output_dir
from dsft.errors import DsftError

Launcher = Literal["torchrun", "deepspeed", "accelerate", "slurm"]
LAUNCHERS: tuple[str, ...] = ("torchrun", "deepspeed", "accelerate", "slurm")
DEFAULT_PORT = 29500
# A hostname (letters, digits, '-', '_', '.') or an IPv4 / IPv6 address: what the scripts can write unquoted.
_HOST = re.compile(r"[A-Za-z0-9._\-:\[\]]+")

NCCL_ENV = """#!/usr/bin/env bash
# NCCL / torch.distributed settings, sourced by every dsft launch script.
# All are off by default; uncomment what your cluster needs.

# No InfiniBand/RoCE (cloud VMs, consumer GPUs, plain Ethernet): make NCCL use TCP sockets.
# export NCCL_IB_DISABLE=1
# The network interface NCCL and gloo should use between nodes (see `ip -br addr`), e.g. eth0, ens5, ib0.
# export NCCL_SOCKET_IFNAME=eth0
# export GLOO_SOCKET_IFNAME=eth0
# Log NCCL's setup (rings, transports, interfaces) to diagnose hangs; WARN is quieter.
# export NCCL_DEBUG=INFO
# Limit peer-to-peer transport: NVL = only over NVLink; PIX/PXB/PHB/SYS widen it. Consumer cards
# without working P2P (e.g. pairs of RTX 3090/4090) often need NCCL_P2P_DISABLE=1 instead.
# export NCCL_P2P_LEVEL=NVL
# export NCCL_P2P_DISABLE=1
# Fail a hung collective instead of waiting forever (seconds are set by the trainer's ddp_timeout).
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
# One OpenMP thread per process unless you know better (torchrun's own default).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"""


@dataclass(frozen=True)
class LaunchPlan:
    """Where and how to launch: the config and run directory are absolute so every node sees the same paths."""

    config: Path
    run_dir: Path
    nodes: int
    gpus_per_node: int
    master_addr: str | None = None  # None: 127.0.0.1 on one node; several nodes need MASTER_ADDR at launch
    master_port: int = DEFAULT_PORT
    script_dir: Path | None = None  # where the files are written (absolute): sbatch runs a spooled copy
    # The directory `dsft launch` ran in: the config's relative paths (data files, a local model) name what they
    # named there, so every script runs the training from there too (not from wherever it is started or ssh lands).
    workdir: Path | None = None
    overrides: tuple[str, ...] = ()  # the --set KEY=VALUE every process applies (checked by `dsft launch`)
    data_checked: bool = False  # whether `dsft launch` checked the data inputs (from workdir); the model it never does

    def __post_init__(self) -> None:
        check_master_addr(self.master_addr)

    @property
    def default_master_addr(self) -> str | None:
        return self.master_addr or ("127.0.0.1" if self.nodes == 1 else None)

    @property
    def train_arguments(self) -> str:
        """``CONFIG --out RUN_DIR [--set KEY=VALUE]...``, quoted for the shell."""
        sets = "".join(f" --set {shlex.quote(override)}" for override in self.overrides)
        return f"{shlex.quote(str(self.config))} --out {shlex.quote(str(self.run_dir))}{sets}"

    @property
    def train_command(self) -> str:
        return f"-m dsft train {self.train_arguments}"


def check_master_addr(master_addr: str | None) -> None:
    """Refuse a ``--master-addr`` that names no host: an empty one fell back to 127.0.0.1 (one node) or to
    MASTER_ADDR without a word, and a space or a quote was written into the scripts as it came."""
    if master_addr is None or _HOST.fullmatch(master_addr):
        return
    fallback = "leave the flag out for 127.0.0.1 on one node or MASTER_ADDR at launch on several"
    if not master_addr.strip():
        raise DsftError(f"--master-addr {master_addr!r}: empty; name the host of node 0 (a hostname or an IP "
                        f"address), or {fallback}")
    raise DsftError(f"--master-addr {master_addr!r}: not a hostname or an IP address (letters, digits, '.', '-', "
                    "'_' and ':' only); name the host of node 0")


def _workdir_line(plan: LaunchPlan) -> str:
    if plan.workdir is None:
        return ""
    # Say what was looked for here: a model path may be the cluster's own (guide 003's /nfs/...), so it is not.
    data = ", where its data inputs were checked;" if plan.data_checked else " (no data was checked);"
    return (f"# Relative paths in the config are read from the directory `dsft launch` ran in{data}\n"
            "# the model is not checked (it may be a cluster path): `dsft train` looks for it.\n"
            f"cd {shlex.quote(str(plan.workdir))}\n")


def _header(plan: LaunchPlan, what: str, usage: str) -> str:
    return (
        "#!/usr/bin/env bash\n"
        f"# dsft {what}: {plan.nodes} node(s) x {plan.gpus_per_node} GPU(s) = {plan.nodes * plan.gpus_per_node} processes.\n"
        f"# Usage: {usage}\n"
        "# Paths must be the same on every node (shared filesystem).\n"
        "set -euo pipefail\n"
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
        + _workdir_line(plan) +
        '# shellcheck disable=SC1091\nsource "$HERE/nccl_env.sh"\n'
        + _master_addr_line(plan)
        + f'MASTER_PORT="${{MASTER_PORT:-{plan.master_port}}}"\n'
    )


def _master_addr_line(plan: LaunchPlan) -> str:
    """MASTER_ADDR from the environment, else --master-addr (127.0.0.1 on one node), else a clear stop."""
    if plan.default_master_addr:
        return f'MASTER_ADDR="${{MASTER_ADDR:-{plan.default_master_addr}}}"\n'
    return ': "${MASTER_ADDR:?set MASTER_ADDR to the hostname of node 0 (or regenerate with --master-addr)}"\n'


def _node_rank_line(plan: LaunchPlan) -> str:
    if plan.nodes == 1:
        return 'NODE_RANK="${NODE_RANK:-0}"\n'
    return ': "${NODE_RANK:?set NODE_RANK: 0 on the master node, 1..N-1 on the others}"\n'


def torchrun_script(plan: LaunchPlan) -> str:
    """One script for every node; c10d rendezvous at MASTER_ADDR:MASTER_PORT, NODE_RANK per node."""
    usage = "./torchrun_node.sh" if plan.nodes == 1 else "NODE_RANK=<0..N-1> MASTER_ADDR=<rank-0 host> ./torchrun_node.sh"
    return _header(plan, "torchrun launch", usage) + _node_rank_line(plan) + (
        'RUN_ID="${RUN_ID:-dsft}"\n'
        f"exec torchrun --nnodes {plan.nodes} --nproc-per-node {plan.gpus_per_node} "
        '--node-rank "$NODE_RANK" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" '
        f'--rdzv-id "$RUN_ID" {plan.train_command}\n'
    )


def deepspeed_files(plan: LaunchPlan) -> dict[str, str]:
    """A hostfile (one line per node, ``slots`` = GPUs) and the launcher command, run on node 0 only.

    One node gets no hostfile: the launcher ssh-checks a hostfile's first host even when it is the only one, and
    the one-node script stopped with "host=node0 was not reachable via ssh"; without one it starts local processes.
    """
    several = plan.nodes > 1
    hosts = "".join(f"node{rank} slots={plan.gpus_per_node}\n" for rank in range(plan.nodes))
    hostfile = ("# One line per node: <ssh-reachable hostname> slots=<GPUs>. Replace node0.. with real hosts;\n"
                "# the deepspeed launcher reaches them with pdsh/ssh. node0 is the master.\n" + hosts)
    usage = "run ./deepspeed_launch.sh on node0 (passwordless ssh to the others)" if several else "./deepspeed_launch.sh"
    topology = f'--hostfile "$HERE/hostfile" --num_nodes {plan.nodes} ' if several else ""
    script = _header(plan, "DeepSpeed launch", usage) + (
        "# Exported NCCL_* variables reach the other nodes through .deepspeed_env in this directory.\n"
        'env | grep -E "^(NCCL|GLOO|TORCH_NCCL|OMP)_" > "$HERE/.deepspeed_env" || true\n'
        'export DS_ENV_FILE="$HERE/.deepspeed_env"  # read from here, not from the working directory\n'
        f'exec deepspeed {topology}--num_gpus {plan.gpus_per_node} '
        '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no_local_rank --module '
        f"dsft train {plan.train_arguments} --set train.distributed=deepspeed\n"
    )
    return {"hostfile": hostfile, "deepspeed_launch.sh": script} if several else {"deepspeed_launch.sh": script}


def accelerate_files(plan: LaunchPlan) -> dict[str, str]:
    """An accelerate config (plain multi-GPU: dsft's TrainingArguments bring DeepSpeed/FSDP) and a per-node script."""
    config = (
        "# accelerate config for dsft; machine_rank and main_process_ip are overridden per node by the script.\n"
        "compute_environment: LOCAL_MACHINE\n"
        f"distributed_type: {'MULTI_GPU' if plan.nodes * plan.gpus_per_node > 1 else 'NO'}\n"
        "downcast_bf16: 'no'\n"
        "machine_rank: 0\n"
        f"main_process_ip: {plan.default_master_addr or '127.0.0.1  # the script passes $MASTER_ADDR'}\n"
        f"main_process_port: {plan.master_port}\n"
        "main_training_function: main\n"
        "mixed_precision: 'no'  # dsft's train.precision decides\n"
        f"num_machines: {plan.nodes}\n"
        f"num_processes: {plan.nodes * plan.gpus_per_node}\n"
        "rdzv_backend: static\n"
        "same_network: true\n"
        "use_cpu: false\n"
    )
    usage = "./accelerate_node.sh" if plan.nodes == 1 else "NODE_RANK=<0..N-1> MASTER_ADDR=<rank-0 host> ./accelerate_node.sh"
    script = _header(plan, "accelerate launch", usage) + _node_rank_line(plan) + (
        'exec accelerate launch --config_file "$HERE/accelerate_config.yaml" --machine_rank "$NODE_RANK" '
        f'--main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" {plan.train_command}\n'
    )
    return {"accelerate_config.yaml": config, "accelerate_node.sh": script}


def slurm_script(plan: LaunchPlan) -> str:
    """An sbatch script: one task per node, each running torchrun with c10d rendezvous on the first node."""
    return (
        "#!/usr/bin/env bash\n"
        f"#SBATCH --job-name=dsft\n#SBATCH --nodes={plan.nodes}\n#SBATCH --ntasks-per-node=1\n"
        f"#SBATCH --gpus-per-node={plan.gpus_per_node}\n#SBATCH --cpus-per-task={max(8, 8 * plan.gpus_per_node)}\n"
        "#SBATCH --exclusive\n#SBATCH --output=dsft-%j.out\n"
        f"# dsft SLURM launch: {plan.nodes} node(s) x {plan.gpus_per_node} GPU(s). Submit with: sbatch dsft.sbatch\n"
        "set -euo pipefail\n"
        # sbatch runs a spooled copy of this file, so its own location says nothing: name the directory.
        + (f"HERE={shlex.quote(str(plan.script_dir))}\n" if plan.script_dir else 'HERE="${SLURM_SUBMIT_DIR:-$(pwd)}"\n')
        + _workdir_line(plan)
        + '# shellcheck disable=SC1091\nsource "$HERE/nccl_env.sh"\n'
        'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"\n'
        f'MASTER_PORT="${{MASTER_PORT:-{plan.master_port}}}"\n'
        "export MASTER_ADDR MASTER_PORT\n"
        'srun --kill-on-bad-exit=1 torchrun --nnodes "$SLURM_JOB_NUM_NODES" '
        f"--nproc-per-node {plan.gpus_per_node} "
        '--rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" '
        f"{plan.train_command}\n"
    )


def launch_files(plan: LaunchPlan, launcher: str) -> dict[str, str]:
    """File name -> content for ``launcher`` (always with nccl_env.sh)."""
    if launcher not in LAUNCHERS:
        raise DsftError(f"--launcher {launcher}: choose one of {', '.join(LAUNCHERS)}")
    if plan.nodes < 1 or plan.gpus_per_node < 1:
        raise DsftError(f"--nodes and --gpus-per-node must be >= 1, got {plan.nodes} and {plan.gpus_per_node}")
    files = {"nccl_env.sh": NCCL_ENV}
    if launcher == "torchrun":
        files["torchrun_node.sh"] = torchrun_script(plan)
    elif launcher == "deepspeed":
        files.update(deepspeed_files(plan))
    elif launcher == "accelerate":
        files.update(accelerate_files(plan))
    else:
        files["dsft.sbatch"] = slurm_script(plan)
    return files


def write_launch_files(plan: LaunchPlan, launcher: str, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the launcher's files into ``out_dir`` (scripts executable); returns their paths.

    ``out_dir`` follows the output-directory rule (:func:`dsft.disk.check_fresh_output_dir`): a non-empty one,
    an earlier launch's included (``nccl_env.sh`` is often edited by hand), is refused before anything is
    written unless ``overwrite``, which replaces only the launch files.
    """
    if not plan.config.is_file():
        raise DsftError(f"{plan.config}: config file not found")
    out = Path(out_dir)
    plan = dataclasses.replace(plan, script_dir=out.resolve(), workdir=plan.workdir or Path.cwd().resolve())
    files = launch_files(plan, launcher)
    check_fresh_output_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)  # after every check: a refused launch leaves no directory
    written = []
    for name, content in files.items():
        path = out / name
        path.write_text(content, encoding="utf-8")
        if name.endswith((".sh", ".sbatch")):
            path.chmod(0o755)
        written.append(path)
    return written
