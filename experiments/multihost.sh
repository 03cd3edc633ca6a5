#!/usr/bin/env bash
# One hyperjax study over several processes (hosts). Every process runs the same command;
# process 0 decides and prints, all of them train their shard of every population.
# The store (resume with `hyperjax resume STORE` and the same process options) must be on a
# filesystem every process sees.
# Usage: bash experiments/multihost.sh local|slurm|tpu [CONFIG.yaml] [STORE]
set -euo pipefail
CONFIG=${2:-experiments/configs/quickstart.yaml}
STORE=${3:-runs/multihost}

case "${1:-local}" in
local)
  # Two processes on this machine, one CPU device each, gloo collectives over 127.0.0.1
  # (what the test suite does; on one machine one process with every core is faster).
  PORT=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  HYPERJAX_HOST_DEVICES=1 hyperjax tune "$CONFIG" --store "$STORE" --coordinator 127.0.0.1:$PORT --num-processes 2 --process-id 1 --quiet &
  HYPERJAX_HOST_DEVICES=1 hyperjax tune "$CONFIG" --store "$STORE" --coordinator 127.0.0.1:$PORT --num-processes 2 --process-id 0
  wait
  ;;
slurm)
  # Inside an allocation (sbatch/salloc --nodes=N --ntasks-per-node=1 --gpus-per-node=G): one
  # process per node sees its node's GPUs; JAX reads the coordinator and ranks from SLURM.
  srun --ntasks-per-node=1 hyperjax tune "$CONFIG" --store "$STORE" --distributed
  ;;
tpu)
  # A TPU pod slice: the same command on every worker; JAX finds the others itself.
  # gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command="cd hyperjax && bash experiments/multihost.sh tpu"
  hyperjax tune "$CONFIG" --store "$STORE" --distributed
  ;;
*)
  echo "usage: $0 local|slurm|tpu [CONFIG.yaml] [STORE]" >&2
  exit 2
  ;;
esac
