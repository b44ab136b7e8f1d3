# The control API (included from audiovm-daemon/CMakeLists.txt):
#   qaudio_control         request parsing/dispatch and the Unix socket server
#                          (needs only qaudio_core and nlohmann-json)
#   qaudio_control_daemon  ControlTarget on top of the daemon (qaudio_daemon)
#   control_request_fuzzer the request parser under libFuzzer
find_package(nlohmann_json REQUIRED)
add_library(qaudio_control STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/control_api.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/control_api_bt.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/control_server.cpp
)
target_include_directories(qaudio_control PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src)
target_link_libraries(qaudio_control PUBLIC qaudio_core qaudio_headset_output qaudio_bluetooth_core
  nlohmann_json::nlohmann_json)

if(TARGET qaudio_daemon)
  add_library(qaudio_control_daemon STATIC ${CMAKE_CURRENT_LIST_DIR}/src/control_daemon_adapter.cpp)
  target_link_libraries(qaudio_control_daemon PUBLIC qaudio_control qaudio_daemon)
endif()

qaudio_add_fuzzer(NAME control_request_fuzzer
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/control_request_fuzzer.cpp
  LIBS qaudio_control
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/fuzz/control_corpus)

# The daemon executable serves the control API (--control PATH).
if(TARGET qubes-audiovm-daemon AND TARGET qaudio_control_daemon)
  target_link_libraries(qubes-audiovm-daemon PRIVATE qaudio_control_daemon)
endif()

# Bluetooth (--bluetooth): the sdbus-c++ binding of libqaudio-bluetooth.
if(TARGET qubes-audiovm-daemon AND QAUDIO_WITH_BLUEZ)
  target_link_libraries(qubes-audiovm-daemon PRIVATE qaudio_bluetooth)
endif()
