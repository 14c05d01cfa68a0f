"""Where this process sits in a job: rank, world size and the chief, the same rule everywhere.

Pure: reads only the mapping of variables and the host list it is given.
The launcher is recognised in this order, and the chief elected by its rule:

1. `TF_CONFIG` (set by the user, a launcher or mlrepro): the `chief` task, or
   `worker` 0 when the cluster has no chief.
2. MPI / Horovod variables (`OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `HOROVOD_RANK`): rank 0.
3. A SageMaker host list with more than one host: the first of the sorted list
   (`algo-1`); rank is the host's index, and a `TF_CONFIG` is built for it.
4. Otherwise a single process, which is the chief.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from mlrepro import env
from mlrepro.runtime import tfconfig as _tfconfig

# (rank, size, local rank, local size) variables of each MPI-style launcher, tried in order.
MPI_VARIABLES = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),                                  # Open MPI (SageMaker MPI)
    ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),  # horovodrun
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),  # MPICH / Intel MPI
)

TF_CONFIG = "tf_config"
MPI = "mpi"
SAGEMAKER = "sagemaker"
SINGLE = "single"


@dataclass(frozen=True)
class Placement:
    """This process's place in its job."""

    launcher: str                 # tf_config | mpi | sagemaker | single
    rank: int | None              # None for TF tasks that do not train (ps, evaluator)
    world_size: int
    local_rank: int
    is_chief: bool
    tf_config: dict | None        # the TF_CONFIG in force or to set (None: single process)
    tf_config_built: bool         # True when mlrepro built it (it must be exported)
    problems: tuple[str, ...] = ()


def _int(environ: Mapping[str, str], name: str) -> int | None:
    try:
        return int(environ[name])
    except (KeyError, ValueError):
        return None


def mpi_ranks(environ: Mapping[str, str]) -> tuple[int, int, int, int] | None:
    """(rank, size, local rank, local size) from the first MPI launcher whose variables are set."""
    for rank_var, size_var, local_var, local_size_var in MPI_VARIABLES:
        rank, size = _int(environ, rank_var), _int(environ, size_var)
        if rank is None:
            continue
        size = size if size and size > rank else rank + 1
        local = _int(environ, local_var)
        local_size = _int(environ, local_size_var)
        return rank, size, local if local is not None else 0, local_size or 1
    return None


def place(environ: Mapping[str, str], hosts: Sequence[str] = (),
          current_host: str | None = None) -> Placement:
    """Elect this process's rank and whether it is the chief (see the module doc for the rule).

    Args:
        environ: the process's variables (TF_CONFIG, MPI ranks, MLREPRO_TF_PORT,
            MLREPRO_HOST_ADDRESSES).
        hosts: the job's hosts when a platform names them (SageMaker), else empty.
        current_host: this host's name in `hosts`.

    Example:
        >>> place({}, ["algo-1", "algo-2"], "algo-2").rank
        1
    """
    problems: list[str] = []
    try:
        config = _tfconfig.parse(environ.get(_tfconfig.TF_CONFIG_ENV))
    except ValueError as exc:
        problems.append(str(exc))
        config = None
    if config is not None and env.TF_CONFIG_SOURCE.is_set(environ):
        # mlrepro exported this TF_CONFIG earlier (`Runtime.write_env`): name its real
        # launcher again, as long as the variables still build the same one.
        rebuilt = _from_launchers(environ, hosts, current_host, problems)
        if rebuilt.tf_config == config:
            return rebuilt
    if config is not None:
        rank, world, chief = _tfconfig.placement(config)
        return Placement(TF_CONFIG, rank, world, 0, chief, config, False, tuple(problems))
    return _from_launchers(environ, hosts, current_host, problems)


def _from_launchers(environ: Mapping[str, str], hosts: Sequence[str],
                    current_host: str | None, problems: list[str]) -> Placement:
    problems = list(problems)
    ordered = sorted(set(hosts))
    try:
        port = env.TF_PORT.get(environ, strict=True)
        addresses = _tfconfig.parse_addresses(env.HOST_ADDRESSES.get(environ))
    except ValueError as exc:
        problems.append(f"{exc}; using {_tfconfig.DEFAULT_PORT} and host names")
        port, addresses = _tfconfig.DEFAULT_PORT, {}

    mpi = mpi_ranks(environ)
    if mpi is not None:
        rank, size, local, local_size = mpi
        built = None
        if current_host in ordered and size == len(ordered) * local_size and size > 1:
            built = _tfconfig.build(ordered, current_host, port=port, addresses=addresses,
                                    processes_per_host=local_size, local_rank=local)
        return Placement(MPI, rank, size, local, rank == 0, built, built is not None,
                         tuple(problems))

    if len(ordered) > 1 and current_host in ordered:
        rank = ordered.index(current_host)
        built = _tfconfig.build(ordered, current_host, port=port, addresses=addresses)
        return Placement(SAGEMAKER, rank, len(ordered), 0, rank == 0, built, True,
                         tuple(problems))
    if len(ordered) > 1:
        problems.append(f"current host {current_host!r} is not in the host list {ordered}")
    return Placement(SINGLE, 0, 1, 0, True, None, False, tuple(problems))
