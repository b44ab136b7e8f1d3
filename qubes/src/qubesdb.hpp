// QubesDB behind a small interface: read, write, watch, and an fd that turns
// readable when a watched key may have changed (qubesdb-read / qubesdb-write
// / qubesdb-watch semantics). Three implementations:
//   - libqubesdb, loaded at run time with dlopen (the real one, in a qube);
//   - a directory of files (key "/a/b" is the file DIR/a/b; watched with
//     inotify), so tests and other processes can play dom0;
//   - in memory (in-process tests).
//
//   auto db = open_qubesdb("file:/tmp/qdb");        // or "qubesdb", "memory"
//   (*db)->watch("/audio-input-config/work");
//   poll((*db)->fd()) ...; for (auto& k : (*db)->take_changes()) (*db)->read(k);
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qaudio/result.hpp"

namespace qaudio::qubes {

class QubesDb {
 public:
  virtual ~QubesDb() = default;
  // The value, or nullopt when the key does not exist.
  virtual std::optional<std::string> read(const std::string& key) = 0;
  virtual Result<void> write(const std::string& key, const std::string& value) = 0;
  // After watch(key), a change of the key (write, removal) makes fd()
  // readable and puts the key into take_changes().
  virtual Result<void> watch(const std::string& key) = 0;
  virtual int fd() const = 0;
  // Drains fd() and returns the watched keys that fired (may repeat, may be
  // spurious: read the value again).
  virtual std::vector<std::string> take_changes() = 0;
  virtual std::string describe() const = 0;
};

// Keys are absolute paths of [A-Za-z0-9_.-] components ("/audio-input/work").
bool is_valid_qubesdb_key(const std::string& key);

// "qubesdb" (libqubesdb.so.0 via dlopen), "file:DIR", "memory".
Result<std::unique_ptr<QubesDb>> open_qubesdb(const std::string& spec);
Result<std::unique_ptr<QubesDb>> open_libqubesdb();
Result<std::unique_ptr<QubesDb>> open_file_qubesdb(const std::string& dir);
std::unique_ptr<QubesDb> make_memory_qubesdb();

}  // namespace qaudio::qubes
