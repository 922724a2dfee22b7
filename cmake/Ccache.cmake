# Compiler cache: a clean clone (CI, a second checkout, the arm64 cross build) recompiles ~250 translation units,
# 13 minutes on 2 cores; with ccache's cache warm that is about a minute. Off with -DTUG_CCACHE=OFF.
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
