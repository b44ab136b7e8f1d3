// Network channel crypto with libsodium (see net_crypto.hpp).
#include "net_crypto.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <sstream>

namespace qaudio::net {
namespace {

void ensure_sodium() {
  static const int rc = sodium_init();
  (void)rc;  // 1 = already initialised, 0 = ok; -1 cannot happen on Linux with getrandom
}

}  // namespace

Result<Key> parse_key(std::string_view hex) {
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.front()))) {
    hex.remove_prefix(1);
  }
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) {
    hex.remove_suffix(1);
  }
  if (hex.size() != 64) {
    return fail("net key: want 64 hex digits (32 bytes), got " + std::to_string(hex.size()) +
                " characters; make one with `qaudio-net-keygen` or `head -c32 /dev/urandom | "
                "xxd -p -c64`");
  }
  Key k{};
  for (size_t i = 0; i < 32; ++i) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9')
        return c - '0';
      if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
      if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
      return -1;
    };
    int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return fail("net key: character " + std::to_string(2 * i + (hi < 0 ? 0 : 1)) +
                  " is not a hex digit");
    }
    k[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return k;
}

Result<Key> load_key_file(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return fail_errno("net key file " + path);
  }
  if ((st.st_mode & 077) != 0) {
    return fail("net key file " + path + " is readable by group or others; chmod 600 it");
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto k = parse_key(ss.str());
  if (!k) {
    return fail(path + ": " + k.error().message);
  }
  return k;
}

Key generate_key() {
  ensure_sodium();
  Key k;
  crypto_aead_xchacha20poly1305_ietf_keygen(k.data());
  return k;
}

std::string key_to_hex(const Key& key) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : key) {
    s.push_back(d[c >> 4]);
    s.push_back(d[c & 15]);
  }
  return s;
}

uint64_t key_id(const Key& key) {
  ensure_sodium();
  static const unsigned char ctx[] = "qaudio-net key id v1";
  unsigned char out[8];
  crypto_generichash(out, sizeof out, ctx, sizeof ctx - 1, key.data(), key.size());
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | out[i];
  }
  return v;
}

size_t seal(const Key& key,
            const Header& h,
            std::span<const std::byte> plain,
            std::span<std::byte> out) {
  ensure_sodium();
  size_t need = kHeaderSize + plain.size() + kTagSize;
  if (out.size() < need || need > kMaxDatagram) {
    return 0;
  }
  write_header(h, out.first<kHeaderSize>());
  const auto* ad = reinterpret_cast<const unsigned char*>(out.data());
  const unsigned char* nonce = ad + 16;  // sender session, receiver session, counter
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + kHeaderSize), &clen,
      reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), ad, kHeaderSize, nullptr,
      nonce, key.data());
  return kHeaderSize + static_cast<size_t>(clen);
}

Result<size_t> open(const Key& key, std::span<const std::byte> d, std::span<std::byte> plain_out) {
  ensure_sodium();
  if (d.size() < kHeaderSize + kTagSize || plain_out.size() < d.size() - kHeaderSize - kTagSize) {
    return fail("net: datagram too short to authenticate");
  }
  const auto* ad = reinterpret_cast<const unsigned char*>(d.data());
  unsigned long long plen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain_out.data()), &plen, nullptr, ad + kHeaderSize,
          d.size() - kHeaderSize, ad, kHeaderSize, ad + 16, key.data()) != 0) {
    return fail("net: authentication failed (wrong key or altered datagram)");
  }
  return static_cast<size_t>(plen);
}

bool ReplayWindow::accept(uint64_t c) {
  auto bit = [&](uint64_t v) -> std::pair<size_t, uint64_t> {
    return {static_cast<size_t>((v / 64) % (kBits / 64)), uint64_t{1} << (v % 64)};
  };
  if (!any_ || c > top_) {
    // Clear the words the window slides over.
    uint64_t from = any_ ? top_ + 1 : c;
    if (!any_ || c - top_ >= kBits) {
      bits_.fill(0);
    } else {
      for (uint64_t v = from; v <= c; ++v) {
        auto [w, m] = bit(v);
        bits_[w] &= ~m;
      }
    }
    top_ = c;
    any_ = true;
    auto [w, m] = bit(c);
    bits_[w] |= m;
    return true;
  }
  if (top_ - c >= kBits) {
    return false;
  }
  auto [w, m] = bit(c);
  if (bits_[w] & m) {
    return false;
  }
  bits_[w] |= m;
  return true;
}

void ReplayWindow::reset() {
  bits_.fill(0);
  top_ = 0;
  any_ = false;
}

}  // namespace qaudio::net
