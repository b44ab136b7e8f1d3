# One option per optional dependency, defaulting to what pkg-config finds.
# Each found dependency gives an imported target PkgConfig::<NAME> and a
# QAUDIO_HAVE_<NAME> define in the generated qaudio/config.h.
find_package(PkgConfig REQUIRED)

macro(qaudio_optional_dep NAME MODULES)
  pkg_check_modules(_probe_${NAME} QUIET ${MODULES})
  option(QAUDIO_WITH_${NAME} "Build with ${MODULES}" ${_probe_${NAME}_FOUND})
  if(QAUDIO_WITH_${NAME})
    pkg_check_modules(${NAME} REQUIRED IMPORTED_TARGET ${MODULES})
    set(QAUDIO_HAVE_${NAME} 1)
  else()
    set(QAUDIO_HAVE_${NAME} 0)
  endif()
  message(STATUS "qaudio: ${NAME} = ${QAUDIO_WITH_${NAME}}")
endmacro()

qaudio_optional_dep(PIPEWIRE "libpipewire-0.3")
qaudio_optional_dep(PULSE "libpulse")
qaudio_optional_dep(ALSA "alsa")
qaudio_optional_dep(XEN "xenvchan")
qaudio_optional_dep(OPUS "opus")
qaudio_optional_dep(SODIUM "libsodium")
qaudio_optional_dep(BLUEZ "sdbus-c++")
qaudio_optional_dep(SPEEXDSP "speexdsp")
qaudio_optional_dep(SOXR "soxr")
qaudio_optional_dep(SYSTEMD "libsystemd")

find_package(Qt6 QUIET COMPONENTS Widgets Network Test)
option(QAUDIO_WITH_QT "Build the Qt 6 mixer UI" ${Qt6_FOUND})
set(QAUDIO_HAVE_QT 0)
if(QAUDIO_WITH_QT)
  find_package(Qt6 REQUIRED COMPONENTS Widgets Network Test)
  set(QAUDIO_HAVE_QT 1)
endif()

find_package(GTest QUIET)
find_package(benchmark QUIET)
