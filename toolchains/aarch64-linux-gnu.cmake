# Cross-build for 64-bit ARM devices (Debian arm64) with Debian's g++-aarch64-linux-gnu and a sysroot from
# `cross/make-sysroot.sh arm64`. Usage:
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake [-DTUG_SYSROOT=DIR]
# ctest runs the test binaries under qemu-aarch64-static on a Cortex-A53 (ARMv8.0-A: no LSE atomics, no dotprod).
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(TUG_TRIPLET aarch64-linux-gnu)
set(TUG_DEB_ARCH arm64)
set(TUG_QEMU qemu-aarch64-static)
set(TUG_QEMU_CPU cortex-a53)
include(${CMAKE_CURRENT_LIST_DIR}/cross-common.cmake)
