# The microphone gate (issue 6): pure per-qube logic over the policy library
# (mic_gate.*) and its internal API for the control side (mic_gate_api.*).
# Included from audiovm-daemon/CMakeLists.txt (or from tests/mic until then).
add_library(qaudio_mic_gate STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/mic_gate.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/mic_gate_api.cpp
)
target_include_directories(qaudio_mic_gate PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src)
target_link_libraries(qaudio_mic_gate PUBLIC qaudio_policy qaudio_core)
