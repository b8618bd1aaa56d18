# Sourced by the scripts: Open MPI settings for this kind of machine (root, loopback only,
# more ranks than cores in tests). Harmless on clusters, where srun is used instead.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
if [ -z "${SLURM_JOB_ID:-}" ]; then
  export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
fi
