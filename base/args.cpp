#include "base/args.hpp"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "base/error.hpp"

// A wrong flag is the user's mistake: its message names the flag, never a source location.
#define ARGS_FAIL(msg_expr)          \
  do {                               \
    std::ostringstream args_os_;     \
    args_os_ << msg_expr;            \
    throw ::dmpi::Error(args_os_.str()); \
  } while (0)
#define ARGS_REQUIRE(cond, msg_expr) \
  do {                               \
    if (!(cond)) ARGS_FAIL(msg_expr); \
  } while (0)

namespace dmpi {

static std::string normalize(std::string s) {
  for (auto& c : s)
    if (c == '_') c = '-';
  return s;
}

Args::Args(std::vector<FlagSpec> specs, const std::vector<std::string>& argv) : specs_(std::move(specs)) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string body = a.substr(2), value;
    bool has_inline = false;
    if (auto eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      body = body.substr(0, eq);
      has_inline = true;
    }
    std::string name = normalize(body);
    const FlagSpec* spec = find(name);
    if (!spec) {
      std::vector<std::string> names;
      for (auto& s : specs_) names.push_back(s.name);
      std::string hint = closest_match(name, names);
      ARGS_FAIL("unknown flag --" << body << (hint.empty() ? "" : "; did you mean --" + hint + "?")
                                  << " (see --help)");
    }
    auto& slot = values_[spec->name];
    if (!spec->takes_value) {
      ARGS_REQUIRE(!has_inline, "flag --" << spec->name << " takes no value (got '" << value << "')");
      slot.push_back("1");
      continue;
    }
    if (has_inline) {
      slot.push_back(value);
    } else {
      ARGS_REQUIRE(i + 1 < argv.size() && argv[i + 1].rfind("--", 0) != 0,
                   "flag --" << spec->name << " needs a value");
      slot.push_back(argv[++i]);
      // A repeatable flag takes every following non-flag word.
      while (spec->repeatable && i + 1 < argv.size() && argv[i + 1].rfind("--", 0) != 0)
        slot.push_back(argv[++i]);
    }
    ARGS_REQUIRE(spec->repeatable || slot.size() == 1, "flag --" << spec->name << " given more than once");
  }
}

const FlagSpec* Args::find(const std::string& name) const {
  for (auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

std::string Args::str(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second.front();
}

std::vector<std::string> Args::list(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t Args::integer(const std::string& name, int64_t def) const {
  if (!has(name)) return def;
  return parse_integer(str(name), "--" + name);
}

double Args::real(const std::string& name, double def) const {
  if (!has(name)) return def;
  return parse_real(str(name), "--" + name);
}

std::string Args::usage() const {
  std::ostringstream os;
  for (auto& s : specs_) {
    std::string left = "  --" + s.name + (s.takes_value ? (s.repeatable ? " V..." : " V") : "");
    os << left;
    if (left.size() < 34) os << std::string(34 - left.size(), ' ');
    else os << "\n" << std::string(34, ' ');
    os << s.help << "\n";
  }
  return os.str();
}

double parse_real(const std::string& s, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  ARGS_REQUIRE(!s.empty() && end && *end == '\0' && std::isfinite(v),
               what << ": expected a number, got '" << s << "'");
  return v;
}

int64_t parse_integer(const std::string& s, const std::string& what) {
  double v = parse_real(s, what);
  ARGS_REQUIRE(v == std::floor(v) && std::fabs(v) < 9.2e18,
               what << ": expected an integer, got '" << s << "'");
  return static_cast<int64_t>(v);
}

}  // namespace dmpi
