# Shared body of the ARM toolchain files (aarch64-linux-gnu.cmake, arm-linux-gnueabihf.cmake); they set
#   TUG_TRIPLET      GNU triplet of Debian's cross g++ (aarch64-linux-gnu, arm-linux-gnueabihf)
#   TUG_DEB_ARCH     Debian architecture of the sysroot (arm64, armhf)
#   TUG_QEMU         qemu-user binary that runs the target's programs (qemu-aarch64-static, qemu-arm-static)
#   TUG_QEMU_CPU     the CPU QEMU emulates; pinned to the oldest core we ship to so that an instruction that core
#                    lacks faults under ctest as it would on the device (QEMU's default "max" CPU accepts them all)
#   CMAKE_SYSTEM_PROCESSOR
# and include this file.
#
# The sysroot comes from cross/make-sysroot.sh ARCH: -DTUG_SYSROOT=DIR, else $TUG_SYSROOT, else
# /var/cache/tugboat/sysroots/<arch>. Headers, libraries, CMake packages and pkg-config files are looked up in the
# sysroot only, never on the host; programs (pkg-config itself, tools) come from the host.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_LIBRARY_ARCHITECTURE ${TUG_TRIPLET})

set(CMAKE_C_COMPILER ${TUG_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${TUG_TRIPLET}-g++)
foreach(tool AR RANLIB STRIP OBJCOPY OBJDUMP NM READELF)
  string(TOLOWER ${tool} lower)
  find_program(CMAKE_${tool} ${TUG_TRIPLET}-${lower} NO_CMAKE_FIND_ROOT_PATH)
endforeach()

if(NOT TUG_SYSROOT)
  if(DEFINED ENV{TUG_SYSROOT} AND NOT "$ENV{TUG_SYSROOT}" STREQUAL "")
    set(_tug_sysroot_default "$ENV{TUG_SYSROOT}")
  else()
    set(_tug_sysroot_default "/var/cache/tugboat/sysroots/${TUG_DEB_ARCH}")
  endif()
  set(TUG_SYSROOT "${_tug_sysroot_default}" CACHE PATH "Sysroot for ${TUG_DEB_ARCH} (cross/make-sysroot.sh ${TUG_DEB_ARCH})")
endif()
if(NOT EXISTS "${TUG_SYSROOT}/usr/include/${TUG_TRIPLET}")
  message(FATAL_ERROR "No ${TUG_DEB_ARCH} sysroot at ${TUG_SYSROOT}: build it with `sudo cross/make-sysroot.sh "
    "${TUG_DEB_ARCH} ${TUG_SYSROOT}` (or point -DTUG_SYSROOT= / $TUG_SYSROOT at one)")
endif()
# try_compile() projects read this file again with a fresh cache: hand them the sysroot.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES TUG_SYSROOT)

set(CMAKE_SYSROOT "${TUG_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${TUG_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config: only the sysroot's .pc files, and paths in them prefixed with the sysroot.
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${TUG_SYSROOT}")
set(ENV{PKG_CONFIG_LIBDIR}
  "${TUG_SYSROOT}/usr/lib/${TUG_TRIPLET}/pkgconfig:${TUG_SYSROOT}/usr/lib/pkgconfig:${TUG_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# ctest (and add_custom_command running a built tool) run target programs through QEMU: -L makes the sysroot the
# root for the dynamic loader and shared libraries, -cpu pins the core. The same two settings also go in the
# environment (QEMU_LD_PREFIX, QEMU_CPU) because a test that spawns an ARM program (sh, cat: QEMU finds them under -L)
# starts a fresh QEMU through binfmt_misc, which reads only those variables.
find_program(TUG_QEMU_PROGRAM ${TUG_QEMU} NO_CMAKE_FIND_ROOT_PATH)
if(NOT TUG_QEMU_PROGRAM)
  message(FATAL_ERROR "${TUG_QEMU} not found: apt-get install qemu-user-static")
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR
  "/usr/bin/env;QEMU_LD_PREFIX=${TUG_SYSROOT};QEMU_CPU=${TUG_QEMU_CPU};${TUG_QEMU_PROGRAM};-L;${TUG_SYSROOT};-cpu;${TUG_QEMU_CPU}")
