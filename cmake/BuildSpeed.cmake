# Build speed: ccache and unity builds.
#
# Compiler cache: a clean clone (CI, a second checkout, the arm64 cross build) recompiles ~250 translation units,
# 10 minutes on 2 cores (7 with TUG_UNITY_BUILD); with ccache's cache warm that is about a minute. Off with -DTUG_CCACHE=OFF.
#
# CCACHE_BASEDIR makes paths under the source tree relative, and CCACHE_NOHASHDIR leaves the build directory out of
# the hash, so a clone at another path hits the same cache entries. Where the cache lives is ccache's own choice
# ($CCACHE_DIR, else ~/.cache/ccache); scripts/test.sh points it at /var/cache/tugboat/ccache, beside the other
# caches that survive a fresh clone.
option(TUG_CCACHE "Compile through ccache when it is installed" ON)
if(TUG_CCACHE)
  find_program(TUG_CCACHE_PROGRAM ccache)
  if(TUG_CCACHE_PROGRAM)
    set(_tug_launcher ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_NOHASHDIR=true
        ${TUG_CCACHE_PROGRAM})
    set(CMAKE_C_COMPILER_LAUNCHER ${_tug_launcher})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_tug_launcher})
    message(STATUS "Compiling through ${TUG_CCACHE_PROGRAM}")
  else()
    message(STATUS "ccache not found: compiling without a cache (scripts/setup.sh installs it)")
  endif()
endif()

# Unity builds: a clean build compiles ~250 translation units that mostly parse the same heavy headers (Asio/Beast,
# nlohmann::json, Catch2); batching them 16 at a time cuts a cold build by a third (10.5 -> 7 minutes on 2 cores).
# scripts/test.sh and cross/build-agent.sh turn it on (CI starts cold); it stays off by default because an edit then
# recompiles its whole batch. A name defined in two .cpp files of one target (even in anonymous namespaces) breaks
# the unity build: give such helpers distinct names.
option(TUG_UNITY_BUILD "Compile each target's sources in batches of 16 (faster clean builds)" OFF)
if(TUG_UNITY_BUILD)
  set(CMAKE_UNITY_BUILD ON)
  set(CMAKE_UNITY_BUILD_BATCH_SIZE 16)
  # A pimpl whose members use anonymous-namespace types is fine in its own .cpp; merged into a batch, GCC sees the
  # .cpp as an included header and -Wsubobject-linkage (an ODR warning about headers) fires. Normal builds keep it.
  add_compile_options($<$<CXX_COMPILER_ID:GNU>:-Wno-subobject-linkage>)
endif()
