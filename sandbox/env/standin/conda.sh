# Stand-in for Miniconda's etc/profile.d/conda.sh: a `conda` shell function that
# activates and deactivates the envs under /opt/miniconda3 as conda does (PATH,
# CONDA_PREFIX, CONDA_DEFAULT_ENV, CONDA_SHLVL, etc/conda/activate.d scripts).
# Only what SWE-bench images use; other subcommands fail loudly.
export CONDA_EXE=/opt/miniconda3/bin/conda
export _CE_CONDA=
__conda_root=/opt/miniconda3

__conda_deactivate() {
  if [ -n "${CONDA_PREFIX:-}" ]; then
    if [ -d "$CONDA_PREFIX/etc/conda/deactivate.d" ]; then
      for __f in "$CONDA_PREFIX"/etc/conda/deactivate.d/*.sh; do [ -f "$__f" ] && . "$__f"; done
    fi
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vx "$CONDA_PREFIX/bin" | paste -sd: -)
    export PATH
    unset CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_PROMPT_MODIFIER
    export CONDA_SHLVL=0
  fi
}

__conda_activate() {
  __name="${1:-base}"
  if [ "$__name" = base ]; then __prefix="$__conda_root"
  elif [ -d "$__name/conda-meta" ]; then __prefix="$__name"
  else __prefix="$__conda_root/envs/$__name"; fi
  if [ ! -d "$__prefix/conda-meta" ]; then
    echo "EnvironmentNameNotFound: Could not find conda environment: $__name" >&2
    return 1
  fi
  __conda_deactivate
  case ":$PATH:" in *":$__conda_root/condabin:"*) ;; *) PATH="$__conda_root/condabin:$PATH";; esac
  export PATH="$__prefix/bin:$PATH"
  export CONDA_PREFIX="$__prefix" CONDA_DEFAULT_ENV="$__name" CONDA_SHLVL=1 CONDA_PROMPT_MODIFIER="($__name) "
  export CONDA_PYTHON_EXE="$__conda_root/bin/python"
  if [ -d "$__prefix/etc/conda/activate.d" ]; then
    for __f in "$__prefix"/etc/conda/activate.d/*.sh; do [ -f "$__f" ] && . "$__f"; done
  fi
  return 0
}

conda() {
  case "${1:-}" in
    activate) shift; __conda_activate "$@";;
    deactivate) __conda_deactivate;;
    *) echo "conda (CodeMonkeys stand-in): only activate/deactivate are available" >&2; return 2;;
  esac
}
