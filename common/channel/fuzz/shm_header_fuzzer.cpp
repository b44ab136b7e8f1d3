// libFuzzer target for the shm channel's untrusted inputs: the grant's Hello
// message and the shared header's indices, as a hostile peer could set them.
// Input: [0,40) hello, [40,48) memfd size (u64 LE), [48,624) header bytes,
// then a script of ring operations interleaved with the "peer" scribbling on
// prod/cons/flags. Ring data is allocated with the exact ring size, so ASan
// reports any access outside it; results are checked against their bounds.
//
//   build-fuzz/common/channel/shm_header_fuzzer common/channel/fuzz/shm_header_corpus
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "shm_ring.hpp"

using qaudio::shm::Header;
using qaudio::shm::ShmRing;

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) {
      return 0;
    }
    --n;
    return *p++;
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= uint32_t{byte()} << (8 * i);
    }
    return v;
  }
};

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};

  uint8_t hello[sizeof(qaudio::shm::Hello)] = {};
  for (auto& b : hello) {
    b = in.byte();
  }
  uint64_t file_size = in.u32();
  file_size |= uint64_t{in.u32()} << 32;
  auto layout = qaudio::shm::validate_hello(
      std::span(reinterpret_cast<const std::byte*>(hello), sizeof(hello)), file_size);
  uint32_t ring_size = 1024;
  if (layout) {
    // Whatever passed validation must be a layout the client can map safely.
    for (int i = 0; i < 2; ++i) {
      check(layout->ring_size[i] >= qaudio::shm::kMinRing);
      check(layout->ring_size[i] <= qaudio::shm::kMaxRing);
      check((layout->ring_size[i] & (layout->ring_size[i] - 1)) == 0);
      check(layout->ring_offset[i] >= layout->header_size);
      check(uint64_t{layout->ring_offset[i]} + layout->ring_size[i] <= layout->total_size);
    }
    check(layout->total_size <= file_size);
    ring_size = layout->ring_size[0] <= 65536 ? layout->ring_size[0] : 65536;
  }

  auto hdr = std::make_unique<Header>();
  uint8_t raw[sizeof(Header)];
  for (auto& b : raw) {
    b = in.byte();
  }
  std::memcpy(static_cast<void*>(hdr.get()), raw, sizeof(raw));
  auto& ctl = hdr->ring[0];

  std::vector<std::byte> ring_data(ring_size);
  ShmRing reader(&ctl, ring_data.data(), ring_size, ShmRing::Role::Reader);
  ShmRing writer(&ctl, ring_data.data(), ring_size, ShmRing::Role::Writer);
  std::vector<std::byte> buf;

  while (in.n > 0) {
    uint8_t op = in.byte();
    switch (op % 8) {
      case 0: {
        size_t k = size_t{in.byte()} * 37;
        buf.assign(k, std::byte{0});
        size_t got = reader.read(buf);
        check(got <= k && got <= ring_size);
        break;
      }
      case 1: {
        size_t k = size_t{in.byte()} * 37;
        buf.assign(k, std::byte{0x5a});
        size_t put = writer.write(buf);
        check(put <= k && put <= ring_size);
        break;
      }
      case 2:
        ctl.prod.store(in.u32());  // hostile writer
        break;
      case 3:
        ctl.cons.store(in.u32());  // hostile reader
        break;
      case 4:
        check(reader.readable() <= ring_size);
        check(writer.writable() <= ring_size);
        break;
      case 5:
        check(reader.want_data_signal() <= ring_size);
        check(writer.want_space_signal() <= ring_size);
        break;
      case 6:
        ctl.reader_waiting.store(in.u32());
        ctl.writer_waiting.store(in.u32());
        (void)reader.take_space_signal_request();
        (void)writer.take_data_signal_request();
        break;
      case 7:
        // Re-attach (a fresh view starts from the indices in shared memory).
        reader = ShmRing(&ctl, ring_data.data(), ring_size, ShmRing::Role::Reader);
        writer = ShmRing(&ctl, ring_data.data(), ring_size, ShmRing::Role::Writer);
        break;
    }
    if (reader.corrupt()) {
      check(reader.readable() == 0);
      buf.assign(16, std::byte{0});
      check(reader.read(buf) == 0);
    }
    if (writer.corrupt()) {
      check(writer.writable() == 0);
    }
  }
  return 0;
}
