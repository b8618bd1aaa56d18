// The ds_config reader's helpers (internal to src/config): typed getters that record an error
// naming the JSON path instead of throwing, so every mistake of one file is reported together.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace dmpi::config {
struct DsConfig;
}

namespace dmpi::config::detail {

using nlohmann::json;

inline std::string join_path(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

class Reader {
 public:
  std::vector<std::string> errors, warnings;

  void err(const std::string& path, const std::string& msg) { errors.push_back(path + ": " + msg); }

  // Reports keys of `obj` outside `allowed`; keys in `known` but not `supported` are "not supported yet".
  void check_keys(const json& obj, const std::string& path, const std::vector<std::string>& supported,
                  const std::vector<std::string>& known = {}) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string& k = it.key();
      std::string p = path.empty() ? k : path + "." + k;
      bool sup = std::find(supported.begin(), supported.end(), k) != supported.end();
      if (sup) continue;
      bool kn = std::find(known.begin(), known.end(), k) != known.end();
      if (kn) {
        errors.push_back("not supported yet: " + p + " (deepmpi knows this DeepSpeed key but does not implement it "
                         "in this build; remove it to continue)");
        continue;
      }
      std::vector<std::string> all = supported;
      all.insert(all.end(), known.begin(), known.end());
      std::string hint = closest_match(k, all);
      errors.push_back(p + ": unknown key" + (hint.empty() ? "" : "; did you mean '" + (path.empty() ? hint : path + "." + hint) + "'?"));
    }
  }

  static bool is_auto(const json& v) { return v.is_string() && v.get<std::string>() == "auto"; }

  // Integer: accepts 5e8-style numbers when integral.
  bool get_int(const json& obj, const std::string& key, const std::string& path, int64_t& out, int64_t lo,
               int64_t hi) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    std::string p = path.empty() ? key : path + "." + key;
    double d;
    if (v.is_number_integer() || v.is_number_unsigned()) {
      d = v.get<double>();
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) d = 1e300;
    } else if (v.is_number_float()) {
      d = v.get<double>();
      if (d != std::floor(d)) {
        err(p, "expected an integer, got " + v.dump());
        return false;
      }
    } else {
      err(p, "expected an integer, got " + v.dump());
      return false;
    }
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      std::ostringstream os;
      os << "value " << v.dump() << " out of range [" << lo << ", " << hi << "]";
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
    std::string p = path.empty() ? key : path + "." + key;
    if (!v.is_number()) {
      err(p, "expected a number, got " + v.dump());
      return false;
    }
    double d = v.get<double>();
    if (!(d >= lo && d <= hi)) {
      std::ostringstream os;
      os << "value " << v.dump() << " out of range [" << lo << ", " << hi << "]";
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
      err(path.empty() ? key : path + "." + key, "expected true or false, got " + v.dump());
      return false;
    }
    out = v.get<bool>();
    return true;
  }

  bool get_string(const json& obj, const std::string& key, const std::string& path, std::string& out) {
    if (!obj.contains(key)) return false;
    const json& v = obj.at(key);
    if (!v.is_string()) {
      err(path.empty() ? key : path + "." + key, "expected a string, got " + v.dump());
      return false;
    }
    out = v.get<std::string>();
    return true;
  }

  bool object(const json& obj, const std::string& key, const std::string& path) {
    if (!obj.contains(key)) return false;
    if (!obj.at(key).is_object()) {
      err(path.empty() ? key : path + "." + key, "expected an object {...}, got " + obj.at(key).dump());
      return false;
    }
    return true;
  }

  void reject_auto(const json& obj, const std::string& path) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      std::string p = path.empty() ? it.key() : path + "." + it.key();
      if (is_auto(it.value())) err(p, "\"auto\" is not supported yet for this key; write a value");
    }
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
          std::string hint = closest_match(s, f.choices);
          r.err(p, "got \"" + s + "\"; allowed: " + list + (f.nullable ? " or null" : "") +
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

}  // namespace dmpi::config::detail
