#include "challenge.hpp"

#include <cctype>

namespace tug::registry::internal {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool Done() const { return i_ >= s_.size(); }
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void Advance() { ++i_; }
  size_t pos() const { return i_; }
  void set_pos(size_t p) { i_ = p; }
  std::string_view Token() {
    size_t start = i_;
    while (i_ < s_.size() && IsTokenChar(s_[i_])) ++i_;
    return s_.substr(start, i_ - start);
  }
  // Token68 values ("abc==") and quoted strings.
  std::string Value() {
    if (Peek() != '"') {
      size_t start = i_;
      while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != ' ' && s_[i_] != '\t') ++i_;
      return std::string(s_.substr(start, i_ - start));
    }
    ++i_;
    std::string v;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
      v += s_[i_++];
    }
    if (i_ < s_.size()) ++i_;  // closing quote
    return v;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::vector<Challenge> ParseWwwAuthenticate(std::string_view header) {
  std::vector<Challenge> out;
  Scanner sc(header);
  for (;;) {
    sc.SkipSpace();
    while (sc.Peek() == ',') {
      sc.Advance();
      sc.SkipSpace();
    }
    if (sc.Done()) break;
    std::string_view scheme = sc.Token();
    if (scheme.empty()) break;
    Challenge ch;
    ch.scheme = Lower(scheme);
    // Parameters until the next "token SP" that is not followed by '=' (the next challenge's scheme).
    for (;;) {
      sc.SkipSpace();
      while (sc.Peek() == ',') {
        sc.Advance();
        sc.SkipSpace();
      }
      if (sc.Done()) break;
      size_t mark = sc.pos();
      std::string_view key = sc.Token();
      sc.SkipSpace();
      if (key.empty() || sc.Peek() != '=') {
        sc.set_pos(mark);
        break;
      }
      sc.Advance();
      sc.SkipSpace();
      ch.params[Lower(key)] = sc.Value();
    }
    out.push_back(std::move(ch));
    if (!sc.Done() && !IsTokenChar(sc.Peek())) break;  // garbage: stop rather than loop
  }
  return out;
}

std::string QueryEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string BasicCredentials(const std::string& user, const std::string& password) {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string in = user + ":" + password;
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace tug::registry::internal
