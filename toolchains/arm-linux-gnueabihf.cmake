# Cross-build for 32-bit ARM devices (Debian armhf: ARMv7-A, hard float) with Debian's g++-arm-linux-gnueabihf
# and a sysroot from `cross/make-sysroot.sh armhf`. Usage:
#   cmake -S . -B build-armhf -G Ninja -DCMAKE_TOOLCHAIN_FILE=toolchains/arm-linux-gnueabihf.cmake [-DTUG_SYSROOT=DIR]
# ctest runs the test binaries under qemu-arm-static on a Cortex-A7 (ARMv7-A with VFPv4/NEON).
set(CMAKE_SYSTEM_PROCESSOR arm)
set(TUG_TRIPLET arm-linux-gnueabihf)
set(TUG_DEB_ARCH armhf)
set(TUG_QEMU qemu-arm-static)
set(TUG_QEMU_CPU cortex-a7)
include(${CMAKE_CURRENT_LIST_DIR}/cross-common.cmake)
