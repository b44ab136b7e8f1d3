// libFuzzer target: the daemon's view of port 4714 — DaemonNegotiator fed the
// input in odd chunks, then the stock control decoder or the native frame
// decoder it hands over to. Checks progress and bounds, never crashes.
//
//   build-fuzz/common/protocol/stock_control_fuzzer -max_total_time=60 stock_control_corpus
#include <cstdint>
#include <cstdlib>

#include "qaudio/negotiation.hpp"

using namespace qaudio::protocol;

namespace {
void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = std::as_bytes(std::span(data, size));
  DaemonNegotiator neg;
  StockControlDecoder stock;
  size_t words = 0;
  size_t pos = 0;
  size_t step = 1;
  while (pos < bytes.size()) {
    size_t chunk = std::min(step, bytes.size() - pos);
    step = step % 7 + 1;
    auto in = bytes.subspan(pos, chunk);
    pos += chunk;
    switch (neg.state()) {
      case DaemonNegotiator::State::Stock: {
        while (auto w = stock.next(in)) {
          (void)classify(*w);
          ++words;
        }
        check(in.empty() && stock.pending() < 4);
        break;
      }
      case DaemonNegotiator::State::Native: {
        size_t took = neg.decoder().feed(in);
        while (std::holds_alternative<Message>(neg.decoder().next())) {
        }
        check(took == in.size() || neg.decoder().failed() || neg.decoder().buffered() > 0);
        break;
      }
      case DaemonNegotiator::State::Failed:
        check(!neg.failure().empty());
        return 0;
      default: {
        size_t took = neg.feed(in);
        auto reply = neg.take_reply();
        check(reply.size() <= kMaxFrameSize);
        if (neg.state() == DaemonNegotiator::State::Stock) {
          auto replay = neg.replay();
          check(replay.size() == 4);
          while (auto w = stock.next(replay)) {
            ++words;
          }
        }
        check(took <= in.size());
        if (took < in.size()) {
          check(neg.state() == DaemonNegotiator::State::Stock ||
                neg.state() == DaemonNegotiator::State::Native ||
                neg.state() == DaemonNegotiator::State::Failed);
          pos -= in.size() - took;  // the rest goes to the next stage
        }
        break;
      }
    }
  }
  check(words <= size / 4 + 2);
  return 0;
}
