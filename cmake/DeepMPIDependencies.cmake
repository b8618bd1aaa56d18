# Finds every dependency the way ../shared/reference/platform-notes.md describes.
# Required: MPI, OpenMP, OpenBLAS (CBLAS), nlohmann_json, parallel HDF5.
# Optional: oneDNN (bf16/fp16 GEMMs), GTest + benchmark (tests, perf).

find_package(MPI REQUIRED COMPONENTS C CXX)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(nlohmann_json 3.10 REQUIRED)

# OpenBLAS: the pthreads build; cblas.h found next to it.
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(DEEPMPI_CBLAS_INCLUDE_DIR cblas.h
  HINTS /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas /usr/include
  REQUIRED)
add_library(deepmpi_blas INTERFACE)
target_link_libraries(deepmpi_blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(deepmpi_blas INTERFACE ${DEEPMPI_CBLAS_INCLUDE_DIR})
add_library(deepmpi::blas ALIAS deepmpi_blas)

# Parallel HDF5 (checkpoints). Module mode: Debian ships no hdf5-config.cmake.
set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR "deepmpi needs a parallel (MPI) HDF5; found a serial one at ${HDF5_INCLUDE_DIRS}. "
                      "On Debian: apt-get install libhdf5-openmpi-dev (and remove libhdf5-dev).")
endif()

# Optional dependencies: never stop the configure step (cmake/DeepMPIOptional.cmake);
# -DDEEPMPI_REQUIRE_<NAME>=ON makes each one required (CI sets them all).
include(DeepMPIOptional)
set(DEEPMPI_HAVE_DNNL OFF)
if(DEEPMPI_ENABLE_DNNL)
  deepmpi_optional_package(DNNL dnnl "bf16/fp16 GEMMs through oneDNN"
    "apt-get install libdnnl-dev ocl-icd-opencl-dev (scripts/install-deps.sh)" CONFIG)
  if(DEEPMPI_HAVE_DNNL)
    message(STATUS "deepmpi: oneDNN ${dnnl_VERSION} found: bf16/fp16 GEMMs go through oneDNN")
  endif()
elseif(DEEPMPI_REQUIRE_DNNL)
  message(FATAL_ERROR "deepmpi: -DDEEPMPI_REQUIRE_DNNL=ON with -DDEEPMPI_ENABLE_DNNL=OFF")
endif()
# liburing (NVMe spill files through io_uring; without it the spill engine uses its thread pool)
option(DEEPMPI_REQUIRE_URING "Stop the configure step when liburing (io_uring spill I/O) cannot be used" OFF)
set(DEEPMPI_HAVE_URING OFF)
if(DEEPMPI_ENABLE_URING)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(URING QUIET IMPORTED_TARGET liburing)
  endif()
  if(URING_FOUND)
    set(DEEPMPI_HAVE_URING ON)
    message(STATUS "deepmpi: liburing ${URING_VERSION} found: NVMe spill files use io_uring (thread-pool fallback at run time)")
  elseif(DEEPMPI_REQUIRE_URING)
    message(FATAL_ERROR "deepmpi: -DDEEPMPI_REQUIRE_URING=ON but liburing was not found (apt-get install liburing-dev pkg-config)")
  else()
    message(STATUS "deepmpi: liburing not found (apt-get install liburing-dev): NVMe spill files use the thread pool")
  endif()
elseif(DEEPMPI_REQUIRE_URING)
  message(FATAL_ERROR "deepmpi: -DDEEPMPI_REQUIRE_URING=ON with -DDEEPMPI_ENABLE_URING=OFF")
endif()
if(DEEPMPI_BUILD_TESTS)
  deepmpi_optional_package(GTEST GTest "the unit, MPI and e2e tests" "apt-get install libgtest-dev")
endif()
if(DEEPMPI_BUILD_PERF)
  deepmpi_optional_package(BENCHMARK benchmark "the kernel benchmarks in perf/" "apt-get install libbenchmark-dev")
endif()

if(DEEPMPI_ENABLE_CUDA)
  # Explicit architectures (not "native": the build machines have no GPU); CUDA 13 supports
  # sm_75 and newer.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  # NCCL ships no CMake config.
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include REQUIRED)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu REQUIRED)
  message(STATUS "deepmpi: CUDA ${CUDAToolkit_VERSION}, NCCL ${NCCL_LIBRARY}: the NCCL backend is built")
endif()
