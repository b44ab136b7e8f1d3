// Network channel crypto (libsodium): pre-shared 32-byte keys, the public key
// id that lets a receiver pick the key to try, XChaCha20-Poly1305 (IETF) AEAD
// sealing of a datagram with its clear header as associated data, and the
// sliding replay window over the per-session counter.
//
//   auto key = qaudio::net::load_key_file("/etc/qubes/audio-net/work.key");
//   size_t n = seal(*key, header, plain, out);          // header || ciphertext || tag
//   auto plain_len = open(*key, datagram, plain_out);   // Result<size_t>
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net_wire.hpp"
#include "qaudio/result.hpp"

namespace qaudio::net {

using Key = std::array<unsigned char, 32>;

// 64 hex digits (surrounding white space ignored).
Result<Key> parse_key(std::string_view hex);
// A file holding the hex key; refused when group- or world-accessible.
Result<Key> load_key_file(const std::string& path);
Key generate_key();
std::string key_to_hex(const Key& key);
// BLAKE2b-derived public identifier of a key (never reveals the key).
uint64_t key_id(const Key& key);

// Writes header || AEAD(plain) into out; returns the datagram size, 0 if out
// is too small. The nonce is the header's sender session, receiver session
// and counter (unique because the counter never repeats within a session).
size_t seal(const Key& key,
            const Header& h,
            std::span<const std::byte> plain,
            std::span<std::byte> out);
// Verifies and decrypts a datagram whose header parsed; returns the plain
// size. Fails (and writes nothing meaningful) on a wrong key or any tampering.
Result<size_t> open(const Key& key,
                    std::span<const std::byte> datagram,
                    std::span<std::byte> plain_out);

// Accepts each counter at most once; counters more than 1024 behind the
// highest seen are refused (too old to tell).
class ReplayWindow {
 public:
  bool accept(uint64_t counter);
  void reset();

 private:
  static constexpr uint64_t kBits = 1024;
  std::array<uint64_t, kBits / 64> bits_{};
  uint64_t top_ = 0;
  bool any_ = false;
};

}  // namespace qaudio::net
