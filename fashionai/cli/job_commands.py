"""Subcommands that run whole jobs: launch (distributed training), demo (the pipeline end to end)."""

from __future__ import annotations

import argparse
import logging

from fashionai.cli.common import Handler, subparser
from fashionai.launcher import GRACE_S, HEARTBEAT_S, LAUNCHERS, JobFailed, launch
from fashionai.pipeline.demo import MEMBERS, format_demo, run_demo
from fashionai.pipeline.tta_choice import DEFAULT_TTA, TTA_CHOICES


log = logging.getLogger(__name__)


# --- launch -------------------------------------------------------------------------------------
def add_launch(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "launch", "run a command as a distributed job (ps-lite), supervised to its end")
    p.add_argument("-n", "--num-workers", type=int, required=True, help="worker processes")
    p.add_argument("-s", "--num-servers", type=int, help="parameter servers (default: as many as workers)")
    p.add_argument("--launcher", default="local", choices=LAUNCHERS,
                   help="local: every process on this host; ssh: servers and workers dealt to the hosts of -H "
                        "in turn, the scheduler here (mpi, sge, yarn: refused, with the reason)")
    p.add_argument("-H", "--hostfile", help="ssh: one host a line, HOST[:SSH_PORT] [interface=IF] [address=IP]")
    p.add_argument("--host-ip", help="ssh: this host's address as the others reach it (default: the source "
                                     "address of the route to the first host)")
    p.add_argument("--sync-dst-dir", help="ssh: copy this folder to this path on every host first (rsync)")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this environment variable to every process, on every host (repeatable)")
    p.add_argument("--grace", type=float, default=GRACE_S, metavar="S",
                   help="seconds processes get to end once the job is over or one of them failed, before SIGKILL")
    p.add_argument("--heartbeat-timeout", type=float, default=HEARTBEAT_S, metavar="S",
                   help="end the job when a process has been silent this long (a lost host or link), or is still "
                        "joining the kvstore after this long")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="what every process runs, e.g. -- fashionai train --kvstore dist_sync ...")
    return _cmd_launch


def _cmd_launch(args: argparse.Namespace) -> int:
    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    try:
        launch(job, num_workers=args.num_workers, num_servers=args.num_servers, launcher=args.launcher,
               hostfile=args.hostfile, host_ip=args.host_ip, sync_dst_dir=args.sync_dst_dir, env=args.env,
               grace_s=args.grace, heartbeat_s=args.heartbeat_timeout)
    except JobFailed as err:
        log.error("%s", err)
        return 1
    return 0


# --- demo ---------------------------------------------------------------------------------------
def add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = subparser(sub, "demo", "the whole pipeline end to end on generated demo data (no download)")
    p.add_argument("--workdir", default="demo", help="where data, prepared, runs and submissions go (replaced)")
    p.add_argument("--tasks", default="all", help="comma list of tasks, or a group: length, design, all")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the split and training")
    p.add_argument("--train-per-class", type=int, default=80, help="demo base/ images per class")
    p.add_argument("--test-per-class", type=int, default=8, help="demo test questions per class")
    p.add_argument("--tta", default=DEFAULT_TTA, choices=TTA_CHOICES,
                   help="test-time views of the submission (see submit)")
    p.add_argument("--epochs", type=int, help="override the demo preset's epochs")
    p.add_argument("--model", help="override the preset's model, e.g. ResNet50_v2 (with --pretrained cache)")
    p.add_argument("--pretrained", help="override the preset's 'none': cache or a params file")
    p.add_argument("--data-shape", type=int, help="override the preset's input size")
    p.add_argument("--devices", help="override the preset's devices (first: one GPU, else the CPU)")
    p.add_argument("--members", type=int, default=MEMBERS,
                   help="nets per task group, on seeds seed, seed+1, ..., whose predictions the submission "
                        "averages (1: one net)")
    return _cmd_demo


def _cmd_demo(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ("epochs", "model", "pretrained", "data_shape", "devices")
                 if getattr(args, k) is not None}
    result = run_demo(args.workdir, tasks=args.tasks, seed=args.seed, train_per_class=args.train_per_class,
                      test_per_class=args.test_per_class, tta=args.tta, train_overrides=overrides,
                      members=args.members)
    print(format_demo(result))
    return 0
