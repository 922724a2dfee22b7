# libFuzzer targets (clang only; -DTUG_FUZZ=ON; scripts/fuzz.sh builds and runs them all).
#
# With TUG_FUZZ every target is compiled with ASan + UBSan and libFuzzer's coverage instrumentation
# (-fsanitize=fuzzer-no-link), so the libraries under test are instrumented, not only the fuzz entry points; only
# the fuzz executables link libFuzzer's main. UBSan does not recover: undefined behaviour is a crash.
#
#   tug_add_fuzzer(NAME SOURCES a.cpp ... LIBS lib ... CORPUS dir)
#
# adds executable NAME (a no-op without TUG_FUZZ), makes the `fuzzers` target depend on it and lists it in
# ${CMAKE_BINARY_DIR}/fuzzers.tsv ("name<TAB>binary<TAB>seed corpus dir"), which scripts/fuzz.sh reads.
option(TUG_FUZZ "Build libFuzzer targets (needs clang)" OFF)
set(TUG_FUZZ_SANITIZERS "address,undefined" CACHE STRING "Sanitizers for the fuzz build (with libFuzzer)")
if(TUG_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TUG_FUZZ needs clang (-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,${TUG_FUZZ_SANITIZERS} -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${TUG_FUZZ_SANITIZERS})
  # Boost 1.74's Asio only knows clang's <experimental/coroutine>, which libstdc++ does not ship: tell it clang 14
  # has the standard <coroutine> (the server and client are coroutines).
  add_compile_definitions(BOOST_ASIO_HAS_CO_AWAIT BOOST_ASIO_HAS_STD_COROUTINE)
  add_custom_target(fuzzers)
  file(WRITE ${CMAKE_BINARY_DIR}/fuzzers.tsv "")
endif()

function(tug_add_fuzzer name)
  if(NOT TUG_FUZZ)
    return()
  endif()
  cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  if(NOT F_SOURCES OR NOT F_CORPUS)
    message(FATAL_ERROR "tug_add_fuzzer(${name}): SOURCES and CORPUS are required")
  endif()
  add_executable(${name} ${F_SOURCES})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${name} PRIVATE ${F_LIBS} tug_warnings)
  add_dependencies(fuzzers ${name})
  get_filename_component(_corpus ${F_CORPUS} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  file(APPEND ${CMAKE_BINARY_DIR}/fuzzers.tsv "${name}\t${CMAKE_CURRENT_BINARY_DIR}/${name}\t${_corpus}\n")
endfunction()
