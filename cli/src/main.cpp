// qvm-audio: the command line for the audio qube (see cli_app.hpp and
// docs/qvm-audio.1).
//
//   qvm-audio list
//   qvm-audio volume work -10
#include <iostream>
#include <string>
#include <vector>

#include "cli_app.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return qaudio::cli::run_cli(args, std::cout, std::cerr);
}
