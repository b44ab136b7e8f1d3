// What the policy needs to know about qubes: whether one exists, its type
// (AppVM, DispVM, TemplateVM, StandaloneVM, AdminVM), its tags, and for a
// disposable the template (AppVM) it was made from. On Qubes this comes from
// the admin data; in tests and on other hosts from a small file:
//
//   # name  key=value...
//   work        type=AppVM tags=audio,trusted
//   fedora-dvm  type=AppVM template_for_dispvms=yes
//   disp1234    type=DispVM template=fedora-dvm
//   dom0        type=AdminVM
//
// The file is parsed fail-safe: any error makes the provider "failed", and a
// failed provider makes the evaluator deny every request.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace qaudio::policy {

class QubeInfoProvider {
 public:
  virtual ~QubeInfoProvider() = default;
  virtual bool exists(const std::string& name) const = 0;
  virtual std::string type(const std::string& name) const = 0;  // "" if unknown
  virtual std::vector<std::string> tags(const std::string& name) const = 0;
  // The template of a disposable ("" if none/unknown).
  virtual std::string dispvm_template(const std::string& name) const = 0;
  // Non-empty when the information could not be loaded: deny everything.
  virtual std::string failure() const { return {}; }
};

struct QubeRecord {
  std::string type;
  std::vector<std::string> tags;
  std::string dispvm_template;
  bool template_for_dispvms = false;
};

// In-memory provider, filled by code or parsed from the file format above.
class StaticQubeInfo : public QubeInfoProvider {
 public:
  StaticQubeInfo() = default;

  // Parses the text; on any error the provider is failed (see failure()).
  static StaticQubeInfo parse(const std::string& text, const std::string& filename);
  static StaticQubeInfo load_file(const std::string& path);

  void add(const std::string& name, QubeRecord rec) { qubes_[name] = std::move(rec); }

  bool exists(const std::string& name) const override;
  std::string type(const std::string& name) const override;
  std::vector<std::string> tags(const std::string& name) const override;
  std::string dispvm_template(const std::string& name) const override;
  std::string failure() const override { return failure_; }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::map<std::string, QubeRecord> qubes_;
  std::vector<std::string> errors_;  // "file:line: message"
  std::string failure_;              // first error, or ""
};

}  // namespace qaudio::policy
