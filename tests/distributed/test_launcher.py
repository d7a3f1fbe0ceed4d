"""The multi-process launcher from the command line: two nodes on one machine, a killed worker restarted, an
unreachable rendezvous, Slurm tasks as ranks (tests/distributed/test_distributed.py: what workers train)."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from uer.io.checkpoint import step_checkpoints
from uer_testing import ROOT, SMALL, error_lines, run_main

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main_cmd(run_dir, *args):
    return [sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args]


def env():
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def test_two_nodes_on_one_machine_rendezvous_and_write_one_checkpoint(tmp_path, mlm_data):
    endpoint = f"127.0.0.1:{free_port()}"
    args = ["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}", "pretrain.total_steps=4",
            "pretrain.batch_size=4", "hardware=multinode", "hardware.nnodes=2", "hardware.nproc_per_node=1",
            f"hardware.rdzv_endpoint={endpoint}", "hardware.rdzv_timeout=120", "hardware.num_threads=1",
            f"output_model_path={tmp_path / 'model'}"]
    nodes = [subprocess.Popen(main_cmd(tmp_path / f"node{i}", *args), cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err
    assert [s for s, _ in step_checkpoints(tmp_path / "model")] == [4]


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_killed_worker_is_restarted_and_the_run_finishes_from_the_last_checkpoint(tmp_path, mlm_data):
    model = tmp_path / "model"
    proc = subprocess.Popen(
        main_cmd(tmp_path / "run", "stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                 "pretrain.total_steps=100", "pretrain.save_checkpoint_steps=5", "pretrain.keep_checkpoints=2",
                 "pretrain.batch_size=4", "hardware.nproc_per_node=2", "hardware.max_restarts=1",
                 "hardware.num_threads=1", f"output_model_path={model}"),
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not step_checkpoints(model) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert step_checkpoints(model), "no checkpoint appeared"
    # The elastic agent runs in the main process; its workers are forks of its forkserver.
    servers = [pid for pid in children(proc.pid) if b"forkserver" in open(f"/proc/{pid}/cmdline", "rb").read()]
    victims = [pid for server in servers for pid in children(server)]
    assert victims, servers
    os.kill(victims[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "resuming from" in err
    assert step_checkpoints(model)[-1][0] == 100


def test_unreachable_rendezvous_fails_clearly_within_the_timeout(tmp_path, mlm_data):
    start = time.monotonic()
    proc = run_main(["stage=pretrain", "size=tiny", *SMALL, f"pretrain.dataset_path={mlm_data}",
                     "hardware=multinode", "hardware.nproc_per_node=1", f"hardware.rdzv_endpoint=127.0.0.1:{free_port()}",
                     "hardware.rdzv_timeout=5", f"output_model_path={tmp_path / 'm'}"], tmp_path / "run", timeout=120)
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert lines and "rendezvous" in lines[-1] and "5s" in lines[-1]
    assert time.monotonic() - start < 90


def test_slurm_preset_selects_submitit_with_one_task_per_gpu():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hardware=slurm", "hydra.launcher.nodes=3"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (3, 8, 8)


def test_slurm_tasks_become_ranks(monkeypatch):
    pytest.importorskip("submitit")
    from uer import distributed

    # submitit writes RANK, MASTER_ADDR, ... straight into os.environ: give it a copy that is
    # thrown away after the test, or later in-process runs would wait for that "cluster".
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    slurm = {"SLURM_JOB_ID": "12", "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NODELIST": "node[1-2]", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "2(x2)", "SUBMITIT_EXECUTOR": "slurm"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    distributed.adopt_slurm_tasks()
    assert distributed.env_from_os() == distributed.DistEnv(rank=3, local_rank=1, world_size=4)
    assert os.environ["MASTER_ADDR"] == "node1"




def test_a_forked_worker_takes_the_launching_process_s_environment_under_the_agent_s(monkeypatch):
    """The forkserver keeps the environment it started with (perhaps an earlier run's): a worker's is the launching
    process's at this launch, with the agent's per-worker variables on top."""
    from uer import launch

    monkeypatch.setattr(os, "environ", os.environ.copy())
    launcher = dict(os.environ, UER_TEST_CHANGED="now", MASTER_ADDR="launcher-host")
    os.environ.update(UER_TEST_CHANGED="at the server's start", RANK="1", MASTER_ADDR="agent-host")
    launch._take_environment(launcher)
    assert os.environ["UER_TEST_CHANGED"] == "now"
    assert os.environ["RANK"] == "1" and os.environ["MASTER_ADDR"] == "agent-host"
