#include "builder/words.hpp"

#include <cctype>

namespace tug::builder {
namespace {

bool IsNameChar(char c, bool first) {
  return c == '_' || std::isalpha(static_cast<unsigned char>(c)) || (!first && std::isdigit(static_cast<unsigned char>(c)));
}

// One pass over `s` doing what Docker's shell lexer does for substituted instructions. `split` decides whether
// unquoted whitespace separates words or is kept.
class Lexer {
 public:
  Lexer(std::string_view s, const Vars* vars, bool split) : s_(s), vars_(vars), split_(split) {}

  Result<std::vector<std::string>> Run() {
    std::vector<std::string> words;
    std::string cur;
    bool have = false;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (split_ && std::isspace(static_cast<unsigned char>(c))) {
        if (have) words.push_back(std::move(cur));
        cur.clear();
        have = false;
        ++i_;
        continue;
      }
      have = true;
      if (c == '\\') {
        if (i_ + 1 < s_.size()) {
          cur += s_[i_ + 1];
          i_ += 2;
        } else {
          cur += c;
          ++i_;
        }
      } else if (c == '\'') {
        size_t end = s_.find('\'', i_ + 1);
        if (end == std::string_view::npos) return MakeError(Errc::kInvalidArgument, "unterminated single quote");
        cur.append(s_.substr(i_ + 1, end - i_ - 1));
        i_ = end + 1;
      } else if (c == '"') {
        ++i_;
        bool closed = false;
        while (i_ < s_.size()) {
          char d = s_[i_];
          if (d == '"') {
            closed = true;
            ++i_;
            break;
          }
          if (d == '\\' && i_ + 1 < s_.size() && (s_[i_ + 1] == '"' || s_[i_ + 1] == '\\' || s_[i_ + 1] == '$')) {
            cur += s_[i_ + 1];
            i_ += 2;
          } else if (d == '$' && vars_ != nullptr) {
            TUG_ASSIGN_OR_RETURN(std::string v, Dollar());
            cur += v;
          } else {
            cur += d;
            ++i_;
          }
        }
        if (!closed) return MakeError(Errc::kInvalidArgument, "unterminated double quote");
      } else if (c == '$' && vars_ != nullptr) {
        TUG_ASSIGN_OR_RETURN(std::string v, Dollar());
        cur += v;
      } else {
        cur += c;
        ++i_;
      }
    }
    if (have) words.push_back(std::move(cur));
    return words;
  }

 private:
  std::string Lookup(const std::string& name) const {
    auto it = vars_->find(name);
    return it == vars_->end() ? std::string() : it->second;
  }
  bool IsSet(const std::string& name) const { return vars_->count(name) > 0; }

  // At a '$': $NAME, ${NAME}, ${NAME:-word}, ${NAME-word}, ${NAME:+word}, ${NAME+word}. A '$' not followed by a
  // name stays literal.
  Result<std::string> Dollar() {
    ++i_;
    if (i_ < s_.size() && s_[i_] == '{') {
      size_t close = i_ + 1;
      int depth = 1;
      while (close < s_.size() && depth > 0) {
        if (s_[close] == '{') ++depth;
        if (s_[close] == '}') --depth;
        if (depth > 0) ++close;
      }
      if (close >= s_.size()) return MakeError(Errc::kInvalidArgument, "unterminated ${");
      std::string_view body = s_.substr(i_ + 1, close - i_ - 1);
      i_ = close + 1;
      size_t n = 0;
      while (n < body.size() && IsNameChar(body[n], n == 0)) ++n;
      std::string name(body.substr(0, n));
      if (name.empty()) return MakeError(Errc::kInvalidArgument, "bad substitution ${" + std::string(body) + "}");
      std::string_view op = body.substr(n);
      if (op.empty()) return Lookup(name);
      bool colon = op[0] == ':';
      if (colon) op.remove_prefix(1);
      if (op.empty() || (op[0] != '-' && op[0] != '+'))
        return MakeError(Errc::kInvalidArgument, "unsupported substitution ${" + std::string(body) + "}");
      char kind = op[0];
      op.remove_prefix(1);
      TUG_ASSIGN_OR_RETURN(std::string word, Expand(op, *vars_));
      bool present = colon ? !Lookup(name).empty() : IsSet(name);
      if (kind == '-') return present ? Lookup(name) : word;
      return present ? word : std::string();
    }
    size_t n = i_;
    while (n < s_.size() && IsNameChar(s_[n], n == i_)) ++n;
    if (n == i_) return std::string("$");
    std::string name(s_.substr(i_, n - i_));
    i_ = n;
    return Lookup(name);
  }

  std::string_view s_;
  const Vars* vars_;
  bool split_;
  size_t i_ = 0;
};

}  // namespace

Result<std::vector<std::string>> SplitWords(std::string_view s, const Vars* vars) {
  return Lexer(s, vars, true).Run();
}

Result<std::string> Expand(std::string_view s, const Vars& vars) {
  TUG_ASSIGN_OR_RETURN(auto words, Lexer(s, &vars, false).Run());
  return words.empty() ? std::string() : words[0];
}

}  // namespace tug::builder
