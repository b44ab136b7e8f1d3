// RealPolicyFs and load_policy_dir: policy files from the filesystem.
// Files are read with a size bound, FIFOs and devices are refused (a
// non-blocking open, then a regular-file check), and a directory listing
// keeps regular files only (following symlinks, as Qubes does).
//
//   auto snap = load_policy_dir("/etc/qubes/policy.d");
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "qaudio/policy/loader.hpp"

namespace qaudio::policy {

Result<std::string> RealPolicyFs::read_file(const std::string& path, size_t max_bytes) const {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return fail_errno("open " + path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return fail_errno("stat " + path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("not a regular file: " + path);
  }
  std::string data;
  char buf[8192];
  while (data.size() <= max_bytes) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int e = errno;
      ::close(fd);
      return fail_errno("read " + path, e);
    }
    if (n == 0) {
      break;
    }
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (data.size() > max_bytes) {
    data.resize(max_bytes + 1);  // the parser reports "too large"
  }
  return data;
}

Result<std::vector<std::string>> RealPolicyFs::list_dir(const std::string& path) const {
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    return fail_errno("opendir " + path);
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    struct stat st {};
    if (::stat((path + "/" + name).c_str(), &st) != 0) {
      if (errno == ENOENT) {
        continue;  // a dangling symlink: not a file, ignored as by Qubes
      }
      int err = errno;
      ::closedir(d);
      return fail_errno("stat " + path + "/" + name, err);
    }
    if (S_ISREG(st.st_mode)) {
      names.push_back(name);
    }
    if (names.size() > 100000) {
      break;
    }
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) {
    return fail_errno("readdir " + path, err);
  }
  return names;
}

std::string RealPolicyFs::identity(const std::string& path) const {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) {
    return buf;
  }
  return path;
}

std::shared_ptr<const PolicySnapshot> load_policy_dir(const std::string& dir,
                                                      const PolicyLimits& limits) {
  RealPolicyFs fs;
  return load_policy_dir(dir, fs, limits);
}

}  // namespace qaudio::policy
