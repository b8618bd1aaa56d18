// The ds_config reader's helpers (internal to src/config): typed getters that record an error
// naming the JSON path instead of throwing, so every mistake of one file is reported together.
#pragma once
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "src/config/json_text.hpp"

namespace dmpi::config {
struct DsConfig;
struct AutoContext;
}

namespace dmpi::config::detail {

using nlohmann::json;

// A key as it appears in a message: long keys (a 10 MB key is valid JSON) are shortened.
inline std::string key_text(const std::string& key) { return shorten(key); }
inline std::string join_path(const std::string& path, const std::string& key) {
  return path.empty() ? key_text(key) : path + "." + key_text(key);
}
// A value as it appears in a message: compact JSON, long values shortened, never throwing on
// bytes that are not UTF-8.
inline std::string show(const json& v) { return shorten(v.dump(-1, ' ', false, json::error_handler_t::replace)); }

// closest_match for a user's key or value; a very long one (a 10 MB key is valid JSON) is
// nobody's typo, and comparing it would cost seconds.
inline std::string suggest(const std::string& s, const std::vector<std::string>& candidates) {
  return s.size() > 100 ? std::string() : closest_match(s, candidates);
}

// Damerau (optimal string alignment) distance: a swap of two neighbours counts once.
inline size_t osa_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

// The real key `s` is a near-miss of (a typo of), or "" when none is that close: case and
// '-'/'_' differences, stray blanks, or a few edits relative to the length (1 for keys of up to
// 4 characters, 2 up to 10, 3 beyond). "log" is no near-miss of "moe".
inline std::string near_miss(const std::string& s, const std::vector<std::string>& candidates) {
  if (s.size() > 200) return {};
  auto norm = [](std::string k) {
    std::string o;
    for (char c : k) {
      if (c == ' ' || c == '\t') continue;
      o += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return o;
  };
  const std::string n = norm(s);
  const size_t limit = n.size() <= 4 ? 1 : n.size() <= 10 ? 2 : 3;
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = osa_distance(n, norm(c));
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

// A DeepSpeed key deepmpi knows but does not implement. At a value in `neutral` (DeepSpeed's
// default, or any value that asks for nothing deepmpi lacks; `any_value` accepts every value of
// the right type) it is accepted with a note; at any other value it is "valid, not implemented".
struct Known {
  std::string key;
  std::vector<json> neutral = {json(nullptr)};
  char type = '*';         // 'b' bool, 'i' integer, '*' anything
  bool any_value = false;  // every value of the type asks for nothing deepmpi lacks
  std::string what;        // what the key does, for the messages
};

// One problem of a file: its JSON path (for ordering and one message per path) and its text.
struct Problem {
  std::string path, text;
};

class Reader {
 public:
  std::vector<Problem> errors;  // what makes the file invalid
  std::vector<Problem> todo;    // valid DeepSpeed settings this build does not implement (exit 3)
  std::vector<std::string> warnings, notes;

  void err(const std::string& path, const std::string& msg) { errors.push_back({path, path + ": " + msg}); }
  void err_text(const std::string& path, const std::string& text) { errors.push_back({path, text}); }
  // "not supported yet: <path> = <value> (<why / what to do>)"
  void unimplemented(const std::string& path, const std::string& value, const std::string& why) {
    todo.push_back({path, "not supported yet: " + path + (value.empty() ? "" : " = " + value) +
                              (why.empty() ? "" : " (" + why + ")")});
  }
  void unimplemented(const std::string& path, const json& value, const std::string& why) {
    unimplemented(path, show(value), why);
  }

  // Reports keys of `obj` outside `supported`; keys in `known` are checked against their
  // neutral values (note, or not implemented); any other key is unknown, with the closest
  // valid key suggested.
  void check_keys(const json& obj, const std::string& path, const std::vector<std::string>& supported,
                  const std::vector<Known>& known = {}) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string& k = it.key();
      const std::string p = join_path(path, k);
      if (std::find(supported.begin(), supported.end(), k) != supported.end()) continue;
      auto kn = std::find_if(known.begin(), known.end(), [&](const Known& x) { return x.key == k; });
      if (kn != known.end()) {
        check_known(*kn, it.value(), p);
        continue;
      }
      std::vector<std::string> all = supported;
      for (const auto& x : known) all.push_back(x.key);
      std::string hint = suggest(k, all);
      err(p, "unknown key" + (hint.empty() ? "" : "; did you mean '" + join_path(path, hint) + "'?"));
    }
  }
  void check_keys(const json& obj, const std::string& path, const std::vector<std::string>& supported,
                  const std::vector<std::string>& known_names) {
    std::vector<Known> known;
    for (const auto& k : known_names) {
      Known x;
      x.key = k;
      known.push_back(x);
    }
    check_keys(obj, path, supported, known);
  }

  void check_known(const Known& k, const json& v, const std::string& p) {
    if (k.type == 'b' && !v.is_boolean()) return err(p, "expected true or false, got " + show(v));
    if (k.type == 'i' && !(v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()))))
      return err(p, "expected an integer, got " + show(v));
    bool neutral = k.any_value;
    for (const auto& n : k.neutral)
      if (v == n || (v.is_number() && n.is_number() && v.get<double>() == n.get<double>())) neutral = true;
    if (neutral) {
      notes.push_back(p + " = " + show(v) + ": accepted; it asks for nothing deepmpi lacks" +
                      (k.what.empty() ? "" : " (" + k.what + ")"));
    } else {
      std::string dflt = k.neutral.empty() ? std::string() : show(k.neutral.front());
      unimplemented(p, v, k.what.empty() ? "a DeepSpeed setting deepmpi does not implement; remove it" +
                                               (dflt.empty() ? std::string() : " or write " + dflt)
                                         : k.what + " is not implemented; remove the key" +
                                               (dflt.empty() ? std::string() : " or write " + dflt));
    }
  }

  static bool is_auto(const json& v) { return v.is_string() && v.get<std::string>() == "auto"; }

  // Integer: accepts 5e8-style numbers when integral.
  bool get_int(const json& obj, const std::string& key, const std::string& path, int64_t& out, int64_t lo,
               int64_t hi) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    std::string p = join_path(path, key);
    double d;
    if (v.is_number_integer() || v.is_number_unsigned()) {
      d = v.get<double>();
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) d = 1e300;
    } else if (v.is_number_float()) {
      d = v.get<double>();
      if (d != std::floor(d)) {
        err(p, "expected an integer, got " + show(v));
        return false;
      }
    } else {
      err(p, "expected an integer, got " + show(v));
      return false;
    }
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      std::ostringstream os;
      os << "value " << show(v) << " out of range [" << lo << ", " << hi << "]";
      err(p, os.str());
      return false;
    }
    out = static_cast<int64_t>(d);
    return true;
  }

  bool get_real(const json& obj, const std::string& key, const std::string& path, double& out, double lo,
                double hi) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    std::string p = join_path(path, key);
    if (!v.is_number()) {
      err(p, "expected a number, got " + show(v));
      return false;
    }
    double d = v.get<double>();
    if (!(d >= lo && d <= hi)) {
      std::ostringstream os;
      os << "value " << show(v) << " out of range [" << lo << ", " << hi << "]";
      err(p, os.str());
      return false;
    }
    out = d;
    return true;
  }

  bool get_bool(const json& obj, const std::string& key, const std::string& path, bool& out) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    if (!v.is_boolean()) {
      err(join_path(path, key), "expected true or false, got " + show(v));
      return false;
    }
    out = v.get<bool>();
    return true;
  }

  bool get_string(const json& obj, const std::string& key, const std::string& path, std::string& out) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    if (!v.is_string()) {
      err(join_path(path, key), "expected a string, got " + show(v));
      return false;
    }
    out = v.get<std::string>();
    return true;
  }

  bool object(const json& obj, const std::string& key, const std::string& path) {
    if (!obj.contains(key)) return false;
    if (!obj.at(key).is_object()) {
      err(join_path(path, key), "expected an object {...}, got " + show(obj.at(key)));
      return false;
    }
    return true;
  }

  // "auto" left in a block after resolve_auto: nothing resolves it for that key.
  void reject_auto(const json& obj, const std::string& path) {
    for (auto it = obj.begin(); it != obj.end(); ++it)
      if (is_auto(it.value()))
        err(join_path(path, it.key()), "\"auto\": no flag resolves this key (the HF Trainer fills lr, betas, eps, "
                                       "weight_decay and the warmup/total steps); write a value");
  }
};



// A typed field of a block, bound to the struct member that holds its value. One list of
// fields per block serves both reading (type, range, choices; unknown keys) and printing the
// values in force, so the two cannot drift apart.
struct Field {
  enum Kind { Bool, Int, Real, Str, Choice };
  Kind kind;
  std::string key;
  void* dst;
  double lo = 0, hi = 0;
  std::vector<std::string> choices;  // Choice: the allowed values (matched case-insensitively; stored as listed)
  bool nullable = false;             // JSON null allowed: Int -1, Str/Choice "" stand for null
};
inline Field fbool(const std::string& k, bool& v) { return {Field::Bool, k, &v, 0, 0, {}, false}; }
inline Field fint(const std::string& k, int64_t& v, int64_t lo, int64_t hi, bool nullable = false) {
  return {Field::Int, k, &v, static_cast<double>(lo), static_cast<double>(hi), {}, nullable};
}
inline Field freal(const std::string& k, double& v, double lo, double hi) { return {Field::Real, k, &v, lo, hi, {}, false}; }
inline Field fstr(const std::string& k, std::string& v, bool nullable = false) { return {Field::Str, k, &v, 0, 0, {}, nullable}; }
inline Field fchoice(const std::string& k, std::string& v, std::vector<std::string> choices, bool nullable = false) {
  return {Field::Choice, k, &v, 0, 0, std::move(choices), nullable};
}

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads `fields` from obj (an object at `path`). Keys in `known` are DeepSpeed's but not
// implemented: "not supported yet". Any other key is unknown (closest valid key suggested).
inline void read_fields(Reader& r, const json& obj, const std::string& path, const std::vector<Field>& fields,
                        const std::vector<std::string>& known = {}) {
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.key);
  r.check_keys(obj, path, names, known);
  for (const auto& f : fields) {
    if (!obj.contains(f.key)) continue;
    const json& v = obj.at(f.key);
    const std::string p = join_path(path, f.key);
    if (f.nullable && v.is_null()) {
      if (f.kind == Field::Int) *static_cast<int64_t*>(f.dst) = -1;
      if (f.kind == Field::Str || f.kind == Field::Choice) static_cast<std::string*>(f.dst)->clear();
      continue;
    }
    switch (f.kind) {
      case Field::Bool: r.get_bool(obj, f.key, path, *static_cast<bool*>(f.dst)); break;
      case Field::Int:
        r.get_int(obj, f.key, path, *static_cast<int64_t*>(f.dst), static_cast<int64_t>(f.lo), static_cast<int64_t>(f.hi));
        break;
      case Field::Real: r.get_real(obj, f.key, path, *static_cast<double*>(f.dst), f.lo, f.hi); break;
      case Field::Str: r.get_string(obj, f.key, path, *static_cast<std::string*>(f.dst)); break;
      case Field::Choice: {
        std::string s;
        if (!r.get_string(obj, f.key, path, s)) break;
        bool ok = false;
        for (const auto& c : f.choices)
          if (lower(c) == lower(s)) *static_cast<std::string*>(f.dst) = c, ok = true;
        if (!ok) {
          std::string list;
          for (const auto& c : f.choices) list += (list.empty() ? "\"" : ", \"") + c + "\"";
          std::string hint = suggest(s, f.choices);
          r.err(p, "got \"" + shorten(s) + "\"; allowed: " + list + (f.nullable ? " or null" : "") +
                       (hint.empty() ? "" : "; did you mean \"" + hint + "\"?"));
        }
        break;
      }
    }
  }
}

// The values in force of `fields`, as JSON (null for unset nullable fields).
inline json fields_json(const std::vector<Field>& fields) {
  json j = json::object();
  for (const auto& f : fields) {
    switch (f.kind) {
      case Field::Bool: j[f.key] = *static_cast<const bool*>(f.dst); break;
      case Field::Int: {
        int64_t v = *static_cast<const int64_t*>(f.dst);
        j[f.key] = f.nullable && v == -1 ? json(nullptr) : json(v);
        break;
      }
      case Field::Real: j[f.key] = *static_cast<const double*>(f.dst); break;
      case Field::Str:
      case Field::Choice: {
        const auto& v = *static_cast<const std::string*>(f.dst);
        j[f.key] = f.nullable && v.empty() ? json(nullptr) : json(v);
        break;
      }
    }
  }
  return j;
}

// blocks.cpp: the blocks of blocks.hpp.
const std::vector<std::string>& block_top_level_keys();
void read_blocks(Reader& r, const json& j, DsConfig& c);
json blocks_json(const DsConfig& c);
void blocks_unimplemented(const DsConfig& c, std::vector<std::string>& out);
// megatron_flags.cpp: the optimizer and schedule from Megatron's flags where the file (j, with
// "auto" resolved) has no block, and DsConfig::optimizer_source.
void apply_megatron_flags(Reader& r, const json& j, DsConfig& c, const AutoContext& ctx);

}  // namespace dmpi::config::detail
