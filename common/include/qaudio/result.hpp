// Result<T>: an expected value or an Error (what failed, on what, and errno).
// Expected failures are values in qaudio; exceptions stop at library edges.
// (std::expected is not usable here: clang 14, which builds the fuzzers,
// cannot compile libstdc++ 12's <expected>.)
//
//   Result<int> parse(std::string_view s);
//   auto r = parse("12");
//   if (!r) { log_error("{}", r.error().message); }
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace qaudio {

struct Error {
  std::string message;  // human readable: what failed, on what, what to do
  int code = 0;         // errno value when the failure came from the OS, else 0

  static Error from_errno(std::string what, int err = errno) {
    return Error{std::move(what) + ": " + std::strerror(err), err};
  }
};

struct Unexpected {
  Error error;
};

inline Unexpected fail(std::string message, int code = 0) {
  return Unexpected{Error{std::move(message), code}};
}
inline Unexpected fail_errno(std::string what, int err = errno) {
  return Unexpected{Error::from_errno(std::move(what), err)};
}
inline Unexpected fail(Error e) {
  return Unexpected{std::move(e)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : err_(std::move(u.error)), ok_(false) {}  // NOLINT
  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

}  // namespace qaudio
