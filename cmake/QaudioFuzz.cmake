# Fuzz targets.
#
#   qaudio_add_fuzzer(NAME <name> SOURCES <files> LIBS <targets> CORPUS <dir>)
#
# The source defines LLVMFuzzerTestOneInput. In the normal (gcc) build each
# target is also linked with fuzz/replay_main.cpp into <name>_replay, and CTest
# runs it over the committed seed corpus (labels unit;fuzz). When clang with
# libFuzzer is available, the whole tree is configured a second time with clang
# in <build>/fuzz-clang (QAUDIO_FUZZ_ONLY=ON, every optional dependency off)
# and CTest runs each real libFuzzer target for a bounded time (label fuzz).
set(QAUDIO_FUZZ_SECONDS 20 CACHE STRING "Seconds each libFuzzer target runs under CTest")
set(QAUDIO_FUZZERS "" CACHE INTERNAL "")

if(NOT QAUDIO_FUZZ_ONLY AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  find_program(QAUDIO_CLANGXX NAMES clang++ clang++-14)
  find_program(QAUDIO_CLANG NAMES clang clang-14)
  set(_can_fuzz OFF)
  if(QAUDIO_CLANGXX AND QAUDIO_CLANG)
    file(GLOB _libfuzzer /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a)
    if(_libfuzzer)
      set(_can_fuzz ON)
    endif()
  endif()
  option(QAUDIO_CLANG_FUZZERS "Build and run libFuzzer targets with clang" ${_can_fuzz})
  if(QAUDIO_CLANG_FUZZERS)
    include(ExternalProject)
    ExternalProject_Add(qaudio_clang_fuzzers
      SOURCE_DIR ${CMAKE_SOURCE_DIR}
      BINARY_DIR ${CMAKE_BINARY_DIR}/fuzz-clang
      CMAKE_ARGS
        -DCMAKE_BUILD_TYPE=RelWithDebInfo
        -DCMAKE_C_COMPILER=${QAUDIO_CLANG}
        -DCMAKE_CXX_COMPILER=${QAUDIO_CLANGXX}
        -DQAUDIO_FUZZ_ONLY=ON
        -DQAUDIO_WERROR=${QAUDIO_WERROR}
        -DQAUDIO_WITH_PIPEWIRE=OFF -DQAUDIO_WITH_PULSE=OFF -DQAUDIO_WITH_ALSA=OFF
        -DQAUDIO_WITH_XEN=OFF -DQAUDIO_WITH_OPUS=OFF -DQAUDIO_WITH_SODIUM=OFF -DQAUDIO_WITH_BLUEZ=OFF
        -DQAUDIO_WITH_QT=OFF -DQAUDIO_WITH_SOXR=OFF
        -DQAUDIO_BUILD_TESTS=OFF -DQAUDIO_BUILD_BENCH=OFF
      BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target qaudio_all_fuzzers
      BUILD_ALWAYS ON
      INSTALL_COMMAND "")
  endif()
endif()

if(QAUDIO_FUZZ_ONLY)
  # Instrument every library for coverage and sanitizers, so libFuzzer sees
  # inside the code it drives; only the fuzzer executables link libFuzzer.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined)
  add_link_options(-fsanitize=address,undefined)
  add_custom_target(qaudio_all_fuzzers)
endif()

function(qaudio_add_fuzzer)
  cmake_parse_arguments(F "" "NAME;CORPUS" "SOURCES;LIBS" ${ARGN})
  if(QAUDIO_FUZZ_ONLY)
    add_executable(${F_NAME} ${F_SOURCES})
    target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
    target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
    add_dependencies(qaudio_all_fuzzers ${F_NAME})
    return()
  endif()
  if(NOT QAUDIO_BUILD_TESTS)
    return()
  endif()
  add_executable(${F_NAME}_replay ${F_SOURCES} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.cpp)
  target_link_libraries(${F_NAME}_replay PRIVATE ${F_LIBS})
  add_test(NAME ${F_NAME}_seeds COMMAND ${F_NAME}_replay ${F_CORPUS})
  set_tests_properties(${F_NAME}_seeds PROPERTIES LABELS "unit;fuzz")
  if(QAUDIO_CLANG_FUZZERS)
    set(_work ${CMAKE_BINARY_DIR}/fuzz-work/${F_NAME})
    file(RELATIVE_PATH _rel ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
    add_test(NAME ${F_NAME}_libfuzzer
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
        ${CMAKE_BINARY_DIR}/fuzz-clang/${_rel}/${F_NAME}
        -max_total_time=${QAUDIO_FUZZ_SECONDS} -rss_limit_mb=2048 -timeout=10
        -print_final_stats=1 ${_work} ${F_CORPUS})
    set_tests_properties(${F_NAME}_libfuzzer PROPERTIES LABELS "fuzz" TIMEOUT 300
      FIXTURES_REQUIRED fuzz_workdirs)
    set_property(GLOBAL APPEND PROPERTY QAUDIO_FUZZ_WORKDIRS ${_work})
  endif()
endfunction()
