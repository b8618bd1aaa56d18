// A recursive-descent reader for ds_config text (json_text.hpp). Depth is bounded before any
// recursion, so the call stack holds at most kMaxConfigDepth frames whatever the input.
#include "src/config/json_text.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>

#include "base/error.hpp"

namespace dmpi::config {

using nlohmann::json;

std::string shorten(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max * 2 / 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return s.substr(0, cut) + "... (" + std::to_string(s.size()) + " characters)";
}

namespace {

class Parser {
 public:
  Parser(const std::string& text, const std::string& source, std::vector<TextProblem>& dups)
      : s_(text), source_(source), dups_(dups) {}

  json parse() {
    if (s_.compare(0, 3, "\xEF\xBB\xBF") == 0) i_ = 3;  // UTF-8 byte-order mark
    skip();
    if (i_ >= s_.size()) fail("the file is empty; a ds_config is a JSON object {...}");
    if (s_[i_] != '{')
      fail(std::string("expected '{' (a ds_config is a JSON object {...}), got ") + token_here());
    json v = value(0, "");
    skip();
    if (i_ < s_.size())
      fail("unexpected " + token_here() + " after the closing '}' of the top-level object (a file holds one object)");
    return v;
  }

 private:
  const std::string& s_;
  const std::string& source_;
  std::vector<TextProblem>& dups_;
  size_t i_ = 0;
  size_t line_ = 1, line_start_ = 0;
  // The last unquoted value that looks like JSON with a missing comma ("2 \"x\": 1}"): hjson
  // reads an unquoted value to the end of its line, so such a file fails later, at an unclosed
  // bracket; the error then names this value.
  std::string suspect_;

  std::string suspect_hint() const { return suspect_.empty() ? std::string() : "; " + suspect_; }

  [[noreturn]] void fail_at(size_t line, size_t col, const std::string& what) const {
    throw Error(source_ + " line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + what);
  }
  [[noreturn]] void fail(const std::string& what) const { fail_at(line_, i_ - line_start_ + 1, what); }

  static std::string path_of(const std::string& parent, const std::string& key) {
    const std::string k = shorten(key);
    return parent.empty() ? k : parent + "." + k;
  }

  // What is at the cursor, for a message.
  std::string token_here() const {
    if (i_ >= s_.size()) return "the end of the file";
    size_t e = i_;
    while (e < s_.size() && e - i_ < 20 && s_[e] != '\n' && s_[e] != '\r') ++e;
    std::string t = s_.substr(i_, e - i_);
    for (auto& c : t)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return "'" + t + (e < s_.size() && s_[e] != '\n' && s_[e] != '\r' ? "...'" : "'");
  }

  void newline_at(size_t pos) {
    ++line_;
    line_start_ = pos + 1;
  }

  // Skips whitespace and comments; returns whether a newline was crossed (hjson: a newline
  // separates members like a comma does).
  bool skip() {
    bool nl = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '\n') {
        newline_at(i_);
        ++i_;
        nl = true;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
      } else if (c == '#' || (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '/')) {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '*') {
        const size_t l = line_, col = i_ - line_start_ + 1;
        i_ += 2;
        while (i_ < s_.size() && !(s_[i_] == '*' && i_ + 1 < s_.size() && s_[i_ + 1] == '/')) {
          if (s_[i_] == '\n') newline_at(i_), nl = true;
          ++i_;
        }
        if (i_ >= s_.size()) fail_at(l, col, "a /* comment is not closed (no */ before the end of the file)");
        i_ += 2;
      } else {
        break;
      }
    }
    return nl;
  }

  json value(int depth, const std::string& path) {
    if (i_ >= s_.size()) fail("expected a value, got the end of the file");
    const char c = s_[i_];
    if (c == '{' || c == '[') {
      if (depth >= kMaxConfigDepth)
        fail("nested deeper than " + std::to_string(kMaxConfigDepth) + " levels" +
             (path.empty() ? std::string() : " at " + shorten(path, 80)) +
             "; a ds_config nests a few levels at most (look for an unclosed '[' or '{')");
      return c == '{' ? object(depth + 1, path) : array(depth + 1, path);
    }
    if (c == '"' || c == '\'') return json(string_literal());
    if (c == ',' || c == ':' || c == ']' || c == '}')
      fail(std::string("expected a value") + (path.empty() ? "" : " for " + path) + ", got '" + c + "'");
    return bare_value(path);
  }

  json object(int depth, const std::string& path) {
    const size_t open_line = line_, open_col = i_ - line_start_ + 1;
    ++i_;  // '{'
    json obj = json::object();
    std::map<std::string, size_t> lines;  // key -> line of its first occurrence
    for (;;) {
      skip();
      if (i_ >= s_.size())
        fail_at(open_line, open_col, "this '{' is not closed (the file ends before its '}')" + suspect_hint());
      if (s_[i_] == '}') {
        ++i_;
        return obj;
      }
      if (s_[i_] == ',') fail("unexpected ',' (two commas in a row, or a comma right after '{')");
      const size_t key_line = line_;
      std::string key = s_[i_] == '"' || s_[i_] == '\'' ? string_literal() : bare_key();
      skip();
      if (i_ >= s_.size() || s_[i_] != ':')
        fail("expected ':' after the key \"" + shorten(key) + "\", got " + token_here());
      ++i_;
      skip();
      const std::string p = path_of(path, key);
      json v = value(depth, p);
      if (auto it = lines.find(key); it != lines.end()) {
        dups_.push_back({p, p + ": duplicate key (line " + std::to_string(it->second) + " and line " +
                                std::to_string(key_line) + "); DeepSpeed rejects duplicate keys: keep one"});
      } else {
        lines[key] = key_line;
      }
      obj[key] = std::move(v);
      const bool nl = skip();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
      } else if (i_ < s_.size() && s_[i_] == '}') {
        continue;
      } else if (!nl && i_ < s_.size()) {
        fail("expected ',' or '}' after the value of \"" + shorten(key) + "\", got " + token_here());
      }
    }
  }

  json array(int depth, const std::string& path) {
    const size_t open_line = line_, open_col = i_ - line_start_ + 1;
    ++i_;  // '['
    json arr = json::array();
    for (;;) {
      skip();
      if (i_ >= s_.size())
        fail_at(open_line, open_col, "this '[' is not closed (the file ends before its ']')" + suspect_hint());
      if (s_[i_] == ']') {
        ++i_;
        return arr;
      }
      if (s_[i_] == ',') fail("unexpected ',' (two commas in a row, or a comma right after '[')");
      arr.push_back(value(depth, path + "[" + std::to_string(arr.size()) + "]"));
      const bool nl = skip();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
      } else if (i_ < s_.size() && s_[i_] == ']') {
        continue;
      } else if (!nl && i_ < s_.size()) {
        fail("expected ',' or ']' after an element of " + (path.empty() ? std::string("the list") : path) + ", got " +
             token_here());
      }
    }
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("\\u needs four hex digits");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_ + k];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else fail("\\u needs four hex digits");
    }
    i_ += 4;
    return v;
  }

  // Copies one UTF-8 encoded character at the cursor into out, checking it is well formed.
  void utf8_char(std::string& out) {
    const auto b0 = static_cast<unsigned char>(s_[i_]);
    size_t n = b0 < 0xC2 ? 0 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : b0 < 0xF5 ? 4 : 0;
    bool ok = n > 0 && i_ + n <= s_.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s_[i_ + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {
      const auto b1 = static_cast<unsigned char>(s_[i_ + 1]);
      ok = !(b0 == 0xE0 && b1 < 0xA0) && !(b0 == 0xED && b1 >= 0xA0);  // overlong, surrogate
    }
    if (ok && n == 4) {
      const auto b1 = static_cast<unsigned char>(s_[i_ + 1]);
      ok = !(b0 == 0xF0 && b1 < 0x90) && !(b0 == 0xF4 && b1 >= 0x90);
    }
    if (!ok) fail("invalid UTF-8 in a string (a ds_config is UTF-8 text)");
    out.append(s_, i_, n);
    i_ += n;
  }

  std::string string_literal() {
    const char q = s_[i_];
    const size_t open_line = line_, open_col = i_ - line_start_ + 1;
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size() || s_[i_] == '\n')
        fail_at(open_line, open_col, std::string("this string is not closed (no ") + q + " before the end of the line)");
      const char c = s_[i_];
      if (c == q) {
        ++i_;
        return out;
      }
      if (c == '\\') {
        if (++i_ >= s_.size()) continue;
        const char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\'': out += '\''; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair
              if (i_ + 1 < s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
                i_ += 2;
                const uint32_t lo = hex4();
                if (lo < 0xDC00 || lo > 0xDFFF) fail("\\u escape: a high surrogate must be followed by a low one");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              } else {
                fail("\\u escape: a high surrogate must be followed by a low one");
              }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("\\u escape: a lone low surrogate");
            }
            put_utf8(out, cp);
            break;
          }
          default:
            --i_;
            fail(std::string("unknown escape \\") + e + " in a string (write \\\\ for a backslash)");
        }
        continue;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("a control character in a string (write \\t, \\n, ... instead)");
      if (static_cast<unsigned char>(c) < 0x80) {
        out += c;
        ++i_;
      } else {
        utf8_char(out);
      }
    }
  }

  // hjson's unquoted key: up to ':' (no whitespace, quotes or brackets in it).
  std::string bare_key() {
    const size_t b = i_;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ':' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == '{' || c == '}' || c == '[' ||
          c == ']' || c == '"' || c == '\'')
        break;
      ++i_;
    }
    if (i_ == b) fail("expected a key (a \"quoted name\"), got " + token_here());
    std::string key = s_.substr(b, i_ - b);
    for (const char ch : key)
      if (static_cast<unsigned char>(ch) < 0x20) fail("a control character in a key");
    return key;
  }

  // true / false / null / a number, when it ends where a JSON token may end; otherwise
  // hjson's quoteless string: the rest of the line.
  json bare_value(const std::string& path) {
    const size_t b = i_, line = line_, col = i_ - line_start_ + 1;
    size_t e = b;
    auto ends_token = [&](size_t k) {
      while (k < s_.size() && (s_[k] == ' ' || s_[k] == '\t' || s_[k] == '\r')) ++k;
      if (k >= s_.size()) return true;
      const char c = s_[k];
      return c == '\n' || c == ',' || c == ']' || c == '}' || c == '#' ||
             (c == '/' && k + 1 < s_.size() && (s_[k + 1] == '/' || s_[k + 1] == '*'));
    };
    for (const char* lit : {"true", "false", "null"}) {
      const size_t n = std::char_traits<char>::length(lit);
      if (s_.compare(b, n, lit) == 0 && ends_token(b + n)) {
        i_ = b + n;
        return lit[0] == 't' ? json(true) : lit[0] == 'f' ? json(false) : json(nullptr);
      }
    }
    // JSON's number grammar
    e = b;
    if (e < s_.size() && s_[e] == '-') ++e;
    const size_t digits = e;
    if (e < s_.size() && s_[e] == '0') {
      ++e;
    } else {
      while (e < s_.size() && s_[e] >= '0' && s_[e] <= '9') ++e;
    }
    bool is_number = e > digits, integral = true;
    if (is_number && e < s_.size() && s_[e] == '.') {
      integral = false;
      const size_t f = ++e;
      while (e < s_.size() && s_[e] >= '0' && s_[e] <= '9') ++e;
      is_number = e > f;
    }
    if (is_number && e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      integral = false;
      ++e;
      if (e < s_.size() && (s_[e] == '+' || s_[e] == '-')) ++e;
      const size_t x = e;
      while (e < s_.size() && s_[e] >= '0' && s_[e] <= '9') ++e;
      is_number = e > x;
    }
    if (is_number && ends_token(e)) {
      const std::string num = s_.substr(b, e - b);
      i_ = e;
      if (integral) {
        errno = 0;
        const long long v = std::strtoll(num.c_str(), nullptr, 10);
        if (errno == 0) return json(static_cast<int64_t>(v));
        if (num[0] != '-') {
          errno = 0;
          const unsigned long long u = std::strtoull(num.c_str(), nullptr, 10);
          if (errno == 0) return json(static_cast<uint64_t>(u));
        }
      }
      const double d = std::strtod(num.c_str(), nullptr);
      if (std::isinf(d))
        fail_at(line, col, "the number " + shorten(num) + (path.empty() ? "" : " (" + path + ")") +
                               " is too large: the largest is about 1.8e308; write a smaller value");
      return json(d);
    }
    // quoteless string: to the end of the line, trailing blanks dropped
    e = b;
    while (e < s_.size() && s_[e] != '\n') ++e;
    size_t end = e;
    while (end > b && (s_[end - 1] == ' ' || s_[end - 1] == '\t' || s_[end - 1] == '\r')) --end;
    std::string out;
    i_ = b;
    while (i_ < end) {
      const auto ch = static_cast<unsigned char>(s_[i_]);
      if (ch < 0x20 && ch != '\t') fail("a control character in a value");
      if (ch < 0x80) out += s_[i_++];
      else utf8_char(out);
    }
    i_ = e;
    if (out.find_first_of("\",:{}[]") != std::string::npos && suspect_.empty())
      suspect_ = "line " + std::to_string(line) + ", column " + std::to_string(col) + ": the unquoted value " +
                 shorten(out, 40) + (path.empty() ? "" : " of " + path) +
                 " was read as text to the end of its line (hjson's rule for unquoted values); a comma is "
                 "probably missing, or a string lacks its quotes";
    return json(out);
  }
};

}  // namespace

json parse_config_text(const std::string& text, const std::string& source, std::vector<TextProblem>& duplicates) {
  Parser p(text, source, duplicates);
  return p.parse();
}

}  // namespace dmpi::config
