# Sourced by the scripts that run on a lent GPU machine (benchmarks/gpu_check.sh,
# scripts/gpu_train.sh), from the repository root: run i2sb from this checkout without
# installing it, after installing the wheels of any package that machine lacks from .whl/
# (it reaches no index). Sets PY, the interpreter.
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    # Once per machine: scripts that run several trainings source this from each of them.
    if [ ! -f /tmp/site/.from-whl ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        touch /tmp/site/.from-whl
    fi
    case ":${PYTHONPATH:-}:" in *:/tmp/site:*) ;; *) export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} ;; esac
fi
case ":${PYTHONPATH:-}:" in *:$PWD:*) ;; *) export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} ;; esac
export PYTHONUNBUFFERED=1
# Installed, weights/ is the package i2sb_cli.weights (pyproject's package-dir); run from a
# checkout it is not, and `--init`, `--model NAME` and the bundled models need it: a link.
if ! "$PY" -c "import i2sb_cli.weights" 2>/dev/null; then
    [ -e i2sb_cli/weights ] || ln -s ../weights i2sb_cli/weights
fi
