# One interface target carries the project's warning policy; every library and binary links it. GCC is the
# project's compiler; clang (for the libFuzzer targets, -DTUG_FUZZ=ON) gets the flags it knows.
add_library(tug_warnings INTERFACE)
target_compile_options(tug_warnings INTERFACE
  -Wall -Wextra -Werror $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
  -Wnull-dereference -Wimplicit-fallthrough -Wformat=2 -Wno-error=null-dereference)
